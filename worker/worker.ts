/**
 * A worker process's parts: the queue runner over the pipeline's stages, the LISTEN connection, the
 * worker's liveness row, and its Prometheus metrics (its own registry: several workers may share a
 * process). The runner also takes over other workers' expired leases (stuck rows). Periodic
 * maintenance (the audit sealer) runs in the API process (src/maintenance/scheduler.ts), not here.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Config } from "../src/config.ts";
import { createDb, type Db } from "../src/db/client.ts";
import type { Logger } from "../src/logger.ts";
import { createMetricsRegistry, type Registry } from "../src/metrics/registry.ts";
import { composeEvents, createWorkerMetrics, type WorkerMetrics } from "../src/metrics/worker.ts";
import { pipelineStages, type WorkerContext } from "../src/pipeline/stages.ts";
import { cachedLicencePolicy } from "../src/policy/licence-policy-store.ts";
import { PgListener } from "../src/db/pg-listener.ts";
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
}

export interface WorkerOptions {
  /** The registry the worker's metrics go to (default: a fresh one with the default process metrics). */
  metricsRegistry?: Registry;
  /** The stages and steps to run (default: the pipeline's, `pipelineStages()`); the memory benchmark runs no-op steps. */
  stages?: RunnerStage<WorkerContext>[];
}

export function createWorker(config: Config, databaseUrl: string, log: Logger, events?: RunnerEvents, opts: WorkerOptions = {}): Worker {
  const id = config.WORKER_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const wlog = log.child({ workerId: id });
  const metrics = createWorkerMetrics(opts.metricsRegistry ?? createMetricsRegistry(), wlog);
  const db = createDb(databaseUrl, Math.max(4, Math.min(config.DB_POOL_SIZE, config.WORKER_CONCURRENCY + 2)));
  const breaker = new CircuitBreaker(config.CIRCUIT_FAILURE_THRESHOLD, config.CIRCUIT_OPEN_SECONDS);
  const registry = new RegistryClient({
    registry: config.UPSTREAM_REGISTRY,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    cacheSeconds: config.PACKUMENT_CACHE_SECONDS,
    cacheBytes: Math.round(config.PACKUMENT_CACHE_MB * 2 ** 20),
    maxPackumentBytes: Math.round(config.PACKUMENT_MAX_MB * 2 ** 20),
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
    stuckSeconds,
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

  return {
    id,
    db,
    runner,
    registry,
    metrics,
    async start() {
      await touch();
      await listener.start();
      runner.start();
      liveness = setInterval(() => void touch(), 10_000);
      liveness.unref();
      wlog.info(
        { concurrency: config.WORKER_CONCURRENCY, batch: config.WORKER_MAX_PACKAGES_PER_CYCLE, upstream: config.UPSTREAM_REGISTRY },
        "worker started",
      );
    },
    async stop() {
      wlog.info("worker stopping: no new claims; finishing in-flight steps");
      if (liveness) clearInterval(liveness);
      await runner.stop(config.WORKER_GRACE_SECONDS * 1000);
      await listener.close();
      await db.$disconnect();
      wlog.info("worker stopped");
    },
  };
}
