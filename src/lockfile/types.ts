/** One registry package (name@version) locked by the lockfile, with every install path that holds it. */
export interface LockfilePackage {
  name: string;
  version: string;
  /** SRI string exactly as the lockfile gives it (may hold several space-separated hashes); null when absent. */
  integrity: string | null;
  /** The lockfile's `resolved` URL; informational only, never a place to fetch from. Null when absent. */
  resolved: string | null;
  /** Install paths such as `node_modules/a/node_modules/b`, in lockfile order. */
  paths: string[];
}

/** An entry that is not a registry package (git, local file, link, bundled, remote tarball, workspace folder). */
export interface SkippedEntry {
  path: string;
  /** A short human sentence, e.g. `git dependency (git+ssh://…)`. */
  reason: string;
}

export interface ParsedLockfile {
  lockfileVersion: 1 | 2 | 3;
  /** Deduplicated by name@version, sorted by name then version. */
  packages: LockfilePackage[];
  skipped: SkippedEntry[];
}
