/**
 * A worker process's parts: the queue runner over the pipeline's stages, the LISTEN connection, the
 * stuck-row rescuer and the audit sealer (node-cron, each one at a time across workers via an advisory
 * lock), the worker's liveness row, and its Prometheus metrics (its own
 * registry: several workers may share a process).
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { sealEvents } from "../src/audit/sealer.ts";
import type { Config } from "../src/config.ts";
import cron, { type ScheduledTask } from "node-cron";
import { createDb, type Db } from "../src/db/client.ts";
import type { Logger } from "../src/logger.ts";
import { createMetricsRegistry, type Registry } from "../src/metrics/registry.ts";
import { composeEvents, createWorkerMetrics, type WorkerMetrics } from "../src/metrics/worker.ts";
import { pipelineStages, type WorkerContext } from "../src/pipeline/stages.ts";
import { cachedLicencePolicy } from "../src/policy/licence-policy-store.ts";
import { PgListener } from "../src/db/pg-listener.ts";
import { rescueStuck } from "../src/queue/rescuer.ts";
import { QueueRunner, type RunnerEvents, type RunnerStage } from "../src/queue/runner.ts";
import { touchWorker, WORK_CHANNEL } from "../src/queue/sql.ts";
import { ContentStore } from "../src/store/content-store.ts";
import { CircuitBreaker } from "../src/upstream/circuit-breaker.ts";
import { RegistryClient } from "../src/upstream/registry-client.ts";

export interface Worker {
  id: string;
  db: Db;
  runner: QueueRunner<WorkerContext>;
  registry: RegistryClient;
  /** This worker's metrics; `metrics.registry` is what its `/metrics` serves. */
  metrics: WorkerMetrics;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Run the rescuer once now (also scheduled by cron). */
  rescue(): Promise<number>;
  /** Run the audit sealer once now (also scheduled by cron): events sealed, 0 when another process held the lock. */
  seal(): Promise<number>;
}

/**
 * Events per sealer transaction (sealEvents' default is 5,000). A batch goes out as one JSON
 * parameter, which Prisma serialises once more; at 5,000 events each string is ~1 MB and lands in
 * V8's large-object space, where dead ones pile up until the next full GC (~8 MiB more RSS while a
 * worker drains a backlog). At 1,000 the sealer still chains ~18k events/s on the benchmark machine
 * (5,000: ~24k/s), above the ~10k events/s of one worker draining at full speed.
 */
const SEAL_BATCH = 1_000;

export interface WorkerOptions {
  /** The registry the worker's metrics go to (default: a fresh one with the default process metrics). */
  metricsRegistry?: Registry;
  /** The stages and steps to run (default: the pipeline's, `pipelineStages()`); the memory benchmark runs no-op steps. */
  stages?: RunnerStage<WorkerContext>[];
}

export function createWorker(config: Config, databaseUrl: string, log: Logger, events?: RunnerEvents, opts: WorkerOptions = {}): Worker {
  // An invalid schedule fails here, before anything connects.
  for (const [name, expr] of [["STUCK_CHECK_CRON", config.STUCK_CHECK_CRON], ["AUDIT_SEAL_CRON", config.AUDIT_SEAL_CRON]] as const) {
    if (!cron.validate(expr)) throw new Error(`${name} is not a valid cron expression: ${expr}`);
  }
  const id = config.WORKER_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const wlog = log.child({ workerId: id });
  const metrics = createWorkerMetrics(opts.metricsRegistry ?? createMetricsRegistry(), wlog);
  const db = createDb(databaseUrl, Math.max(4, Math.min(config.DB_POOL_SIZE, config.WORKER_CONCURRENCY + 2)));
  const breaker = new CircuitBreaker(config.CIRCUIT_FAILURE_THRESHOLD, config.CIRCUIT_OPEN_SECONDS);
  const registry = new RegistryClient({
    registry: config.UPSTREAM_REGISTRY,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    cacheSeconds: config.PACKUMENT_CACHE_SECONDS,
    breaker,
  });
  const store = new ContentStore(config.STORAGE_DIR);
  const services = { config, db, registry, store, licencePolicy: cachedLicencePolicy(db, config.LICENCE_UNKNOWN_VERDICT) };
  const stuckSeconds = config.STUCK_AFTER_MINUTES * 60;
  const runner = new QueueRunner<WorkerContext>({
    sql: db,
    log: wlog,
    workerId: id,
    stages: opts.stages ?? pipelineStages(),
    concurrency: config.WORKER_CONCURRENCY,
    batchSize: config.WORKER_MAX_PACKAGES_PER_CYCLE,
    pollIntervalMs: config.WORKER_SLEEP_INTERVAL * 1000,
    heartbeatMs: Math.max(200, Math.min(30_000, (stuckSeconds * 1000) / 4)),
    maxAttempts: config.MAX_ATTEMPTS,
    retryBaseSeconds: config.RETRY_BASE_SECONDS,
    retryMaxSeconds: config.RETRY_MAX_SECONDS,
    // Delegate to the base's `log` and `signal` instead of spreading it: a spread would call their
    // getters and make a pino child and an AbortController for every row, which the runner makes
    // only on first use.
    context: (_row, base) => ({
      ...services,
      get log() {
        return base.log;
      },
      get signal() {
        return base.signal;
      },
    }),
    events: composeEvents(metrics.events, events),
  });
  metrics.bind({ inFlight: () => runner.inFlight, lastPoll: () => runner.lastPoll, circuitState: () => breaker.state });
  // One dedicated LISTEN connection; every (re)connect also polls, since notifications sent while it
  // was down are lost.
  const listener = new PgListener({
    url: databaseUrl,
    channel: WORK_CHANNEL,
    onNotify: () => runner.wake(),
    onConnect: () => runner.wake(),
    log: wlog,
  });
  let task: ScheduledTask | null = null;
  let sealTask: ScheduledTask | null = null;
  let rescuing: Promise<number> | null = null;
  let sealing: Promise<number> | null = null;
  let liveness: NodeJS.Timeout | null = null;

  const touch = async () => {
    try {
      await touchWorker(db, {
        id,
        hostname: hostname(),
        pid: process.pid,
        info: { inFlight: runner.inFlight, concurrency: config.WORKER_CONCURRENCY, circuit: breaker.snapshot() },
      });
    } catch (err) {
      wlog.debug({ err }, "worker liveness update failed");
    }
  };

  const rescue = async (): Promise<number> => {
    try {
      const { count, groups } = await rescueStuck(db, { stuckAfterSeconds: stuckSeconds, maxAttempts: config.MAX_ATTEMPTS }, wlog);
      metrics.rescued(groups);
      if (count > 0) {
        wlog.warn({ count }, "rescuer reset stuck packages");
        runner.wake();
      }
      return count;
    } catch (err) {
      wlog.warn({ err }, "rescuer run failed");
      return 0;
    }
  };

  const seal = (): Promise<number> => {
    sealing ??= sealEvents(db, { batchSize: SEAL_BATCH }, wlog)
      .then((r) => r.sealed)
      .catch((err: unknown) => {
        wlog.warn({ err }, "audit sealer run failed");
        return 0;
      })
      .finally(() => {
        sealing = null;
      });
    return sealing;
  };

  return {
    id,
    db,
    runner,
    registry,
    metrics,
    rescue,
    seal,
    async start() {
      await touch();
      await listener.start();
      runner.start();
      // Both catch their own errors; a run still going when its next time comes is skipped.
      task = cron.schedule(config.STUCK_CHECK_CRON, () => void (rescuing ??= rescue().finally(() => (rescuing = null))), {
        name: "stuck-rescuer",
        noOverlap: true,
      });
      sealTask = cron.schedule(config.AUDIT_SEAL_CRON, () => void seal(), { name: "audit-sealer", noOverlap: true });
      liveness = setInterval(() => void touch(), 10_000);
      liveness.unref();
      wlog.info(
        { concurrency: config.WORKER_CONCURRENCY, batch: config.WORKER_MAX_PACKAGES_PER_CYCLE, upstream: config.UPSTREAM_REGISTRY },
        "worker started",
      );
    },
    async stop() {
      wlog.info("worker stopping: no new claims; finishing in-flight steps");
      // No new scheduled runs; one in progress finishes (awaited below, before the pool closes).
      await Promise.all([task?.stop(), sealTask?.stop()]);
      if (liveness) clearInterval(liveness);
      await runner.stop(config.WORKER_GRACE_SECONDS * 1000);
      await listener.close();
      await rescuing;
      await sealing;
      await db.$disconnect();
      wlog.info("worker stopped");
    },
  };
}
