import validatePackageName from "validate-npm-package-name";
import { AppError } from "../errors.ts";
import { printable, quote } from "./json.ts";

/**
 * Names every current npm accepts: lowercase URL-safe characters, not starting with `.`, `_` or `-`, optionally scoped.
 * validate-npm-package-name accepts all of them (bar its two excluded names), so they skip the library: a large
 * lockfile checks 100k names.
 */
const COMMON_NAME = /^(?:@[a-z0-9~][a-z0-9._~-]*\/)?[a-z0-9~][a-z0-9._~-]*$/;

/** The longest package name npm accepts. */
export const MAX_NAME_LENGTH = 214;

/** Why `name` is not an acceptable npm package name, or null when it is. */
export function nameProblem(name: string): string | null {
  // npm's limit. validForOldPackages would let longer names through, but no registry package has one, and a long
  // enough name no longer fits the (name, version) btree index: PostgreSQL would refuse the insert (a 500).
  if (name.length > MAX_NAME_LENGTH) return `it is ${name.length} characters long; npm names have at most ${MAX_NAME_LENGTH}`;
  if (name.includes("..")) return 'it contains ".."';
  if (COMMON_NAME.test(name) && name !== "node_modules" && name !== "favicon.ico") return null;
  if (name.includes("\\")) return "it contains a backslash";
  const slash = name.indexOf("/");
  if (name.startsWith("@")) {
    if (slash < 0 || name.indexOf("/", slash + 1) >= 0) return "a scoped name has exactly one slash, after the scope";
    if (name.startsWith("@.")) return "the scope cannot start with a period";
  } else if (slash >= 0) {
    return "only a scoped name (@scope/name) may contain a slash";
  }
  // validForOldPackages: the registry still serves old names with capitals or special characters (e.g. JSONStream).
  const result = validatePackageName(name);
  return result.validForOldPackages ? null : result.errors.join("; ");
}

/** Throws `invalid_package_name` naming the lockfile path when `name` is not a valid npm package name. */
export function assertPackageName(path: string, name: string): void {
  const problem = nameProblem(name);
  if (problem !== null) {
    throw new AppError("invalid_package_name", `${printable(path)}: ${quote(name)} is not a valid npm package name (${problem})`, {
      details: { path, name },
    });
  }
}

/** The unscoped part of a package name: `@s/n` → `n`, `n` → `n`. */
export function baseName(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/**
 * The folder name under the LAST `node_modules/` of a v2/v3 `packages` key (`node_modules/a/node_modules/@s/b` →
 * `@s/b`), or null when the key is not inside any node_modules folder (workspace or local folder). The result is not
 * validated here: `node_modules/../../x` gives `../../x`, which the caller rejects.
 */
export function installNameOfKey(key: string): string | null {
  const nested = key.lastIndexOf("/node_modules/");
  if (nested >= 0) return key.slice(nested + "/node_modules/".length);
  if (key.startsWith("node_modules/")) return key.slice("node_modules/".length);
  return null;
}
