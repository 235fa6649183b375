/**
 * Reading the audit trail for export (GET /api/packages/audit): filtered pages by event id, and a
 * stream of every matching event in batches (JSON Lines), so a large audit is never held in memory.
 */
import type { Sql } from "../queue/sql.ts";
import { AT_TEXT } from "./chain.ts";

export interface AuditFilter {
  /** Events of the packages this request asked for. */
  requestId?: number;
  packageId?: number;
  actor?: string;
  /** ISO times: from ≤ at < to. */
  from?: string;
  to?: string;
}

export interface AuditItem {
  id: number;
  seal_seq: number | null;
  package_id: number;
  /** name@version; null if the package row no longer exists (the trail outlives package rows) */
  package: string | null;
  from: string | null;
  to: string;
  actor: string;
  reason: string | null;
  details: unknown;
  /** UTC with microseconds: exactly the text the hash covers. */
  at: string;
  prev_hash: string | null;
  hash: string | null;
}

interface Row {
  id: string;
  seal_seq: string | null;
  package_id: number;
  name: string | null;
  version: string | null;
  from_status: string | null;
  to_status: string;
  actor: string;
  reason: string | null;
  details: unknown;
  at: string;
  prev_hash: string | null;
  hash: string | null;
}

/** Up to `limit` events with id > `after` matching the filter, in id order. */
export async function auditEvents(sql: Sql, filter: AuditFilter, after: bigint, limit: number): Promise<AuditItem[]> {
  const requestId = filter.requestId ?? null;
  const packageId = filter.packageId ?? null;
  const actor = filter.actor ?? null;
  const from = filter.from ?? null;
  const to = filter.to ?? null;
  const rows = await sql.$queryRaw<Row[]>`
    SELECT e.id::text AS id, e.seal_seq::text AS seal_seq, e.package_id, p.name, p.version,
      e.from_status::text AS from_status, e.to_status::text AS to_status, e.actor, e.reason, e.details,
      ${AT_TEXT} AS at, e.prev_hash, e.hash
    FROM package_event e
    LEFT JOIN package p ON p.id = e.package_id
    WHERE e.id > ${after.toString()}::bigint
      AND (${packageId}::int IS NULL OR e.package_id = ${packageId}::int)
      AND (${requestId}::int IS NULL OR e.package_id IN (
        SELECT rp.package_id FROM request_package rp WHERE rp.request_id = ${requestId}::int))
      AND (${actor}::text IS NULL OR e.actor = ${actor}::text)
      AND (${from}::timestamptz IS NULL OR e.at >= ${from}::timestamptz)
      AND (${to}::timestamptz IS NULL OR e.at < ${to}::timestamptz)
    ORDER BY e.id
    LIMIT ${limit}`;
  return rows.map((r) => ({
    id: Number(r.id),
    seal_seq: r.seal_seq === null ? null : Number(r.seal_seq),
    package_id: r.package_id,
    package: r.name === null ? null : `${r.name}@${r.version}`,
    from: r.from_status,
    to: r.to_status,
    actor: r.actor,
    reason: r.reason,
    details: r.details ?? null,
    at: r.at,
    prev_hash: r.prev_hash,
    hash: r.hash,
  }));
}

/** Every matching event after `after` (at most `max`), fetched `batchSize` at a time. */
export async function* streamAuditEvents(
  sql: Sql,
  filter: AuditFilter,
  opts: { after?: bigint; max?: number; batchSize?: number } = {},
): AsyncGenerator<AuditItem> {
  const batchSize = opts.batchSize ?? 1_000;
  let remaining = opts.max ?? Number.POSITIVE_INFINITY;
  let after = opts.after ?? 0n;
  while (remaining > 0) {
    const batch = await auditEvents(sql, filter, after, Math.min(batchSize, remaining));
    for (const item of batch) yield item;
    if (batch.length < Math.min(batchSize, remaining)) return;
    remaining -= batch.length;
    after = BigInt(batch[batch.length - 1]!.id);
  }
}
