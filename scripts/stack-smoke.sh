#!/usr/bin/env bash
# Stack smoke test: the commands the docker-compose.yml services run, as local processes on the
# loopback interface, with no internet:
#   PostgreSQL (DATABASE_URL's server if set, else an embedded one in a temporary directory)
#   → migrate → api + 2 workers (upstream: scripts/fixture-registry-serve.ts)
#   → user:create, login, upload a package-lock.json, wait until processing is done,
#   → both workers' /health, then SIGTERM everything: each process must exit 0 within the grace period.
#
#   bash scripts/stack-smoke.sh
#
# DATABASE_URL, when set, names a server the smoke test may create (and then drops) a database on.
# Environment: SMOKE_TIMEOUT (seconds to wait for processing, default 90), KEEP_SMOKE_DIR=1 (keep logs).
# The JavaScript snippets below are single-quoted on purpose (their ${...} is JavaScript):
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "$0")/.."
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-90}"
WORKER_GRACE_SECONDS=20
API_GRACE_SECONDS=12 # close-with-grace: 10 s, plus start-up slack
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spm-stack-smoke.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS" "$WORK/store" "$WORK/data"

export NODE_ENV=production LOG_LEVEL=info NPM_CONFIG_UPDATE_NOTIFIER=false NO_UPDATE_NOTIFIER=1
# Nothing may leave this machine: no proxy, and npm never needs a registry here.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
export NO_PROXY='*' npm_config_offline=true

say() { printf 'stack-smoke: %s\n' "$*"; }
fail() {
  printf 'stack-smoke: FAILED: %s\n' "$*" >&2
  exit 1
}

declare -A PIDS=() # name -> pid of the processes started here
PG_PID=""
PG_DIR=""
SMOKE_DB=""
SERVER_URL=""
OK=0

cleanup() {
  local rc=$?
  set +e
  for name in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null
  done
  for name in "${!PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "${PIDS[$name]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${PIDS[$name]}" 2>/dev/null
    wait "${PIDS[$name]}" 2>/dev/null
  done
  if [[ -n "$SMOKE_DB" && -n "$SERVER_URL" ]]; then
    SERVER_URL="$SERVER_URL" SMOKE_DB="$SMOKE_DB" node --input-type=module -e '
      import pg from "pg";
      const c = new pg.Client({ connectionString: process.env.SERVER_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${process.env.SMOKE_DB}" WITH (FORCE)`);
      await c.end();' 2>/dev/null
  fi
  if [[ -n "$PG_PID" ]]; then
    kill -TERM "$PG_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PG_PID" 2>/dev/null
    wait "$PG_PID" 2>/dev/null
  fi
  [[ -n "$PG_DIR" ]] && rm -rf "$PG_DIR"
  if [[ $OK -ne 1 ]]; then
    for log in "$LOGS"/*.log; do
      [[ -s "$log" ]] || continue
      printf '\n----- %s (last 25 lines) -----\n' "$(basename "$log")" >&2
      tail -n 25 "$log" >&2
    done
  fi
  if [[ $OK -eq 1 && "${KEEP_SMOKE_DIR:-}" != 1 ]]; then
    rm -rf "$WORK"
  else
    say "logs kept in $LOGS" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... : a background process with its log in $LOGS/NAME.log
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS[$name]=$!
}

# wait_for SECONDS DESCRIPTION CMD... : retry CMD until it succeeds
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.3
  done
}

alive() { kill -0 "${PIDS[$1]}" 2>/dev/null || fail "$1 exited early (see $1.log)"; }

# free_ports N : N distinct free TCP ports on 127.0.0.1
free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]);
    const servers = Array.from({ length: n }, () => net.createServer());
    Promise.all(servers.map((s) => new Promise((r) => s.listen(0, "127.0.0.1", () => r(s.address().port)))))
      .then((ports) => { console.log(ports.join(" ")); servers.forEach((s) => s.close()); });' "$1"
}

# json FILE EXPR : evaluate a JS expression over the JSON document `d` read from FILE
json() {
  node -e 'const d = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")); const v = (0, eval)("(d) => " + process.argv[2])(d); process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));' "$1" "$2"
}

read -r PG_PORT API_PORT WORKER1_PORT WORKER2_PORT <<<"$(free_ports 4)"

# ---- PostgreSQL ----
if [[ -n "${DATABASE_URL:-}" ]]; then
  SERVER_URL="$DATABASE_URL"
  PG_WHERE="server from DATABASE_URL"
else
  PG_URL_FILE="$WORK/pg-url"
  # Its own directory: as root, the server runs as `postgres`, which cannot enter $WORK (mode 700).
  PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/spm-stack-smoke-pg.XXXXXX")"
  EMBED_DIR="$PG_DIR" EMBED_PORT="$PG_PORT" URL_FILE="$PG_URL_FILE" \
    node --import tsx --input-type=module -e '
      import { writeFileSync } from "node:fs";
      const { startEmbeddedPostgres } = await import(process.cwd() + "/src/db/embedded.ts");
      const db = await startEmbeddedPostgres({ dir: process.env.EMBED_DIR, port: Number(process.env.EMBED_PORT) });
      writeFileSync(process.env.URL_FILE + ".tmp", db.url);
      (await import("node:fs")).renameSync(process.env.URL_FILE + ".tmp", process.env.URL_FILE);
      let stopping = false;
      const stop = () => { if (stopping) return; stopping = true; db.stop().then(() => process.exit(0), () => process.exit(1)); };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
      setInterval(() => {}, 1 << 30);' >"$LOGS/postgres.log" 2>&1 &
  PG_PID=$!
  wait_for 120 "the embedded PostgreSQL" test -s "$PG_URL_FILE"
  SERVER_URL="$(cat "$PG_URL_FILE")"
  PG_WHERE="embedded at 127.0.0.1:$PG_PORT"
fi
SMOKE_DB="spm_smoke_$(date +%s)_$$"
export DATABASE_URL
DATABASE_URL="$(SERVER_URL="$SERVER_URL" SMOKE_DB="$SMOKE_DB" node --input-type=module -e '
  import pg from "pg";
  const c = new pg.Client({ connectionString: process.env.SERVER_URL });
  await c.connect();
  await c.query(`CREATE DATABASE "${process.env.SMOKE_DB}"`);
  await c.end();
  const u = new URL(process.env.SERVER_URL);
  u.pathname = "/" + process.env.SMOKE_DB;
  process.stdout.write(u.toString());')"
say "postgres  $PG_WHERE, database $SMOKE_DB"

# ---- fixture upstream registry ----
start registry node --import tsx scripts/fixture-registry-serve.ts
wait_for 30 "the fixture registry" grep -qx READY "$LOGS/registry.log"
UPSTREAM_REGISTRY="$(sed -n 's/^FIXTURE_REGISTRY_URL=//p' "$LOGS/registry.log")"
mapfile -t FIXTURES < <(sed -n 's/^PACKAGE //p' "$LOGS/registry.log")
say "registry  $UPSTREAM_REGISTRY (${#FIXTURES[@]} versions: ${FIXTURES[*]})"

# ---- migrate (compose: migrate) ----
node --import tsx scripts/migrate.ts deploy >"$LOGS/migrate.log" 2>&1 || fail "migrate deploy exited $?"
say "migrate   $(tail -n 1 "$LOGS/migrate.log")"

# ---- api and two workers (compose: api, worker x2; the worker runs its bundle, as in its image) ----
npm run build:worker --silent >"$LOGS/build-worker.log" 2>&1 || fail "build:worker exited $?"
JWT_SECRET="$(node -e 'process.stdout.write(require("node:crypto").randomBytes(48).toString("base64"))')"
export JWT_SECRET STORAGE_DIR="$WORK/store" DATA_DIR="$WORK/data" HOST=127.0.0.1
start api env PORT="$API_PORT" node --import tsx api/main.ts
for i in 1 2; do
  port_var="WORKER${i}_PORT"
  start "worker-$i" env WORKER_METRICS_PORT="${!port_var}" WORKER_ID="smoke-worker-$i" UPSTREAM_REGISTRY="$UPSTREAM_REGISTRY" \
    WORKER_GRACE_SECONDS="$WORKER_GRACE_SECONDS" WORKER_SLEEP_INTERVAL=1 \
    node --max-semi-space-size=2 --heap-growing-percent=20 --v8-pool-size=2 --liftoff-only dist/worker/main.mjs
done
API="http://127.0.0.1:$API_PORT"
wait_for 60 "the api's /health" curl -fsS "$API/health"
alive api
wait_for 10 "the api's /ready" curl -fsS "$API/ready"
for i in 1 2; do
  port_var="WORKER${i}_PORT"
  wait_for 60 "worker-$i's /health" curl -fsS "http://127.0.0.1:${!port_var}/health"
  alive "worker-$i"
done
say "api       $API (/health and /ready 200)"
say "workers   /health 200 on :$WORKER1_PORT and :$WORKER2_PORT"

# ---- user, login ----
PASSWORD="$(node -e 'process.stdout.write(require("node:crypto").randomBytes(18).toString("base64url"))')"
SPM_PASSWORD="$PASSWORD" npm run --silent user:create -- --username smoke --role admin >"$LOGS/user-create.log" 2>&1 ||
  fail "npm run user:create exited $?"
say "user      $(cat "$LOGS/user-create.log")"
# `--`: a random password may start with "-", which node would take for an option of its own (1 run in 64)
node -e 'process.stdout.write(JSON.stringify({ username: "smoke", password: process.argv[1] }))' -- "$PASSWORD" >"$WORK/login.json"
curl -fsS -X POST -H 'content-type: application/json' --data-binary @"$WORK/login.json" "$API/api/auth/login" >"$WORK/token.json" ||
  fail "login failed"
TOKEN="$(json "$WORK/token.json" 'd.token')"
AUTH=(-H "authorization: Bearer $TOKEN")

# ---- a lockfile of the fixture packages, integrity from the registry's packuments ----
UPSTREAM_REGISTRY="$UPSTREAM_REGISTRY" node --input-type=module -e '
  const registry = process.env.UPSTREAM_REGISTRY;
  const dist = async (name, version) => {
    const res = await fetch(registry + name.replace("/", "%2f"));
    if (!res.ok) throw new Error(`packument of ${name}: HTTP ${res.status}`);
    const v = (await res.json()).versions[version];
    if (!v?.dist?.integrity) throw new Error(`${name}@${version}: no dist.integrity`);
    return { version, resolved: v.dist.tarball, integrity: v.dist.integrity, license: v.license, ...(v.dependencies ? { dependencies: v.dependencies } : {}) };
  };
  const lock = {
    name: "smoke-app",
    version: "1.0.0",
    lockfileVersion: 3,
    requires: true,
    packages: {
      "": {
        name: "smoke-app",
        version: "1.0.0",
        dependencies: { "smoke-left-pad": "^1.3.0", "smoke-is-number": "^7.0.0", "smoke-range": "^2.1.4", "@smoke/strings": "^0.4.2" },
      },
      "node_modules/@smoke/strings": await dist("@smoke/strings", "0.4.2"),
      "node_modules/smoke-is-number": await dist("smoke-is-number", "7.0.0"),
      "node_modules/smoke-left-pad": await dist("smoke-left-pad", "1.3.0"),
      "node_modules/smoke-range": await dist("smoke-range", "2.1.4"),
      "node_modules/smoke-range/node_modules/smoke-is-number": await dist("smoke-is-number", "6.0.0"),
    },
  };
  process.stdout.write(JSON.stringify(lock, null, 2) + "\n");' >"$WORK/package-lock.json" || fail "could not build the lockfile"

# ---- upload, then wait for the pipeline ----
curl -fsS -X POST "${AUTH[@]}" -H 'content-type: application/json' -H 'x-file-name: package-lock.json' \
  --data-binary @"$WORK/package-lock.json" "$API/api/packages/upload" >"$WORK/upload.json" || fail "upload failed"
REQUEST_ID="$(json "$WORK/upload.json" 'd.request_id')"
say "upload    request $REQUEST_ID: $(json "$WORK/upload.json" 'd.packages')"

started=$SECONDS
while :; do
  curl -fsS "${AUTH[@]}" "$API/api/packages/requests/$REQUEST_ID/processing-status" >"$WORK/status.json" || fail "processing-status failed"
  [[ "$(json "$WORK/status.json" 'd.done')" == true ]] && break
  ((SECONDS - started < SMOKE_TIMEOUT)) || fail "request $REQUEST_ID not done after ${SMOKE_TIMEOUT}s: $(json "$WORK/status.json" 'd.counts')"
  alive worker-1
  alive worker-2
  sleep 1
done
say "pipeline  done in $((SECONDS - started))s: $(json "$WORK/status.json" 'Object.fromEntries(Object.entries(d.counts).filter(([, n]) => n > 0))')"
json "$WORK/status.json" 'd.packages.map((p) => `            ${p.name}@${p.version}: ${p.status}${p.reason ? ` (${p.reason.code}: ${p.reason.message})` : ""}`).join("\n")'
echo
[[ "$(json "$WORK/status.json" 'd.total')" == "${#FIXTURES[@]}" ]] || fail "expected ${#FIXTURES[@]} packages in the request"
[[ "$(json "$WORK/status.json" 'd.counts.failed ?? 0')" == 0 ]] || fail "some packages failed"
stored="$(find "$WORK/store" -type f -not -path "$WORK/store/tmp/*" | wc -l)"
((stored == ${#FIXTURES[@]})) || fail "expected ${#FIXTURES[@]} tarballs in STORAGE_DIR, found $stored"
say "store     $stored tarballs in STORAGE_DIR"

for i in 1 2; do
  port_var="WORKER${i}_PORT"
  code="$(curl -sS -o "$WORK/health-$i.json" -w '%{http_code}' "http://127.0.0.1:${!port_var}/health")"
  [[ "$code" == 200 ]] || fail "worker-$i /health answered $code: $(cat "$WORK/health-$i.json")"
  say "worker-$i  /health 200 $(cat "$WORK/health-$i.json")"
done

# ---- SIGTERM: every process exits 0 within its grace period ----
declare -A GRACE=([api]=$API_GRACE_SECONDS [worker-1]=$WORKER_GRACE_SECONDS [worker-2]=$WORKER_GRACE_SECONDS [registry]=5)
for name in api worker-1 worker-2 registry; do kill -TERM "${PIDS[$name]}"; done
stop_started=$SECONDS
for name in api worker-1 worker-2 registry; do
  deadline=$((stop_started + GRACE[$name]))
  while kill -0 "${PIDS[$name]}" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "$name still running ${GRACE[$name]}s after SIGTERM"
    sleep 0.1
  done
  rc=0
  wait "${PIDS[$name]}" || rc=$?
  unset "PIDS[$name]"
  ((rc == 0)) || fail "$name exited $rc after SIGTERM"
  say "stop      $name exited 0 within $((SECONDS - stop_started))s of SIGTERM (grace ${GRACE[$name]}s)"
done

OK=1
say "OK"
