import semver from "semver";
import { AppError } from "../errors.ts";
import { printable, quote } from "./json.ts";

/**
 * True for an exact semver version written the way npm writes it. `semver.valid` alone would accept `v1.0.0` and
 * ` 1.0.0 ` (and drop build metadata), so the canonical form must equal the input: nothing is stripped.
 */
export function isExactVersion(version: string): boolean {
  const known = checked.get(version);
  if (known !== undefined) return known;
  const exact = checkExact(version);
  if (checked.size < 100_000) checked.set(version, exact);
  return exact;
}

/** Lockfiles repeat the same few thousand version strings; semver.parse builds an object per call. */
const checked = new Map<string, boolean>();

function checkExact(version: string): boolean {
  const parsed = semver.parse(version);
  if (parsed === null) return false;
  const canonical = parsed.build.length > 0 ? `${parsed.version}+${parsed.build.join(".")}` : parsed.version;
  return canonical === version;
}

/** Throws `invalid_version` naming the lockfile path when `version` is not an exact semver version. */
export function assertExactVersion(path: string, version: string): void {
  if (!isExactVersion(version)) {
    throw new AppError("invalid_version", `${printable(path)}: ${quote(version)} is not an exact semver version`, {
      details: { path, version },
    });
  }
}

/** Version order for output: semver precedence, then build metadata, then text (total and deterministic). */
export function compareVersions(a: string, b: string): number {
  const bySemver = semver.compareBuild(a, b);
  if (bySemver !== 0) return bySemver;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The version without build metadata (`1.0.0+x` → `1.0.0`), as registry tarball file names carry it. */
export function withoutBuild(version: string): string {
  const plus = version.indexOf("+");
  return plus < 0 ? version : version.slice(0, plus);
}
