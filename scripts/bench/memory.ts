/**
 * Benchmark 6 — worker memory. 100,000 rows (× BENCH_SCALE) queued; one worker process drains them
 * while it samples its RSS every 100 ms. The process is the real worker as production runs it
 * (drain-worker.ts mode `worker`: createWorker with its metrics, LISTEN connection, expired-lease
 * checks; no-op steps; WORKER_CONCURRENCY 100, batch 10), bundled by scripts/build-worker.ts
 * and started with WORKER_NODE_FLAGS (drain-run.ts). Reported: the peak RSS, and the slope of RSS
 * against rows processed over the steady part of the run (after the first 20 % of rows), in MiB per
 * 100k rows.
 * Baseline: the raw SKIP LOCKED loop process (10 loops × 10 rows) on the same rows.
 */
import { runDrain } from "./drain-run.ts";
import { log, result, scaled, slope, type BenchResult } from "./lib.ts";

const MiB = 1024 * 1024;

function analyse(samples: { t: number; rss: number; done: number }[], rows: number) {
  const peak = Math.max(...samples.map((s) => s.rss)) / MiB;
  const steady = samples.filter((s) => s.done >= rows * 0.2 && s.done < rows);
  const perRow = slope(
    steady.map((s) => s.done),
    steady.map((s) => s.rss / MiB),
  );
  return { peak, mibPer100k: perRow * 100_000, samples: samples.length, steady: steady.length };
}

export async function benchMemory(url: string): Promise<BenchResult[]> {
  const rows = scaled(100_000, 5_000);
  const ours = await runDrain(url, { mode: "worker", batch: 10, concurrency: 100, procs: 1, rows, rssEveryMs: 100 });
  const raw = await runDrain(url, { mode: "raw", batch: 10, concurrency: 10, procs: 1, rows, rssEveryMs: 100 });
  const o = analyse(ours.rss[0]!, rows);
  const r = analyse(raw.rss[0]!, rows);
  log(
    `  memory: ours peak ${o.peak.toFixed(1)} MiB, slope ${o.mibPer100k.toFixed(2)} MiB/100k rows (${o.steady} samples, ${Math.round(ours.jobsPerSec)} jobs/s); ` +
      `raw peak ${r.peak.toFixed(1)} MiB, slope ${r.mibPer100k.toFixed(2)} MiB/100k rows`,
  );
  const label = `${rows.toLocaleString("en-US")} rows queued`;
  return [
    result(`worker RSS peak, draining ${label}: ours vs raw loop process`, o.peak, "MiB", { baseline: r.peak, goal: "≤ 100 MiB", met: o.peak <= 100 }),
    result(`worker RSS slope, draining ${label}: ours vs raw loop process`, o.mibPer100k, "MiB/100k rows", {
      baseline: r.mibPer100k,
      goal: "flat: ≤ 10 MiB per 100k rows",
      met: o.mibPer100k <= 10,
    }),
  ];
}
