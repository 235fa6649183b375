import { AppError } from "../errors.ts";
import { describeIntegrity, digestsOf, integrityConflicts, isIntegrity, strength, type Digests } from "./integrity.ts";
import { invalidShape, printable } from "./json.ts";
import { assertTarballMatches, type TarballUrl } from "./resolved.ts";
import type { LockfilePackage, ParsedLockfile, SkippedEntry } from "./types.ts";
import { assertExactVersion, compareVersions } from "./versions.ts";

interface Collected {
  name: string;
  version: string;
  integrity: string | null;
  integrityPath: string;
  resolved: string | null;
  paths: string[];
}

/** One registry entry of the lockfile. The caller has validated `name` (it knows which key or field it came from). */
export interface RegistryEntry {
  path: string;
  name: string;
  version: string;
  integrity: string | null;
  resolved: string | null;
  /** `resolved` already classified as a registry tarball, when present. */
  source: TarballUrl | null;
}

/**
 * Gathers packages and skipped entries, validating and deduplicating by name@version. Keys are kept in a Map, never
 * as properties of a plain object, so names such as `constructor` are ordinary data.
 */
export class Collector {
  private readonly byId = new Map<string, Collected>();
  private readonly skipped: SkippedEntry[] = [];

  skip(path: string, reason: string): void {
    this.skipped.push({ path, reason });
  }

  add(entry: RegistryEntry): void {
    const { path, name, version, integrity, resolved } = entry;
    assertExactVersion(path, version);
    if (integrity !== null && !isIntegrity(integrity)) {
      throw invalidShape(path, `integrity ${describeIntegrity(integrity)} is not an SRI string such as "sha512-<base64>"`, {
        integrity,
      });
    }
    if (entry.source !== null) assertTarballMatches(path, entry.source, name, version);

    const id = `${name}@${version}`;
    const existing = this.byId.get(id);
    if (existing === undefined) {
      this.byId.set(id, {
        name,
        version,
        integrity,
        integrityPath: path,
        resolved,
        paths: [path],
      });
      return;
    }
    existing.paths.push(path);
    existing.resolved ??= resolved;
    if (integrity === null || integrity === existing.integrity) return;
    if (existing.integrity === null) {
      existing.integrity = integrity;
      existing.integrityPath = path;
      return;
    }
    // Different strings (rare): compare hash by hash. Parsed only here, so the common path allocates nothing.
    const before: Digests = digestsOf(existing.integrity);
    const now: Digests = digestsOf(integrity);
    if (integrityConflicts(before, now)) {
      throw new AppError(
        "lockfile_invalid",
        `${printable(existing.integrityPath)} and ${printable(path)} both lock ${printable(id)} but with different integrity ` +
          `(${describeIntegrity(existing.integrity)} vs ${describeIntegrity(integrity)})`,
        { details: { name, version, paths: [existing.integrityPath, path], integrity: [existing.integrity, integrity] } },
      );
    }
    // Compatible but different (e.g. sha1 at one path, sha512 at another): keep the stronger one.
    if (strength(now) > strength(before)) {
      existing.integrity = integrity;
      existing.integrityPath = path;
    }
  }

  /** The result, sorted by name then version. Throws `lockfile_empty` when no registry package was found. */
  finish(lockfileVersion: 1 | 2 | 3): ParsedLockfile {
    const packages: LockfilePackage[] = [];
    for (const c of this.byId.values()) {
      packages.push({ name: c.name, version: c.version, integrity: c.integrity, resolved: c.resolved, paths: c.paths });
    }
    if (packages.length === 0) {
      const note = this.skipped.length === 0 ? "" : ` (${this.skipped.length} non-registry entries were skipped)`;
      throw new AppError("lockfile_empty", `The lockfile lists no registry packages${note}.`, {
        details: { skipped: this.skipped },
      });
    }
    packages.sort((a, b) => (a.name === b.name ? compareVersions(a.version, b.version) : a.name < b.name ? -1 : 1));
    return { lockfileVersion, packages, skipped: this.skipped };
  }
}
