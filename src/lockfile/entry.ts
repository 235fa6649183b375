import { describeType, invalidShape, own, type JsonObject } from "./json.ts";

/**
 * The longest install path accepted: Linux's PATH_MAX. npm could not have installed a deeper tree, and a v1 tree
 * builds its paths by concatenation, so without a bound a 200 kB file nesting 5,000 levels would yield paths totalling
 * ~190 million characters (stored with the request and sent back in `skipped`).
 */
export const MAX_INSTALL_PATH = 4096;

/** Throws `lockfile_invalid` for an install path longer than any file system accepts. */
export function assertInstallPath(path: string): void {
  if (path.length > MAX_INSTALL_PATH) {
    throw invalidShape(
      path,
      `the install path is ${path.length} characters long; no file system accepts paths over ${MAX_INSTALL_PATH}, so npm cannot have written this tree`,
      { length: path.length },
    );
  }
}

/** An optional string field of an entry: null when absent, `lockfile_invalid` when present with another type. */
export function optionalString(path: string, entry: JsonObject, field: string): string | null {
  const value = own(entry, field);
  if (value === undefined) return null;
  if (typeof value !== "string") throw invalidShape(path, `"${field}" must be a string, not ${describeType(value)}`);
  return value;
}

/** The entry's `version`, which every installed (non-skipped) entry must carry. */
export function requiredVersion(path: string, entry: JsonObject): string {
  const value = own(entry, "version");
  if (value === undefined) throw invalidShape(path, 'the entry has no "version"');
  if (typeof value !== "string") throw invalidShape(path, `"version" must be a string, not ${describeType(value)}`);
  return value;
}
