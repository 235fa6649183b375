/**
 * The stuck-row rescuer: rows whose lease holder stopped heartbeating (crashed, partitioned, frozen)
 * go back to their stage's queue, or to `failed` once attempts are used up. Every worker schedules it;
 * a transaction-scoped advisory lock makes sure only one runs at a time. Works in batches with
 * SKIP LOCKED so it never blocks claiming.
 */
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { resetStuck, tryRescuerLock, type ResetGroup } from "./sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "./states.ts";

export interface RescueOptions {
  stuckAfterSeconds: number;
  maxAttempts: number;
  /** Rows per transaction (default 10,000). */
  batchSize?: number;
  /**
   * Transactions run in parallel, each over its shard of the rows (id % parallel), each under its own
   * advisory lock (default 2). A reset is CPU-bound in PostgreSQL: two backends share the work.
   */
  parallel?: number;
}

export interface RescueResult {
  /** False when other processes held every shard's lock. */
  ran: boolean;
  /** Rows reset in all. */
  count: number;
  /** Per batch, per transition and lease holder: counts and sample ids. */
  groups: ResetGroup[];
}

export async function rescueStuck(db: Db, opts: RescueOptions, log?: Logger): Promise<RescueResult> {
  const shards = Math.max(1, opts.parallel ?? 2);
  const parts = await Promise.all(Array.from({ length: shards }, (_, shard) => rescueShard(db, opts, shard, shards, log)));
  return {
    ran: parts.some((p) => p.ran),
    count: parts.reduce((n, p) => n + p.count, 0),
    groups: parts.flatMap((p) => p.groups),
  };
}

async function rescueShard(db: Db, opts: RescueOptions, shard: number, shards: number, log?: Logger): Promise<RescueResult> {
  const limit = opts.batchSize ?? 10_000;
  const groups: ResetGroup[] = [];
  let count = 0;
  for (;;) {
    const batch = await db.$transaction(async (tx) => {
      if (!(await tryRescuerLock(tx, shard))) return null;
      return resetStuck(tx, {
        stuckSeconds: opts.stuckAfterSeconds,
        maxAttempts: opts.maxAttempts,
        limit,
        queued: [...QUEUED_STATUSES],
        active: [...ACTIVE_STATUSES],
        shard,
        shards,
      });
    }, { timeout: 60_000 });
    if (batch === null) return { ran: count > 0, count, groups };
    const n = batch.reduce((sum, g) => sum + g.n, 0);
    count += n;
    groups.push(...batch);
    for (const g of batch) {
      log?.warn(
        { from: g.from_status, to: g.to_status, leaseOwner: g.lease_owner, count: g.n, packageIds: g.sample_ids },
        "reset stuck packages (each has its event in the audit trail)",
      );
    }
    if (n < limit) break;
  }
  return { ran: true, count, groups };
}
