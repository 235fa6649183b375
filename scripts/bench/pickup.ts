/**
 * Benchmark 2 — pickup latency. An idle worker; 200 single-row enqueues spaced ~20 ms, each committed
 * with a NOTIFY on spm_work (what an upload does). Latency = from the enqueue's COMMIT returning to
 * the step function being called (same process, performance.now()).
 *   ours LISTEN   QueueRunner woken by src/db/pg-listener.ts PgListener on spm_work (as worker/worker.ts wires it)
 *   ours poll     the same runner without LISTEN, polling every 1 s
 *   raw           a LISTEN connection that runs a SKIP LOCKED claim on each notification
 */
import pg from "pg";
import { createDb } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { PgListener } from "../../src/db/pg-listener.ts";
import { QueueRunner } from "../../src/queue/runner.ts";
import { WORK_CHANNEL } from "../../src/queue/sql.ts";
import { STAGES } from "../../src/queue/states.ts";
import { log, pgClient, percentile, resetTables, result, scaled, settle, sleep, type BenchResult } from "./lib.ts";

interface Contender {
  start(onStep: (name: string) => void): Promise<void>;
  stop(): Promise<void>;
}

function ours(url: string, withListen: boolean): Contender {
  const quiet = createLogger("bench", "silent");
  const db = createDb(url, 12);
  let runner: QueueRunner | null = null;
  let listener: PgListener | null = null;
  return {
    async start(onStep) {
      await db.$queryRaw`SELECT 1`;
      runner = new QueueRunner({
        sql: db,
        log: quiet,
        workerId: `bench-pickup-${withListen ? "listen" : "poll"}`,
        stages: [
          {
            states: STAGES[0]!,
            step: async (row) => {
              onStep(row.name);
              return { kind: "advance" };
            },
          },
        ],
        concurrency: 10,
        batchSize: 10,
        pollIntervalMs: withListen ? 10_000 : 1_000,
        heartbeatMs: 30_000,
        stuckSeconds: 30 * 60,
        maxAttempts: 5,
        retryBaseSeconds: 2,
        retryMaxSeconds: 600,
        context: (_row, base) => base,
      });
      const r = runner;
      if (withListen) {
        listener = new PgListener({ url, channel: WORK_CHANNEL, onNotify: () => r.wake(), onConnect: () => r.wake(), log: quiet });
        await listener.start();
      }
      runner.start();
    },
    async stop() {
      await runner?.stop(5_000);
      await listener?.close();
      await db.$disconnect();
    },
  };
}

function raw(url: string): Contender {
  let listen: pg.Client | null = null;
  let work: pg.Client | null = null;
  let done: pg.Client | null = null;
  let running = false;
  let pending = false;
  let stopped = false;
  return {
    async start(onStep) {
      [listen, work, done] = await Promise.all([pgClient(url), pgClient(url), pgClient(url)]);
      const w = work;
      const d = done;
      const drain = async () => {
        if (running) {
          pending = true;
          return;
        }
        running = true;
        try {
          let full = true;
          while (!stopped && (pending || full)) {
            pending = false;
            const { rows } = await w.query<{ id: number; name: string }>(
              `UPDATE package p SET status = 'checking_licence', lease_token = gen_random_uuid(), heartbeat_at = now()
               FROM (SELECT id FROM package WHERE status = 'requested' AND next_attempt_at <= now()
                     ORDER BY next_attempt_at, id LIMIT 10 FOR UPDATE SKIP LOCKED) c
               WHERE p.id = c.id RETURNING p.id, p.name`,
            );
            for (const r of rows) onStep(r.name);
            full = rows.length === 10;
            if (rows.length > 0) {
              void d.query(`UPDATE package SET status = 'licence_checked', lease_token = NULL WHERE id = ANY($1::int[])`, [rows.map((r) => r.id)]);
            }
          }
        } finally {
          running = false;
        }
      };
      listen.on("notification", () => void drain());
      await listen.query(`LISTEN ${WORK_CHANNEL}`);
    },
    async stop() {
      stopped = true;
      while (running) await sleep(5);
      await Promise.all([listen?.end(), work?.end(), done?.end()]);
    },
  };
}

async function measure(url: string, contender: Contender, label: string, n: number, spacingMs: number, waitMs: number): Promise<number[]> {
  const c = await pgClient(url);
  await resetTables(c);
  await settle(c);
  const committed = new Map<string, number>();
  const started = new Map<string, number>();
  await contender.start((name) => {
    if (!started.has(name)) started.set(name, performance.now());
  });
  await sleep(300); // let the worker settle into idle
  try {
    for (let i = 0; i < n; i++) {
      const name = `pickup-${label}-${i}`;
      await c.query("BEGIN");
      await c.query("INSERT INTO package (name, version) VALUES ($1, '1.0.0')", [name]);
      await c.query("SELECT pg_notify($1, '')", [WORK_CHANNEL]);
      await c.query("COMMIT");
      committed.set(name, performance.now());
      await sleep(spacingMs);
    }
    const deadline = Date.now() + waitMs;
    while (started.size < n && Date.now() < deadline) await sleep(10);
    if (started.size < n) throw new Error(`pickup ${label}: only ${started.size}/${n} rows picked up`);
  } finally {
    await contender.stop();
    await c.end();
  }
  return [...committed].map(([name, t]) => started.get(name)! - t);
}

export async function benchPickup(url: string): Promise<BenchResult[]> {
  const n = scaled(200, 50);
  const listenLat = await measure(url, ours(url, true), "listen", n, 20, 15_000);
  const rawLat = await measure(url, raw(url), "raw", n, 20, 15_000);
  const pollLat = await measure(url, ours(url, false), "poll", n, 20, 15_000);
  const p = (xs: number[], q: number) => percentile(xs, q);
  log(`  pickup LISTEN p50 ${p(listenLat, 50).toFixed(2)} p99 ${p(listenLat, 99).toFixed(2)} max ${Math.max(...listenLat).toFixed(2)} ms`);
  log(`  pickup raw    p50 ${p(rawLat, 50).toFixed(2)} p99 ${p(rawLat, 99).toFixed(2)} max ${Math.max(...rawLat).toFixed(2)} ms`);
  log(`  pickup poll   p50 ${p(pollLat, 50).toFixed(2)} p99 ${p(pollLat, 99).toFixed(2)} ms`);
  return [
    result(`pickup p50, LISTEN/NOTIFY, ${n} enqueues: ours vs raw NOTIFY loop`, p(listenLat, 50), "ms", { baseline: p(rawLat, 50) }),
    result(`pickup p99, LISTEN/NOTIFY, ${n} enqueues: ours vs raw NOTIFY loop`, p(listenLat, 99), "ms", {
      baseline: p(rawLat, 99),
      goal: "≤ 10 ms",
      met: p(listenLat, 99) <= 10,
    }),
    result(`pickup p50, poll only (every 1 s, no LISTEN): ours`, p(pollLat, 50), "ms"),
    result(`pickup p99, poll only (every 1 s, no LISTEN): ours`, p(pollLat, 99), "ms"),
  ];
}
