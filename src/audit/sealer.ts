/**
 * The audit sealer: chains `package_event` rows into a tamper-evident hash chain after they are written.
 *
 * Events are inserted by many concurrent transactions (every queue statement writes its own), so chaining
 * at insert time would serialise the whole queue on the chain head. Instead the API process's maintenance
 * schedules the sealer (AUDIT_SEAL_CRON, node-cron: src/maintenance/scheduler.ts) and a
 * transaction-scoped advisory lock lets one run at a time across API replicas.
 * Each batch, in one transaction: read the chain head (highest seal_seq), take the oldest unsealed
 * events visible now (`seal_seq IS NULL`, id order), give each the next seal_seq, prev_hash and hash
 * (src/audit/chain.ts), and write them in one UPDATE. An event whose transaction commits late (a lower
 * id than events already sealed) is simply taken by a later batch: the chain runs in seal order, and
 * nothing is ever skipped.
 */
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import type { Sql } from "../queue/sql.ts";
import { EVENT_CONTENT_COLUMNS, GENESIS_HASH, eventHash, type EventContent } from "./chain.ts";

/** Advisory lock key of the sealer ("spmseals" as a number). */
export const SEALER_LOCK_KEY = 0x73706d7365616c73n;

export interface SealOptions {
  /** Events per batch (one transaction each). */
  batchSize?: number;
  /** Stop after this many batches (the rest waits for the next run). */
  maxBatches?: number;
}

export interface SealResult {
  /** False when another process held the sealer lock (nothing was done). */
  ran: boolean;
  sealed: number;
  /** The chain head after this run (null: nothing sealed yet, or the lock was held). */
  head: { sealSeq: string; hash: string } | null;
}

/** Try the sealer's transaction-scoped advisory lock (released at commit). */
export async function trySealerLock(sql: Sql): Promise<boolean> {
  const [row] = await sql.$queryRaw<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(${SEALER_LOCK_KEY}::bigint) AS locked`;
  return row?.locked === true;
}

/**
 * Seal one batch. Call inside a transaction that holds the sealer lock. Returns how many events were
 * sealed and the new head.
 */
export async function sealBatch(sql: Sql, limit: number): Promise<{ sealed: number; head: { sealSeq: string; hash: string } | null }> {
  // Qualified `e.seal_seq` in ORDER BY: a bare `seal_seq` would sort by the text output column.
  const [last] = await sql.$queryRaw<{ seal_seq: string; hash: string | null; id: string }[]>`
    SELECT e.seal_seq::text AS seal_seq, e.hash, e.id::text AS id FROM package_event e
    WHERE e.seal_seq IS NOT NULL ORDER BY e.seal_seq DESC LIMIT 1`;
  if (last && (last.hash === null || !/^[0-9a-f]{64}$/.test(last.hash))) {
    // Someone altered the head; chaining onto it would hide that. `npm run audit:verify` reports it.
    throw new Error(`audit chain head (seal_seq ${last.seal_seq}, event ${last.id}) has no valid hash: not sealing; run npm run audit:verify`);
  }
  // Read in id order from the partial index of unsealed events (package_event_unsealed_idx).
  const rows = await sql.$queryRaw<EventContent[]>`
    SELECT ${EVENT_CONTENT_COLUMNS} FROM package_event e
    WHERE e.seal_seq IS NULL
    ORDER BY e.id
    LIMIT ${limit}`;
  const head = last ? { sealSeq: last.seal_seq, hash: last.hash! } : null;
  if (rows.length === 0) return { sealed: 0, head };
  let seq = last ? BigInt(last.seal_seq) : 0n;
  let prev = last?.hash ?? GENESIS_HASH;
  const sealed = rows.map((r) => {
    seq += 1n;
    const hash = eventHash(prev, r);
    const out = { id: r.id, seal_seq: seq.toString(), prev_hash: prev, hash };
    prev = hash;
    return out;
  });
  const input = JSON.stringify(sealed);
  const updated = await sql.$executeRaw`
    UPDATE package_event e SET seal_seq = i.seal_seq, prev_hash = i.prev_hash, hash = i.hash
    FROM jsonb_to_recordset(${input}::jsonb) AS i(id bigint, seal_seq bigint, prev_hash text, hash text)
    WHERE e.id = i.id AND e.seal_seq IS NULL`;
  if (updated !== sealed.length) {
    throw new Error(`audit sealer: updated ${updated} of ${sealed.length} events; batch rolled back`);
  }
  return { sealed: sealed.length, head: { sealSeq: seq.toString(), hash: prev } };
}

/**
 * Seal every unsealed event (in batches, one transaction each) unless another process holds the lock.
 * Safe to call from anywhere, any number of times at once.
 */
export async function sealEvents(db: Db, opts: SealOptions = {}, log?: Pick<Logger, "debug">): Promise<SealResult> {
  const limit = opts.batchSize ?? 5_000;
  const maxBatches = opts.maxBatches ?? Number.POSITIVE_INFINITY;
  let ran = false;
  let sealed = 0;
  let head: SealResult["head"] = null;
  for (let batch = 0; batch < maxBatches; batch++) {
    const result = await db.$transaction(
      async (tx) => {
        if (!(await trySealerLock(tx))) return null;
        return sealBatch(tx, limit);
      },
      { timeout: 120_000 },
    );
    if (result === null) break;
    ran = true;
    sealed += result.sealed;
    head = result.head;
    if (result.sealed < limit) break;
  }
  if (sealed > 0) log?.debug({ sealed, head: head?.sealSeq }, "sealed audit events");
  return { ran, sealed, head };
}
