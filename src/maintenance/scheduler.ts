/**
 * Periodic maintenance of the queue (node-cron): the stuck-row rescuer (STUCK_CHECK_CRON) and the
 * audit sealer (AUDIT_SEAL_CRON). It runs in the API process (api/main.ts), once per deployment,
 * not in every worker: workers are scaled out and only work the queue, and each one is ~8 MiB smaller
 * without node-cron (its time-zone arithmetic loads ICU's locale and zone data). Several API replicas
 * may each run it: every rescuer shard and the sealer take a transaction-scoped advisory lock, so one
 * run at a time does the work and the others find nothing to do.
 */
import cron, { type ScheduledTask } from "node-cron";
import { Counter, type Registry } from "prom-client";
import { sealEvents } from "../audit/sealer.ts";
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import { rescueStuck } from "../queue/rescuer.ts";
import { notifyWork } from "../queue/sql.ts";

/**
 * Events per sealer transaction (sealEvents' default is 5,000). A batch goes out as one JSON
 * parameter, which Prisma serialises once more; at 1,000 events the strings stay out of V8's
 * large-object space, and the sealer still chains ~18k events/s on the benchmark machine, above the
 * ~10k events/s of one worker draining at full speed.
 */
const SEAL_BATCH = 1_000;

export interface Maintenance {
  /** Schedule both tasks. */
  start(): void;
  /** Unschedule both; waits for a run in progress. */
  stop(): Promise<void>;
  /** Run the rescuer once now (also scheduled): rows reset. Errors are logged, and count as 0. */
  rescue(): Promise<number>;
  /** Run the sealer once now (also scheduled): events sealed, 0 when another process held the lock. */
  seal(): Promise<number>;
}

export interface MaintenanceOptions {
  config: Pick<Config, "STUCK_CHECK_CRON" | "AUDIT_SEAL_CRON" | "STUCK_AFTER_MINUTES" | "MAX_ATTEMPTS">;
  db: Db;
  log: Logger;
  /** Where `spm_rescuer_reset_total` goes (the API's registry); none when omitted. */
  metricsRegistry?: Registry;
}

/** Throws on an invalid schedule, before anything runs. */
export function createMaintenance(opts: MaintenanceOptions): Maintenance {
  const { config, db } = opts;
  for (const [name, expr] of [["STUCK_CHECK_CRON", config.STUCK_CHECK_CRON], ["AUDIT_SEAL_CRON", config.AUDIT_SEAL_CRON]] as const) {
    if (!cron.validate(expr)) throw new Error(`${name} is not a valid cron expression: ${expr}`);
  }
  const log = opts.log.child({ component: "maintenance" });
  const resets = opts.metricsRegistry
    ? new Counter({
        name: "spm_rescuer_reset_total",
        help: "Stuck rows reset by the rescuer run in this process, by the in-progress status they were stuck in",
        labelNames: ["from_status"],
        registers: [opts.metricsRegistry],
      })
    : null;
  let rescueTask: ScheduledTask | null = null;
  let sealTask: ScheduledTask | null = null;
  let rescuing: Promise<number> | null = null;
  let sealing: Promise<number> | null = null;

  const rescue = (): Promise<number> => {
    rescuing ??= (async () => {
      try {
        const { count, groups } = await rescueStuck(db, { stuckAfterSeconds: config.STUCK_AFTER_MINUTES * 60, maxAttempts: config.MAX_ATTEMPTS }, log);
        for (const g of groups) resets?.inc({ from_status: g.from_status }, g.n);
        if (count > 0) {
          log.warn({ count }, "rescuer reset stuck packages");
          await notifyWork(db); // the reset rows are claimable now: wake the idle workers
        }
        return count;
      } catch (err) {
        log.warn({ err }, "rescuer run failed");
        return 0;
      } finally {
        rescuing = null;
      }
    })();
    return rescuing;
  };

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
    rescue,
    seal,
    start() {
      // Both catch their own errors; a run still going when its next time comes is skipped.
      rescueTask = cron.schedule(config.STUCK_CHECK_CRON, () => void rescue(), { name: "stuck-rescuer", noOverlap: true });
      sealTask = cron.schedule(config.AUDIT_SEAL_CRON, () => void seal(), { name: "audit-sealer", noOverlap: true });
      log.info({ rescuer: config.STUCK_CHECK_CRON, sealer: config.AUDIT_SEAL_CRON }, "maintenance scheduled");
    },
    async stop() {
      await Promise.all([rescueTask?.stop(), sealTask?.stop()]);
      rescueTask = sealTask = null;
      await rescuing;
      await sealing;
    },
  };
}
