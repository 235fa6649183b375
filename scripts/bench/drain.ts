/**
 * Benchmark 1 — queue drain. 20,000 rows (× BENCH_SCALE) through the queue with no-op steps, in 1 and
 * 2 worker processes, at claim batches of 10 and 100:
 *   ours      QueueRunner (one bench stage: requested → checking_licence → licence_checked, every
 *             transition guarded and recorded as an event), batch B, concurrency 10×B
 *   raw       10 loops per process of FOR UPDATE SKIP LOCKED claims of B rows, one
 *             UPDATE … WHERE id = ANY(ids) per batch (no events, no lease check): the floor
 *   graphile  graphile-worker run(), concurrency 10, local queue B, batched completions
 * Same rows in flight per process for ours and raw (10 × B). Contenders are interleaved, and the
 * median of BENCH_REPS (default 5) runs is reported.
 */
import { median, result, scaled, log, type BenchResult } from "./lib.ts";
import { prepareGraphile, runDrain, type DrainSpec } from "./drain-run.ts";

export async function benchDrain(url: string): Promise<BenchResult[]> {
  const rows = scaled(20_000, 500);
  const reps = Number(process.env.BENCH_REPS ?? 5);
  await prepareGraphile(url);
  const loops = 10;
  const configs: { key: string; spec: DrainSpec }[] = [];
  for (const batch of [10, 100]) {
    for (const procs of [1, 2]) {
      configs.push({ key: `raw b${batch} p${procs}`, spec: { mode: "raw", batch, concurrency: loops, procs, rows } });
      configs.push({ key: `ours b${batch} p${procs}`, spec: { mode: "ours", batch, concurrency: loops * batch, procs, rows } });
      configs.push({ key: `graphile b${batch} p${procs}`, spec: { mode: "graphile", batch, concurrency: loops, procs, rows } });
    }
  }
  // WORKER_CONCURRENCY=10 with WORKER_MAX_PACKAGES_PER_CYCLE=10, as a worker would be configured.
  configs.push({ key: "ours-c10 b10 p1", spec: { mode: "ours", batch: 10, concurrency: 10, procs: 1, rows } });
  const rates = new Map<string, number[]>();
  for (let rep = 0; rep < reps; rep++) {
    for (const { key, spec } of configs) {
      const r = await runDrain(url, spec);
      (rates.get(key) ?? rates.set(key, []).get(key)!).push(r.jobsPerSec);
      log(
        `  drain ${key} run ${rep + 1}/${reps}: ${Math.round(r.jobsPerSec)} jobs/s (${Math.round(r.ms)} ms for ${rows} rows; ` +
          `worker CPU ${Math.round((r.cpuMs / rows) * 1000)} µs/row)`,
      );
    }
  }
  const rate = (key: string) => median(rates.get(key)!);
  const out: BenchResult[] = [];
  for (const batch of [10, 100]) {
    for (const procs of [1, 2]) {
      const ours = rate(`ours b${batch} p${procs}`);
      const raw = rate(`raw b${batch} p${procs}`);
      const graphile = rate(`graphile b${batch} p${procs}`);
      const label = `drain ${rows} rows, batch ${batch}, ${procs} proc${procs > 1 ? "s" : ""}`;
      out.push(result(`${label}: ours vs raw SKIP LOCKED`, ours, "jobs/s", { baseline: raw, goal: "≥ 0.8× raw", met: ours >= 0.8 * raw }));
      out.push(result(`${label}: ours vs graphile-worker`, ours, "jobs/s", { baseline: graphile, goal: "> 1× graphile-worker", met: ours > graphile }));
    }
  }
  const c10 = rate("ours-c10 b10 p1");
  out.push(
    result(`drain ${rows} rows, batch 10, 1 proc: ours at WORKER_CONCURRENCY=10 vs raw`, c10, "jobs/s", {
      baseline: rate("raw b10 p1"),
      goal: null,
      met: null,
    }),
  );
  return out;
}
