/**
 * Does an OSV `affected` entry cover a version? Follows the OSV evaluation algorithm
 * (https://ossf.github.io/osv-schema/#evaluation) with npm's ordering, which is semver precedence
 * (prereleases compare as semver says; build metadata is ignored).
 *
 * Fails closed: a version that cannot be compared throws {@link VersionCompareError}; it is never
 * reported as "not affected".
 */
import semver, { type SemVer } from "semver";
import type { AffectedPackage, OsvEvent, OsvRange } from "./osv.ts";

export type MatchResult = { affected: true; advisoryId: string } | { affected: false };

export class VersionCompareError extends Error {
  override name = "VersionCompareError";
}

/** Range types whose events are ordered versions. GIT (commit hashes) and unknown types are ignored. */
const orderedRangeTypes = new Set(["SEMVER", "ECOSYSTEM"]);

/** The event value that sorts before every version. */
const ZERO = "0";

/** Bottom of the order: `introduced: "0"` (also accepted in any other event, where it means the same). */
type Bound = SemVer | "min";

/** Parses a version as npm would record it (`v` prefix, `=` and surrounding blanks tolerated). */
function parseVersion(value: string, what: string): SemVer {
  const cleaned = semver.clean(value);
  const parsed = cleaned === null ? null : semver.parse(cleaned);
  if (parsed === null) throw new VersionCompareError(`cannot compare ${what} ${JSON.stringify(value)}: not a semver version`);
  return parsed;
}

function parseBound(value: string, what: string): Bound {
  return value.trim() === ZERO ? "min" : parseVersion(value, what);
}

function compareBound(a: Bound, b: Bound): number {
  if (a === "min") return b === "min" ? 0 : -1;
  if (b === "min") return 1;
  return semver.compare(a, b);
}

/** At equal versions `introduced` sorts first, so [x, x) is empty and [x, x] holds x. */
const eventRank = { introduced: 0, last_affected: 1, fixed: 2 } as const;
type EventKind = keyof typeof eventRank;

interface ParsedEvent {
  kind: EventKind;
  at: Bound;
}

function parseEvent(e: OsvEvent): ParsedEvent | null {
  for (const kind of Object.keys(eventRank) as EventKind[]) {
    const value = e[kind];
    if (value !== undefined) return { kind, at: parseBound(value, `${kind} event`) };
  }
  return null; // a limit event (handled apart) or an event with no known field
}

function rangeIncludes(v: SemVer, range: OsvRange): boolean {
  const events = range.events.map(parseEvent).filter((e): e is ParsedEvent => e !== null);

  // BeforeLimits: with limit events, v must be below at least one of them ("*" is infinity).
  const limits = range.events
    .filter((e) => e.limit !== undefined)
    .map((e) => (e.limit!.includes("*") ? "infinity" : parseBound(e.limit!, "limit event")));
  if (limits.length > 0 && !limits.some((l) => l === "infinity" || compareBound(v, l) < 0)) return false;

  const sorted = events.sort((a, b) => compareBound(a.at, b.at) || eventRank[a.kind] - eventRank[b.kind]);
  let vulnerable = false;
  for (const e of sorted) {
    const cmp = compareBound(v, e.at);
    if (e.kind === "introduced") {
      if (cmp >= 0) vulnerable = true;
    } else if (e.kind === "fixed") {
      if (cmp >= 0) vulnerable = false;
    } else if (e.kind === "last_affected") {
      if (cmp > 0) vulnerable = false;
    }
  }
  return vulnerable;
}

/**
 * True when `version` is listed in `versions` or falls in one of the SEMVER/ECOSYSTEM ranges.
 * Throws {@link VersionCompareError} when `version` or an event of an evaluated range is not semver
 * (the event value "0" and limit "*" are fine).
 */
export function isAffected(version: string, affected: { ranges: readonly OsvRange[]; versions: readonly string[] }): boolean {
  const key = semver.clean(version) ?? version.trim();
  if (affected.versions.some((listed) => (semver.clean(listed) ?? listed.trim()) === key)) return true;

  const v = parseVersion(version, "version");
  for (const range of affected.ranges) {
    if (!orderedRangeTypes.has(range.type.toUpperCase())) continue;
    if (rangeIncludes(v, range)) return true;
  }
  return false;
}

/**
 * Whether `name@version` is affected by an advisory: any of its `affected` entries for `name`
 * covers the version. Throws {@link VersionCompareError} like {@link isAffected}.
 */
export function matchAdvisory(
  name: string,
  version: string,
  advisory: { id: string; affected: readonly Pick<AffectedPackage, "packageName" | "ranges" | "versions">[] },
): MatchResult {
  for (const entry of advisory.affected) {
    if (entry.packageName !== name) continue;
    if (isAffected(version, entry)) return { affected: true, advisoryId: advisory.id };
  }
  return { affected: false };
}
