/**
 * Verify the audit hash chain: walk every sealed event in seal_seq order (keyset batches, so any size
 * streams in constant memory), recompute each hash from the previous one and the event's content
 * (src/audit/chain.ts), and stop at the first broken link. Used by `npm run audit:verify`.
 *
 * What it detects: an event's content or hash changed (its own link breaks), an event deleted (a gap in
 * seal_seq, and the next event's prev_hash no longer matches), events reordered or re-numbered. What no
 * chain can detect on its own: the newest events deleted together with nothing after them; compare the
 * reported chain head with one recorded earlier (e.g. from a previous run) to catch that.
 */
import type { Sql } from "../queue/sql.ts";
import { EVENT_CONTENT_COLUMNS, GENESIS_HASH, eventHash, type EventContent } from "./chain.ts";

export type LinkProblem =
  /** seal_seq does not follow the previous event's: events between them are missing. */
  | "sequence_gap"
  /** prev_hash is not the previous event's hash. */
  | "prev_hash_mismatch"
  /** The stored hash is not the hash of prev_hash + this content: the content (or the hash) was altered. */
  | "hash_mismatch";

export interface BrokenLink {
  problem: LinkProblem;
  seal_seq: string;
  event_id: string;
  /** The seal_seq this event should have had (differs from seal_seq on a sequence gap). */
  expected_seal_seq: string;
  expected_prev_hash: string;
  stored_prev_hash: string | null;
  /** sha256 of the expected prev_hash + this event's content as stored now. */
  expected_hash: string;
  stored_hash: string | null;
}

export interface VerifyResult {
  ok: boolean;
  /** Events verified (all sealed events when ok; those before the break otherwise). */
  count: number;
  /** Hash of the last verified event (the chain head when ok); null when none. */
  head: string | null;
  head_seal_seq: string | null;
  broken: BrokenLink | null;
  /** Events not sealed yet (the sealer takes them on its next run). */
  unsealed: number;
}

type SealedRow = EventContent & { seal_seq: string; prev_hash: string | null; hash: string | null };

export async function verifyChain(sql: Sql, opts: { batchSize?: number } = {}): Promise<VerifyResult> {
  const limit = opts.batchSize ?? 5_000;
  let count = 0;
  let prevHash = GENESIS_HASH;
  let prevSeq = 0n;
  let after: string | null = null;
  let broken: BrokenLink | null = null;
  walk: for (;;) {
    const rows: SealedRow[] = await sql.$queryRaw<SealedRow[]>`
      SELECT e.seal_seq::text AS seal_seq, e.prev_hash, e.hash, ${EVENT_CONTENT_COLUMNS}
      FROM package_event e
      WHERE e.seal_seq IS NOT NULL AND (${after}::bigint IS NULL OR e.seal_seq > ${after}::bigint)
      ORDER BY e.seal_seq
      LIMIT ${limit}`;
    for (const row of rows) {
      const expectedSeq = prevSeq + 1n;
      const expectedHash = eventHash(prevHash, row);
      const problem: LinkProblem | null =
        BigInt(row.seal_seq) !== expectedSeq
          ? "sequence_gap"
          : row.prev_hash !== prevHash
            ? "prev_hash_mismatch"
            : row.hash !== expectedHash
              ? "hash_mismatch"
              : null;
      if (problem) {
        broken = {
          problem,
          seal_seq: row.seal_seq,
          event_id: row.id,
          expected_seal_seq: expectedSeq.toString(),
          expected_prev_hash: prevHash,
          stored_prev_hash: row.prev_hash,
          expected_hash: expectedHash,
          stored_hash: row.hash,
        };
        break walk;
      }
      count += 1;
      prevSeq = expectedSeq;
      prevHash = expectedHash;
    }
    if (rows.length < limit) break;
    after = rows[rows.length - 1]!.seal_seq;
  }
  const [u] = await sql.$queryRaw<{ n: string }[]>`SELECT count(*)::text AS n FROM package_event WHERE seal_seq IS NULL`;
  return {
    ok: broken === null,
    count,
    head: count > 0 ? prevHash : null,
    head_seal_seq: count > 0 ? prevSeq.toString() : null,
    broken,
    unsealed: Number(u?.n ?? 0),
  };
}

/** A human-readable report of a verification (what `npm run audit:verify` prints). */
export function formatVerifyReport(r: VerifyResult): string {
  const lines: string[] = [];
  if (r.ok) {
    lines.push(r.count === 0 ? "OK: 0 events, chain empty" : `OK: ${r.count} events, chain head ${r.head} (seal_seq ${r.head_seal_seq})`);
  } else {
    const b = r.broken!;
    const what =
      b.problem === "sequence_gap"
        ? `seal_seq ${b.expected_seal_seq}${BigInt(b.seal_seq) - BigInt(b.expected_seal_seq) > 1n ? `–${BigInt(b.seal_seq) - 1n}` : ""} missing (deleted?) before it`
        : b.problem === "prev_hash_mismatch"
          ? "its prev_hash is not the previous event's hash (the previous event was altered, replaced or deleted)"
          : "its content or hash was altered";
    lines.push(`BROKEN: chain breaks at seal_seq ${b.seal_seq} (event id ${b.event_id}): ${what}`);
    lines.push(`  expected hash      ${b.expected_hash}`);
    lines.push(`  stored hash        ${b.stored_hash ?? "(none)"}`);
    lines.push(`  expected prev_hash ${b.expected_prev_hash}`);
    lines.push(`  stored prev_hash   ${b.stored_prev_hash ?? "(none)"}`);
    lines.push(`  ${r.count} events verified before the break${r.head ? `, last good hash ${r.head} (seal_seq ${r.head_seal_seq})` : ""}`);
  }
  lines.push(`unsealed: ${r.unsealed} event${r.unsealed === 1 ? "" : "s"}${r.unsealed > 0 ? " (not chained yet; the sealer takes them within AUDIT_SEAL_CRON)" : ""}`);
  return lines.join("\n");
}
