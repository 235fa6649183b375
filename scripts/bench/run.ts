/**
 * `npm run bench`: runs every benchmark of scripts/bench/ against one fresh PostgreSQL (embedded in a
 * temporary directory, default settings with fsync on; or a throwaway database on DATABASE_URL's
 * server), prints a table of figures, baselines and ratios, and writes bench-results.json:
 *   [{ name, value, unit, baseline, ratio, goal, met }]      ratio = value / baseline
 *
 * Environment:
 *   BENCH_SCALE   multiplies row counts and durations (default 1; 0.1 for a quick run)
 *   BENCH_ONLY    comma-separated subset: drain,pickup,upload,status,stuck,memory,registry,real
 *   BENCH_REPS    repetitions of each drain configuration (default 5; the median is reported)
 *   BENCH_REAL=1  also run the real-work benchmark (needs the npm registry; see real.ts)
 *   DATABASE_URL  use this server instead of an embedded one (a new database is created and dropped)
 *
 * Loopback only; every loop is bounded, and the whole run stops itself after BENCH_TIMEOUT_MIN
 * (default 120) minutes.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { benchDrain } from "./drain.ts";
import { fmt, benchScale, log, ROOT, startBenchDatabase, type BenchResult } from "./lib.ts";
import { benchMemory } from "./memory.ts";
import { benchPickup } from "./pickup.ts";
import { benchStatus } from "./status.ts";
import { benchStuck } from "./stuck.ts";
import { benchUpload } from "./upload.ts";

interface Bench {
  key: string;
  title: string;
  run: (url: string) => Promise<BenchResult[]>;
  skip?: () => string | null;
}

const BENCHES: Bench[] = [
  { key: "drain", title: "1. queue drain", run: benchDrain },
  { key: "pickup", title: "2. pickup latency", run: benchPickup },
  { key: "upload", title: "3. upload", run: benchUpload },
  { key: "status", title: "4. status endpoints", run: benchStatus },
  { key: "stuck", title: "5. stuck reset", run: benchStuck },
  { key: "memory", title: "6. worker memory", run: benchMemory },
  {
    key: "registry",
    title: "7. registry reads",
    run: async (url) => (await import("./registry.ts")).benchRegistry(url),
    skip: () => (existsSync(join(ROOT, "api/routes/registry.ts")) ? null : "api/routes/registry.ts does not exist"),
  },
  {
    key: "real",
    title: "8. real work (npm registry)",
    run: async (url) => (await import("./real.ts")).benchReal(url),
    skip: () => (process.env.BENCH_REAL === "1" ? null : "set BENCH_REAL=1 to run it (needs the npm registry)"),
  },
];

export function machine(): Record<string, string> {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  return {
    cpu: model,
    nproc: String(os.availableParallelism()),
    memory: `${gib(os.totalmem())} total, ${gib(os.freemem())} free`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    load: os.loadavg().map((l) => l.toFixed(2)).join(" "),
  };
}

function table(results: BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    `${fmt(r.value)} ${r.unit}`,
    r.baseline === null ? "—" : `${fmt(r.baseline)} ${r.unit}`,
    r.ratio === null ? "—" : `${r.ratio.toFixed(2)}×`,
    r.goal ?? "—",
    r.met === null ? "" : r.met ? "yes" : "NO",
  ]);
  const head = ["benchmark", "ours", "baseline", "ratio", "goal", "met"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`];
  for (const r of rows) lines.push(`| ${r.join(" | ")} |`);
  return lines.join("\n");
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(",").map((s) => s.trim())) : null;
  const limitMin = Number(process.env.BENCH_TIMEOUT_MIN ?? 120);
  const watchdog = setTimeout(() => {
    log(`benchmarks still running after ${limitMin} minutes: giving up`);
    process.exit(2);
  }, limitMin * 60_000);
  watchdog.unref();
  const m = machine();
  log(`machine: ${m.cpu}, ${m.nproc} CPUs, ${m.memory}, ${m.os}, node ${m.node}, load ${m.load}`);
  log(`BENCH_SCALE=${benchScale()}`);
  const db = await startBenchDatabase();
  const s = db.settings;
  log(
    `PostgreSQL ${s.server_version} (${db.embedded ? "embedded, temp dir" : "DATABASE_URL server"}): fsync=${s.fsync} ` +
      `synchronous_commit=${s.synchronous_commit} wal_sync_method=${s.wal_sync_method} full_page_writes=${s.full_page_writes} shared_buffers=${s.shared_buffers}`,
  );
  const results: BenchResult[] = [];
  const failures: string[] = [];
  try {
    for (const b of BENCHES) {
      if (only && !only.has(b.key)) continue;
      const why = b.skip?.();
      if (why) {
        log(`\n${b.title}: skipped (${why})`);
        continue;
      }
      log(`\n${b.title}`);
      const t0 = performance.now();
      try {
        const r = await b.run(db.url);
        results.push(...r);
        log(`${b.title}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      } catch (err) {
        failures.push(`${b.title}: ${err instanceof Error ? err.message : String(err)}`);
        log(`${b.title}: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    }
  } finally {
    await db.stop();
  }
  const file = join(ROOT, "bench-results.json");
  writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  const end = machine();
  process.stdout.write(
    `\nMachine: ${m.cpu}, ${m.nproc} CPUs, ${m.memory}; load average ${m.load} at start, ${end.load} at end\n` +
      `PostgreSQL ${s.server_version}, fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}; BENCH_SCALE=${benchScale()}\n\n` +
      `${table(results)}\n\nwritten: ${file}\n`,
  );
  if (failures.length > 0) {
    process.stdout.write(`\nfailed:\n  ${failures.join("\n  ")}\n`);
    process.exitCode = 1;
  }
  clearTimeout(watchdog);
}

main().catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
