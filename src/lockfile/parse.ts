import { AppError } from "../errors.ts";
import { Collector } from "./collector.ts";
import { decodeLockfile } from "./decode.ts";
import { collectDependencyTree } from "./dependencies-tree.ts";
import { describeType, invalidShape, isJsonObject, own, quote, type JsonObject } from "./json.ts";
import { collectPackagesMap } from "./packages-map.ts";
import type { ParsedLockfile } from "./types.ts";

export type { LockfilePackage, ParsedLockfile, SkippedEntry } from "./types.ts";

/**
 * Parses a package-lock.json / npm-shrinkwrap.json into its registry packages (deduplicated by name@version, with
 * every install path) and the entries that are not registry packages (git, file:, links, bundled, remote tarballs,
 * workspace folders). Pure: no I/O. Throws AppError with code not_json, lockfile_version_unsupported,
 * lockfile_invalid, lockfile_empty, invalid_package_name or invalid_version; messages name the offending path.
 */
export function parseLockfile(input: Buffer | string): ParsedLockfile {
  const root = decodeLockfile(input);
  const lockfileVersion = lockfileVersionOf(root);
  const collector = new Collector();
  if (lockfileVersion === 1) {
    if (own(root, "packages") !== undefined) {
      throw invalidShape(
        "packages",
        'lockfileVersion 1 files have no "packages" map (npm 7 and later write lockfileVersion 2 or 3 with it); ' +
          "the lockfileVersion was probably edited",
      );
    }
    collectDependencyTree(root, collector);
  } else {
    // v2 carries both the v1 `dependencies` tree (for npm 6) and `packages`; npm 7+ installs from `packages`.
    const packages = own(root, "packages");
    if (packages === undefined) throw invalidShape("packages", `lockfileVersion ${lockfileVersion} files must have a "packages" map`);
    if (!isJsonObject(packages)) throw invalidShape("packages", `must be an object, not ${describeType(packages)}`);
    collectPackagesMap(packages, collector);
  }
  return collector.finish(lockfileVersion);
}

/**
 * lockfileVersion must be 1, 2 or 3, with one exception. Shrinkwrap files from before npm 5, and seed fixtures of
 * the system this replaces, have no lockfileVersion but carry the v1 `dependencies` tree; such a file is read as v1
 * when (a) it has no `packages` map (npm 7+ always writes lockfileVersion next to one) and (b) `dependencies` is a
 * non-empty object whose every entry is an object with a string `version`. That keeps out a package.json (whose
 * `dependencies` values are range strings) and anything else without a lockfileVersion.
 */
function lockfileVersionOf(root: JsonObject): 1 | 2 | 3 {
  const raw = own(root, "lockfileVersion");
  if (raw === 1 || raw === 2 || raw === 3) return raw;
  if (raw !== undefined) {
    throw new AppError("lockfile_version_unsupported", `lockfileVersion ${quote(raw)} is not supported (only 1, 2 and 3 are)`, {
      details: { lockfileVersion: raw },
    });
  }
  if (looksLikeLegacyV1(root)) return 1;
  const dependencies = own(root, "dependencies");
  const looksLikePackageJson =
    isJsonObject(dependencies) && Object.values(dependencies).some((value) => typeof value === "string");
  throw new AppError(
    "lockfile_version_unsupported",
    looksLikePackageJson
      ? "The file has no lockfileVersion and its dependencies are version ranges: this looks like package.json, not package-lock.json"
      : "The file has no lockfileVersion, so it is not a package-lock.json that npm 5 or later wrote",
  );
}

function looksLikeLegacyV1(root: JsonObject): boolean {
  if (own(root, "packages") !== undefined) return false;
  const dependencies = own(root, "dependencies");
  if (!isJsonObject(dependencies)) return false;
  let count = 0;
  for (const value of Object.values(dependencies)) {
    if (!isJsonObject(value) || typeof own(value, "version") !== "string") return false;
    count++;
  }
  return count > 0;
}
