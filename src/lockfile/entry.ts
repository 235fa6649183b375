import { describeType, invalidShape, own, type JsonObject } from "./json.ts";

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
