/**
 * Periodic maintenance (node-cron): the audit sealer (AUDIT_SEAL_CRON). It runs in the API process
 * (api/main.ts), once per deployment, not in every worker: workers are scaled out and only work the
 * queue, and each one is ~8 MiB smaller without node-cron (its time-zone arithmetic loads ICU's locale
 * and zone data). Several API replicas may each run it: the sealer takes a transaction-scoped advisory
 * lock, so one run at a time does the work and the others find nothing to do.
 *
 * Stuck rows need no periodic pass: a worker takes over an expired lease itself (src/queue/sql.ts,
 * `takeOver`), in the same write that gives the row its new lease.
 */
import cron, { type ScheduledTask } from "node-cron";
import { sealEvents } from "../audit/sealer.ts";
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";

/**
 * Events per sealer transaction (sealEvents' default is 5,000). A batch goes out as one JSON
 * parameter, which Prisma serialises once more; at 1,000 events the strings stay out of V8's
 * large-object space, and the sealer still chains ~18k events/s on the benchmark machine, above the
 * ~10k events/s of one worker draining at full speed.
 */
const SEAL_BATCH = 1_000;

export interface Maintenance {
  /** Schedule the sealer. */
  start(): void;
  /** Unschedule it; waits for a run in progress. */
  stop(): Promise<void>;
  /** Run the sealer once now (also scheduled): events sealed, 0 when another process held the lock. */
  seal(): Promise<number>;
}

export interface MaintenanceOptions {
  config: Pick<Config, "AUDIT_SEAL_CRON">;
  db: Db;
  log: Logger;
}

/** Throws on an invalid schedule, before anything runs. */
export function createMaintenance(opts: MaintenanceOptions): Maintenance {
  const { config, db } = opts;
  if (!cron.validate(config.AUDIT_SEAL_CRON)) throw new Error(`AUDIT_SEAL_CRON is not a valid cron expression: ${config.AUDIT_SEAL_CRON}`);
  const log = opts.log.child({ component: "maintenance" });
  let sealTask: ScheduledTask | null = null;
  let sealing: Promise<number> | null = null;

  const seal = (): Promise<number> => {
    sealing ??= sealEvents(db, { batchSize: SEAL_BATCH }, log)
      .then((r) => r.sealed)
      .catch((err: unknown) => {
        log.warn({ err }, "audit sealer run failed");
        return 0;
      })
      .finally(() => {
        sealing = null;
      });
    return sealing;
  };

  return {
    seal,
    start() {
      // It catches its own errors; a run still going when its next time comes is skipped.
      sealTask = cron.schedule(config.AUDIT_SEAL_CRON, () => void seal(), { name: "audit-sealer", noOverlap: true });
      log.info({ sealer: config.AUDIT_SEAL_CRON }, "maintenance scheduled");
    },
    async stop() {
      await sealTask?.stop();
      sealTask = null;
      await sealing;
    },
  };
}
