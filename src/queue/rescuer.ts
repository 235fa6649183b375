/**
 * The stuck-row rescuer: rows whose lease holder stopped heartbeating (crashed, partitioned, frozen)
 * go back to their stage's queue, or to `failed` once attempts are used up. Every worker schedules it;
 * a transaction-scoped advisory lock makes sure only one runs at a time. Works in batches with
 * SKIP LOCKED so it never blocks claiming.
 */
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { resetStuck, tryRescuerLock, type ResetRow } from "./sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "./states.ts";

export interface RescueOptions {
  stuckAfterSeconds: number;
  maxAttempts: number;
  batchSize?: number;
}

export interface RescueResult {
  /** False when another process held the rescuer lock. */
  ran: boolean;
  reset: ResetRow[];
}

export async function rescueStuck(db: Db, opts: RescueOptions, log?: Logger): Promise<RescueResult> {
  const limit = opts.batchSize ?? 10_000;
  const reset: ResetRow[] = [];
  for (;;) {
    const batch = await db.$transaction(async (tx) => {
      if (!(await tryRescuerLock(tx))) return null;
      return resetStuck(tx, {
        stuckSeconds: opts.stuckAfterSeconds,
        maxAttempts: opts.maxAttempts,
        limit,
        queued: [...QUEUED_STATUSES],
        active: [...ACTIVE_STATUSES],
      });
    }, { timeout: 60_000 });
    if (batch === null) return { ran: reset.length > 0, reset };
    reset.push(...batch);
    if (batch.length < limit) break;
  }
  for (const r of reset) {
    log?.warn({ packageId: r.id, from: r.from_status, to: r.to_status, leaseOwner: r.lease_owner }, "reset stuck package");
  }
  return { ran: true, reset };
}
