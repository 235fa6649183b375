/**
 * The audit trail's hash chain: what is hashed, and how.
 *
 * Every `package_event` gets, when the sealer reaches it (src/audit/sealer.ts), a `seal_seq`
 * (1, 2, 3, … in seal order), `prev_hash` (the `hash` of the event with seal_seq − 1; 64 zeros for the
 * first) and `hash` = sha256_hex(prev_hash + canonical JSON of the event's content). The content is
 * `{ actor, at, details, from_status, id, package_id, reason, to_status }` in canonical JSON: object keys
 * sorted (by UTF-16 code units), no whitespace, numbers and strings as JSON.stringify writes them
 * (RFC 8785 style), `id` as its decimal digits, `at` as UTC ISO text with microseconds
 * (`2026-01-02T03:04:05.123456Z`): read as text from SQL, because a JS Date drops the microseconds.
 */
import { createHash } from "node:crypto";
import { Prisma } from "../db/client.ts";

export const GENESIS_HASH = "0".repeat(64);

/** The hashed content of one event, as the SQL below reads it. */
export interface EventContent {
  /** bigint, as decimal text. */
  id: string;
  package_id: number;
  from_status: string | null;
  to_status: string;
  actor: string;
  reason: string | null;
  details: unknown;
  /** UTC, microseconds: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
  at: string;
}

/** `at` as the exact text that is hashed (microseconds, UTC; independent of the session's TimeZone). */
export const AT_TEXT = Prisma.sql`to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The columns of EventContent, for a query over `package_event e`. */
export const EVENT_CONTENT_COLUMNS = Prisma.sql`e.id::text AS id, e.package_id, e.from_status::text AS from_status,
  e.to_status::text AS to_status, e.actor, e.reason, e.details, ${AT_TEXT} AS at`;

/** Canonical JSON: sorted object keys, no whitespace; bigint as its digits. */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new Error(`cannot canonicalise ${value}`);
      return JSON.stringify(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(",")}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
    }
    default:
      throw new Error(`cannot canonicalise a ${typeof value}`);
  }
}

/** The canonical JSON of an event's content (what its hash covers, after prev_hash). */
export function eventCanonical(e: EventContent): string {
  if (!/^\d+$/.test(e.id)) throw new Error(`event id must be decimal digits, got ${e.id}`);
  return canonicalJson({
    id: BigInt(e.id),
    package_id: e.package_id,
    from_status: e.from_status,
    to_status: e.to_status,
    actor: e.actor,
    reason: e.reason,
    details: e.details ?? null,
    at: e.at,
  });
}

/** sha256_hex(prev_hash + canonical content). */
export function eventHash(prevHash: string, e: EventContent): string {
  return createHash("sha256").update(prevHash, "utf8").update(eventCanonical(e), "utf8").digest("hex");
}
