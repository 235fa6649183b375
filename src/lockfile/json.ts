import { AppError } from "../errors.ts";

export type JsonObject = Record<string, unknown>;

/** A JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Reads an own property only, so a polluted Object.prototype can never supply a value. Parsed keys such as
 * `__proto__` are own data properties created by JSON.parse and are read, never assigned, here.
 */
export function own(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** Quotes a value for a message, cut to a readable length. */
export function quote(value: unknown, max = 120): string {
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "an array";
  if (value !== null && typeof value === "object") return "an object";
  const text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The type of a JSON value, for messages. */
export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** `"${path}" must be …`, naming the offending path. */
export function invalidShape(path: string, message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError("lockfile_invalid", `${path}: ${message}`, { details: { path, ...details } });
}
