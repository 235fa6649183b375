/**
 * Drive drain-worker.ts processes: seed the queue, start the processes, say `go` to all at once,
 * follow their progress until every row is done (checked in the database), stop them, and report
 * the drain rate and each process's RSS samples.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { makeWorkerUtils } from "graphile-worker";
import pg from "pg";
import type { DrainWorkerOptions, ToChild, ToParent } from "./drain-worker.ts";
import { nowMs, ROOT, resetTables, seedPackages, settle, sleep } from "./lib.ts";
import { bundle, WORKER_NODE_FLAGS } from "../build-worker.ts";

export interface DrainSpec {
  mode: DrainWorkerOptions["mode"];
  batch: number;
  concurrency: number;
  procs: number;
  rows: number;
  stages?: 1 | 3;
  claims?: number;
  rssEveryMs?: number;
}

export interface DrainOutcome {
  ms: number;
  jobsPerSec: number;
  /** CPU time of the worker processes (all of them) from go to stop. */
  cpuMs: number;
  rss: { t: number; rss: number; done: number }[][];
}

interface Proc {
  child: ChildProcess;
  done: number;
  lastAt: number;
  stopped: Promise<Extract<ToParent, { type: "stopped" }>>;
  ready: Promise<void>;
  error: Promise<never>;
}

/**
 * Our processes (modes `ours` and `worker`) run as production runs the worker: drain-worker.ts built by
 * scripts/build-worker.ts's bundler (plain JavaScript, no tsx loader), under WORKER_NODE_FLAGS.
 * BENCH_WORKER_RUNTIME=tsx runs them from source under tsx instead (as before), e.g. to compare. The
 * baselines (raw, graphile) run from source under tsx.
 */
let built: Promise<string> | null = null;
async function benchWorkerCommand(mode: DrainWorkerOptions["mode"]): Promise<string[]> {
  const source = ["--import", "tsx", join(ROOT, "scripts/bench/drain-worker.ts")];
  if ((mode !== "ours" && mode !== "worker") || process.env.BENCH_WORKER_RUNTIME === "tsx") return source;
  // graphile-worker (a baseline, run from source) stays out of the bundle: our modes never load it
  built ??= bundle("scripts/bench/drain-worker.ts", "dist/bench/drain-worker.mjs", { external: ["graphile-worker"] });
  return [...WORKER_NODE_FLAGS, await built];
}

function startProc(opts: DrainWorkerOptions, command: string[]): Proc {
  // BENCH_WORKER_NODE_ARGS: extra node flags for the worker processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
  const extra = (process.env.BENCH_WORKER_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...extra, ...command, JSON.stringify(opts)], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "silent", NODE_ENV: "production" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const proc = { child, done: 0, lastAt: 0 } as Proc;
  let onReady: () => void = () => undefined;
  let onStopped: (m: Extract<ToParent, { type: "stopped" }>) => void = () => undefined;
  let onError: (e: Error) => void = () => undefined;
  proc.ready = new Promise((r) => (onReady = r));
  proc.stopped = new Promise((r) => (onStopped = r));
  proc.error = new Promise((_r, rej) => (onError = rej));
  proc.error.catch(() => undefined);
  child.on("message", (m: ToParent) => {
    if (m.type === "ready") onReady();
    else if (m.type === "progress") {
      proc.done = m.done;
      proc.lastAt = m.lastAt;
    } else if (m.type === "stopped") {
      proc.done = m.done;
      proc.lastAt = m.lastAt;
      onStopped(m);
    } else if (m.type === "error") onError(new Error(`drain worker failed: ${m.message}`));
  });
  child.on("exit", (code) => {
    if (code !== 0) onError(new Error(`drain worker exited with ${code}`));
  });
  return proc;
}

async function seed(c: pg.Client, url: string, spec: DrainSpec): Promise<void> {
  await resetTables(c);
  if (spec.mode === "graphile") {
    await c.query("DELETE FROM graphile_worker._private_jobs");
    const utils = await makeWorkerUtils({ connectionString: url });
    try {
      for (let i = 0; i < spec.rows; i += 5_000) {
        const n = Math.min(5_000, spec.rows - i);
        await utils.addJobs(Array.from({ length: n }, (_, k) => ({ identifier: "noop", payload: { name: `bench-${i + k + 1}` } })));
      }
    } finally {
      await utils.release();
    }
    await c.query("VACUUM ANALYZE graphile_worker._private_jobs");
    await c.query("CHECKPOINT");
  } else {
    await seedPackages(c, spec.rows);
    await settle(c);
  }
}

async function doneInDb(c: pg.Client, spec: DrainSpec): Promise<boolean> {
  if (spec.mode === "graphile") {
    const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    return rows[0]!.n === 0;
  }
  const target = spec.stages === 3 ? "pending_approval" : "licence_checked";
  const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM package WHERE status = $1::package_status", [target]);
  return rows[0]!.n >= spec.rows;
}

/** Prepare graphile-worker's schema once (its own migrations). */
export async function prepareGraphile(url: string): Promise<void> {
  const { runMigrations } = await import("graphile-worker");
  await runMigrations({ connectionString: url, logger: new (await import("graphile-worker")).Logger(() => () => undefined) });
}

export async function runDrain(url: string, spec: DrainSpec, timeoutMs = 10 * 60_000): Promise<DrainOutcome> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const procs: Proc[] = [];
  try {
    await seed(c, url, spec);
    const command = await benchWorkerCommand(spec.mode);
    for (let i = 0; i < spec.procs; i++) {
      procs.push(
        startProc(
          { mode: spec.mode, url, batch: spec.batch, concurrency: spec.concurrency, stages: spec.stages, claims: spec.claims, rssEveryMs: spec.rssEveryMs },
          command,
        ),
      );
    }
    await Promise.race([Promise.all(procs.map((p) => p.ready)), ...procs.map((p) => p.error)]);
    const t0 = nowMs();
    for (const p of procs) p.child.send({ type: "go" } satisfies ToChild);
    const deadline = Date.now() + timeoutMs;
    const failure = Promise.race(procs.map((p) => p.error));
    // Follow the processes' own counts (no load on the database), then confirm in the database.
    const follow = async (): Promise<number> => {
      while (procs.reduce((n, p) => n + p.done, 0) < spec.rows) {
        if (Date.now() > deadline) throw new Error(`drain ${JSON.stringify(spec)} did not finish in ${timeoutMs} ms`);
        await sleep(10);
      }
      let end = Math.max(...procs.map((p) => p.lastAt));
      let first = true;
      while (!(await doneInDb(c, spec))) {
        if (Date.now() > deadline) throw new Error(`drain ${JSON.stringify(spec)}: rows not done in the database`);
        first = false;
        await sleep(2);
      }
      if (!first) end = nowMs();
      return end;
    };
    const end = await Promise.race([follow(), failure]);
    for (const p of procs) p.child.send({ type: "stop" } satisfies ToChild);
    const stopped = await Promise.race([Promise.all(procs.map((p) => p.stopped)), failure]);
    const ms = end - t0;
    return { ms, jobsPerSec: (spec.rows / ms) * 1000, cpuMs: stopped.reduce((n, s) => n + s.cpuMs, 0), rss: stopped.map((s) => s.rss) };
  } finally {
    // give each process a moment to exit by itself, then make sure it is gone
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
            const t = setTimeout(() => {
              p.child.kill("SIGKILL");
              resolve();
            }, 5_000);
            p.child.once("exit", () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    await c.end();
  }
}
