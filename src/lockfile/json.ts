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

/** Control, line-separator and bidi-override characters: escaped in messages so they cannot reshape a log line. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from the lockfile made safe and short for a message: unsafe characters escaped as `\uXXXX`, the middle of
 * long text elided (a 5,000-level v1 path keeps its start and its end).
 */
export function printable(text: string, max = 240): string {
  const short = text.length > max ? `${text.slice(0, Math.floor(max / 3))}…${text.slice(text.length - Math.ceil((2 * max) / 3))}` : text;
  return short.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Quotes a value for a message (JSON-style for strings), cut to a readable length. */
export function quote(value: unknown, max = 120): string {
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "an array";
  if (value !== null && typeof value === "object") return "an object";
  if (typeof value !== "string") return printable(String(value), max);
  return `"${printable(value.replace(/["\\]/g, (c) => `\\${c}`), max)}"`;
}

/** The type of a JSON value, for messages. */
export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** `lockfile_invalid` with the message `<path>: <message>`, naming the offending path. */
export function invalidShape(path: string, message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError("lockfile_invalid", `${printable(path)}: ${message}`, { details: { path, ...details } });
}
