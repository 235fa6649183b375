#!/usr/bin/env bash
# Validates docker-compose.yml with docker-compose's own parser (`config -q`), using a throwaway .env
# made from .env.example. Skips (exit 0) when neither docker-compose nor `docker compose` is
# installed (Debian: apt-get install docker-compose). No Docker engine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "compose-config: docker-compose is not installed; skipped"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp docker-compose.yml "$tmp/docker-compose.yml"
cp .env.example "$tmp/.env"
# The compose file names its build contexts relatively; they need not exist for `config`.
# Run in the temporary directory so a developer's real .env is never read, and none is written here.
(
  cd "$tmp"
  env -u POSTGRES_PASSWORD -u JWT_SECRET "${compose[@]}" -f docker-compose.yml config -q
)
echo "compose-config: docker-compose.yml is valid ($("${compose[@]}" version --short 2>/dev/null || echo "${compose[*]}"))"

# Without the secrets, compose must refuse to start, naming the missing variable.
grep -vE '^(POSTGRES_PASSWORD|JWT_SECRET)=' .env.example > "$tmp/.env"
if out="$(cd "$tmp" && env -u POSTGRES_PASSWORD -u JWT_SECRET "${compose[@]}" -f docker-compose.yml config -q 2>&1)"; then
  echo "compose-config: docker-compose accepted a .env without POSTGRES_PASSWORD / JWT_SECRET" >&2
  exit 1
fi
grep -qE 'POSTGRES_PASSWORD|JWT_SECRET' <<<"$out" || { echo "compose-config: unexpected error: $out" >&2; exit 1; }
echo "compose-config: missing secrets are refused: $(head -n1 <<<"$out")"
