/**
 * npm's bulk advisory format (`POST /-/npm/v1/security/advisories/bulk`, what `npm audit` uses since
 * npm 7) built from the imported OSV advisories:
 *
 *   { "<name>": [ { id, url, title, severity, vulnerable_versions, cwe, cvss: { score, vectorString } } ] }
 *
 * - `id` is the advisory's own id (e.g. "GHSA-p6mc-m468-83gw", "MAL-2024-1234"): npm only hashes it
 *   (it shows up as `via[].source` in `npm audit --json`), so a string works (checked with npm 11).
 * - `severity` uses npm's words; OSV advisories without a severity ("unknown") are reported as
 *   "high", which is both what npm itself assumes for an advisory without one and how the gate's own
 *   scan policy treats them (held for review).
 * - `vulnerable_versions` is a semver range built from the OSV ranges (npm evaluates it with
 *   `includePrerelease`), e.g. `<4.17.19`, `>=1.0.0 <1.2.3`, `>=0.0.0` (malicious: every version).
 */
import semver from "semver";
import type { OsvEvent, OsvRange, Severity } from "../advisories/osv.ts";

export interface NpmBulkAdvisory {
  id: string;
  url: string;
  title: string;
  severity: "low" | "moderate" | "high" | "critical";
  vulnerable_versions: string;
  cwe: string[];
  cvss: { score: number; vectorString: string | null };
}

/** What is needed of an imported advisory (NormalisedAdvisoryRow fits). */
export interface AdvisoryFacts {
  id: string;
  summary: string | null;
  severity: Severity;
  cvssVector: string | null;
  cvssScore: number | null;
  url: string | null;
  cwe: string[];
  affected: readonly { packageName: string; ranges: readonly OsvRange[]; versions: readonly string[] }[];
}

export function npmSeverity(s: Severity): NpmBulkAdvisory["severity"] {
  return s === "unknown" ? "high" : s;
}

type Bound = { kind: "min" } | { kind: "version"; v: string };

const ORDERED = new Set(["SEMVER", "ECOSYSTEM"]);
const RANK = { introduced: 0, last_affected: 1, fixed: 2 } as const;

/** A version as npm would compare it, or null when it is not semver. */
function clean(value: string): string | null {
  return semver.clean(value, { loose: true });
}

function cmp(a: Bound, b: Bound): number {
  if (a.kind === "min") return b.kind === "min" ? 0 : -1;
  if (b.kind === "min") return 1;
  return semver.compare(a.v, b.v);
}

/** The intervals of one OSV range as semver comparator sets; null when an event is not semver. */
function rangeIntervals(range: OsvRange): string[] | null {
  const events: { kind: keyof typeof RANK; at: Bound }[] = [];
  let limit: string | null | "infinity" = null;
  for (const e of range.events as OsvEvent[]) {
    if (e.limit !== undefined) {
      if (e.limit.includes("*")) limit = "infinity";
      else if (limit !== "infinity") {
        const l = clean(e.limit);
        if (l === null) return null;
        if (limit === null || semver.gt(l, limit)) limit = l;
      }
      continue;
    }
    for (const kind of Object.keys(RANK) as (keyof typeof RANK)[]) {
      const value = e[kind];
      if (value === undefined) continue;
      if (value.trim() === "0") events.push({ kind, at: { kind: "min" } });
      else {
        const v = clean(value);
        if (v === null) return null;
        events.push({ kind, at: { kind: "version", v } });
      }
    }
  }
  events.sort((a, b) => cmp(a.at, b.at) || RANK[a.kind] - RANK[b.kind]);
  const out: string[] = [];
  const upperLimit = limit !== null && limit !== "infinity" ? ` <${limit}` : "";
  const lower = (b: Bound) => (b.kind === "min" ? "" : `>=${b.v}`);
  let open: Bound | null = null;
  for (const e of events) {
    if (e.kind === "introduced") {
      if (open === null) open = e.at;
    } else if (open !== null) {
      if (e.at.kind === "version") {
        const upper = e.kind === "fixed" ? `<${e.at.v}` : `<=${e.at.v}`;
        out.push(`${lower(open)} ${upper}`.trim());
      }
      open = null;
    }
  }
  if (open !== null) out.push((lower(open) || ">=0.0.0") + upperLimit);
  return out;
}

/**
 * The semver range of `name`'s affected versions (every affected entry for it, ranges and explicit
 * versions), `||`-joined. Fails closed: an entry whose events are not semver makes it `*`.
 * Returns null when nothing evaluable is affected (GIT-only ranges).
 */
export function vulnerableVersions(name: string, advisory: Pick<AdvisoryFacts, "affected">): string | null {
  const parts: string[] = [];
  for (const entry of advisory.affected) {
    if (entry.packageName !== name) continue;
    for (const r of entry.ranges) {
      if (!ORDERED.has(r.type.toUpperCase())) continue;
      const intervals = rangeIntervals(r);
      if (intervals === null) return "*";
      parts.push(...intervals);
    }
    for (const v of entry.versions) {
      const c = clean(v);
      if (c === null) return "*";
      parts.push(c);
    }
  }
  const unique = [...new Set(parts)];
  return unique.length > 0 ? unique.join(" || ") : null;
}

export function advisoryUrl(a: Pick<AdvisoryFacts, "id" | "url">): string {
  if (/^GHSA(-[0-9a-z]{4}){3}$/i.test(a.id)) return `https://github.com/advisories/${a.id}`;
  return a.url ?? `https://osv.dev/vulnerability/${encodeURIComponent(a.id)}`;
}

export function toNpmAdvisory(name: string, a: AdvisoryFacts): NpmBulkAdvisory | null {
  const range = vulnerableVersions(name, a);
  if (range === null) return null;
  return {
    id: a.id,
    url: advisoryUrl(a),
    title: a.summary ?? a.id,
    severity: npmSeverity(a.severity),
    vulnerable_versions: range,
    cwe: a.cwe,
    cvss: { score: a.cvssScore ?? 0, vectorString: a.cvssVector },
  };
}

/** Validates a bulk request body: `{ name: [version, …] }`. Returns the problem, or null. */
export function bulkBodyProblem(body: unknown, maxNames = 100_000): string | null {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "the body must be a JSON object of package name → array of versions";
  const entries = Object.entries(body);
  if (entries.length > maxNames) return `too many packages (${entries.length}); at most ${maxNames}`;
  for (const [name, versions] of entries) {
    if (!Array.isArray(versions) || !versions.every((v) => typeof v === "string")) return `${name}: expected an array of version strings`;
  }
  return null;
}
