/**
 * One benchmark worker process (spawned by drain.ts and memory.ts with an IPC channel). It connects,
 * says `ready`, starts on `go`, reports progress (rows done, time of the last completion) at most
 * every 25 ms, samples its RSS, and on `stop` shuts down cleanly and reports its samples.
 *
 * argv[2] is a JSON DrainWorkerOptions. Modes:
 *   ours      the project's QueueRunner (src/queue/runner.ts) with no-op steps on a bench stage table
 *   raw       a minimal FOR UPDATE SKIP LOCKED loop: `loops` concurrent loops, each claiming `batch`
 *             rows and completing them with one UPDATE … WHERE id = ANY(ids)
 *   graphile  graphile-worker's run() with a no-op task, `concurrency` jobs at once, local queue `batch`
 *   worker    the real worker (createWorker, as worker/main.ts runs it) with no-op steps: drain-real-worker.ts
 */
import type { Runner as GraphileRunner } from "graphile-worker";
import pg from "pg";
import type { RunnerStage } from "../../src/queue/runner.ts";

export interface DrainWorkerOptions {
  mode: "ours" | "worker" | "raw" | "graphile";
  url: string;
  /** Rows per claim (ours: WORKER_MAX_PACKAGES_PER_CYCLE; graphile: local queue size, 1 = off). */
  batch: number;
  /** ours: WORKER_CONCURRENCY; graphile: concurrency; raw: number of claim loops. */
  concurrency: number;
  /** ours: 1 = licence stage only (one transition per row), 3 = the three pipeline stages. */
  stages?: 1 | 3;
  /** ours: maxClaimsInFlight (default: the runner's own). */
  claims?: number;

  rssEveryMs?: number;
}

export type ToParent =
  | { type: "ready"; pid: number }
  | { type: "progress"; done: number; lastAt: number }
  | { type: "stopped"; done: number; lastAt: number; cpuMs: number; rss: { t: number; rss: number; done: number }[] }
  | { type: "error"; message: string };

export type ToChild = { type: "go" } | { type: "stop" };

const opts = JSON.parse(process.argv[2] ?? "{}") as DrainWorkerOptions;
const send = (m: ToParent) => process.send?.(m);
const now = () => performance.timeOrigin + performance.now();

let done = 0;
let lastAt = 0;
let sentDone = 0;
const rss: { t: number; rss: number; done: number }[] = [];

function completed(n: number): void {
  if (n <= 0) return;
  done += n;
  lastAt = now();
}

interface Contender {
  start(): Promise<void>;
  stop(): Promise<void>;
}

// Each mode loads only what it runs, so that a process's RSS is its own contender's.
async function ours(): Promise<Contender> {
  const { createDb } = await import("../../src/db/client.ts");
  const { createLogger } = await import("../../src/logger.ts");
  const { QueueRunner } = await import("../../src/queue/runner.ts");
  const { STAGES } = await import("../../src/queue/states.ts");
  const log = createLogger("bench-worker", "silent");
  const poolSize = Math.max(4, Math.min(10, opts.concurrency + 2));
  const db = createDb(opts.url, poolSize);
  await db.$queryRaw`SELECT 1`;

  const noop = async () => ({ kind: "advance" as const });
  const stageStates = opts.stages === 3 ? [...STAGES].reverse() : [STAGES[0]!];
  const stages: RunnerStage[] = stageStates.map((states) => ({ states, step: noop }));
  const finalStatus = opts.stages === 3 ? "pending_approval" : "licence_checked";
  const runner = new QueueRunner({
    sql: db,
    log,
    workerId: `bench-${process.pid}`,
    stages,
    concurrency: opts.concurrency,
    batchSize: opts.batch,
    ...(opts.claims ? { maxClaimsInFlight: opts.claims } : {}),
    pollIntervalMs: 1000,
    heartbeatMs: 30_000,
    stuckSeconds: 30 * 60,
    maxAttempts: 5,
    retryBaseSeconds: 2,
    retryMaxSeconds: 600,
    context: (_row, base) => base,
    events: { applied: (cs) => completed(cs.filter((c) => c.to === finalStatus).length) },
  });
  return {
    async start() {
      runner.start();
    },
    async stop() {
      await runner.stop(5_000);
      await db.$disconnect();
    },
  };
}

async function raw(): Promise<Contender> {
  const clients = await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      const c = new pg.Client({ connectionString: opts.url });
      await c.connect();
      return c;
    }),
  );
  let stopping = false;
  const loops: Promise<void>[] = [];
  const loop = async (c: pg.Client) => {
    while (!stopping) {
      const claimed = await c.query<{ id: number }>(
        `UPDATE package p SET status = 'checking_licence', lease_token = gen_random_uuid(), heartbeat_at = now()
         FROM (SELECT id FROM package WHERE status = 'requested' AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) c
         WHERE p.id = c.id RETURNING p.id`,
        [opts.batch],
      );
      if (claimed.rows.length === 0) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const ids = claimed.rows.map((r) => r.id);
      // the no-op "step" of each row
      await Promise.all(ids.map(async () => undefined));
      const res = await c.query(
        `UPDATE package SET status = 'licence_checked', lease_token = NULL, heartbeat_at = NULL, updated_at = now()
         WHERE id = ANY($1::int[])`,
        [ids],
      );
      completed(res.rowCount ?? 0);
    }
  };
  return {
    async start() {
      for (const c of clients) loops.push(loop(c));
    },
    async stop() {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.end()));
    },
  };
}

async function graphile(): Promise<Contender> {
  const { run: graphileRun, Logger: GraphileLogger } = await import("graphile-worker");
  const pool = new pg.Pool({ connectionString: opts.url, max: opts.concurrency + 2 });
  pool.on("error", (err) => fail(err));
  pool.on("connect", (client) => client.on("error", (err) => fail(err)));
  await pool.query("SELECT 1");
  let runner: GraphileRunner | null = null;
  return {
    async start() {
      runner = await graphileRun({
        pgPool: pool,
        concurrency: opts.concurrency,
        noHandleSignals: true,
        pollInterval: 1000,
        logger: new GraphileLogger(() => () => undefined),
        taskList: {
          noop: async () => {
            completed(1);
          },
        },
        preset: {
          worker: {
            ...(opts.batch > 1 ? { localQueue: { size: opts.batch } } : {}),
            completeJobBatchDelay: opts.batch > 1 ? 0 : -1,
          },
        },
      });
    },
    async stop() {
      await runner?.stop();
      await pool.end();
    },
  };
}

async function main(): Promise<void> {
  const contender =
    opts.mode === "ours"
      ? await ours()
      : opts.mode === "worker"
        ? await (await import("./drain-real-worker.ts")).realWorker(opts, completed)
        : opts.mode === "raw"
          ? await raw()
          : await graphile();
  const sampleEvery = opts.rssEveryMs ?? 100;
  let cpu0 = process.cpuUsage();
  const t0 = now();
  const sampler = setInterval(() => rss.push({ t: now() - t0, rss: process.memoryUsage.rss(), done }), sampleEvery);
  const progress = setInterval(() => {
    if (done !== sentDone) {
      sentDone = done;
      send({ type: "progress", done, lastAt });
    }
  }, 25);
  process.on("message", (m: ToChild) => {
    if (m.type === "go") {
      cpu0 = process.cpuUsage();
      contender.start().catch((err: unknown) => fail(err));
    } else if (m.type === "stop") {
      void (async () => {
        clearInterval(progress);
        clearInterval(sampler);
        const cpu = process.cpuUsage(cpu0);
        await contender.stop();
        process.send?.({ type: "stopped", done, lastAt, cpuMs: (cpu.user + cpu.system) / 1000, rss } satisfies ToParent, () => process.exit(0));
      })().catch((err: unknown) => fail(err));
    }
  });
  // Bounded: a worker never outlives its parent, nor runs longer than 15 minutes.
  process.on("disconnect", () => process.exit(0));
  setTimeout(() => fail(new Error("drain worker ran for 15 minutes; giving up")), 15 * 60_000).unref();
  send({ type: "ready", pid: process.pid });
}

function fail(err: unknown): void {
  send({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
}

main().catch(fail);
