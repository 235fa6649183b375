/**
 * Shared helpers of the benchmarks (scripts/bench/*.ts): the benchmark database (embedded PostgreSQL
 * in a temporary directory, or a throwaway database on the server DATABASE_URL names), result
 * records, percentiles and small timing utilities. Benchmarks are never run by the unit tests.
 *
 * fsync and synchronous_commit stay at PostgreSQL's defaults: the figures compare commits.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/db/embedded.ts";

export const ROOT = resolve(import.meta.dirname, "../..");

/** BENCH_SCALE (default 1): multiplies row counts and durations. */
export function benchScale(): number {
  const raw = process.env.BENCH_SCALE;
  const n = raw === undefined || raw === "" ? 1 : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`BENCH_SCALE must be a positive number, not ${raw}`);
  return n;
}

export function scaled(n: number, min = 1): number {
  return Math.max(min, Math.round(n * benchScale()));
}

/** One line of bench-results.json. `ratio` is value / baseline (null without a baseline). */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  goal: string | null;
  met: boolean | null;
}

export function result(
  name: string,
  value: number,
  unit: string,
  opts: { baseline?: number | null; goal?: string | null; met?: boolean | null } = {},
): BenchResult {
  const baseline = opts.baseline ?? null;
  const ratio = baseline === null || baseline === 0 ? null : round(value / baseline, 3);
  return { name, value: round(value, 3), unit, baseline: baseline === null ? null : round(baseline, 3), ratio, goal: opts.goal ?? null, met: opts.met ?? null };
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export const JWT_SECRET = "bench-secret-0123456789-0123456789-abcdef";

export interface BenchDatabase {
  /** The benchmark database (migrated). */
  url: string;
  /** The server (the `postgres` database), for admin statements. */
  serverUrl: string;
  embedded: boolean;
  /** PostgreSQL settings that matter for the figures. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Start the benchmark database: embedded PostgreSQL in a fresh temp dir (default settings, fsync on),
 * or a new database `spm_bench_<random>` on DATABASE_URL's server (dropped at the end; never the
 * database DATABASE_URL itself, since benchmarks truncate tables). Applies the migrations.
 */
export async function startBenchDatabase(): Promise<BenchDatabase> {
  let embedded: EmbeddedDatabase | undefined;
  let dir: string | undefined;
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    dir = mkdtempSync(join(tmpdir(), "spm-bench-pg-"));
    embedded = await startEmbeddedPostgres({ dir, postgresFlags: ["-c", "max_connections=200"] });
    serverUrl = embedded.url;
  }
  const name = `spm_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  const settings: Record<string, string> = {};
  const { rows } = await admin.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings WHERE name IN
       ('server_version', 'fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers', 'max_connections', 'commit_delay', 'full_page_writes')`,
  );
  for (const r of rows) settings[r.name] = r.unit ? `${r.setting} ${r.unit}` : r.setting;
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  execFileSync(process.execPath, ["--import", "tsx", join(ROOT, "scripts/migrate.ts"), "deploy"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url.toString() },
    stdio: ["ignore", "ignore", "inherit"],
  });
  return {
    url: url.toString(),
    serverUrl,
    embedded: embedded !== undefined,
    settings,
    async stop() {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined);
      await c.end();
      await embedded?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A plain node-postgres client on `url`, connected. */
export async function pgClient(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Empty every table the benchmarks write (package cascades to its events and request links). */
export async function resetTables(c: pg.Client): Promise<void> {
  await c.query(`TRUNCATE package, package_event, request_package, request, worker RESTART IDENTITY CASCADE`);
}

/**
 * Insert `n` rows named `${prefix}-<i>` in status `status` (one statement). Queued rows are ready now;
 * active rows get a lease and a heartbeat `heartbeatAgo` in the past.
 */
export async function seedPackages(
  c: pg.Client,
  n: number,
  opts: { prefix?: string; status?: string; heartbeatAgoSeconds?: number; start?: number } = {},
): Promise<void> {
  const prefix = opts.prefix ?? "bench";
  const status = opts.status ?? "requested";
  const start = opts.start ?? 1;
  const leased = opts.heartbeatAgoSeconds !== undefined;
  await c.query(
    `INSERT INTO package (name, version, status, next_attempt_at, lease_owner, lease_token, heartbeat_at)
     SELECT $1 || '-' || g, '1.0.0', $2::package_status, now() - interval '1 second',
            CASE WHEN $3 THEN 'bench-dead-worker' END, CASE WHEN $3 THEN gen_random_uuid() END,
            CASE WHEN $3 THEN now() - make_interval(secs => $4::float8) END
     FROM generate_series($5::int, $5::int + $6::int - 1) g`,
    [prefix, status, leased, opts.heartbeatAgoSeconds ?? 0, start, n],
  );
}

/** Level the field before a timed run: vacuum/analyze the queue table and flush dirty pages. */
export async function settle(c: pg.Client): Promise<void> {
  await c.query("VACUUM ANALYZE package");
  await c.query("CHECKPOINT");
}

export function fmt(n: number | null, digits = 2): string {
  if (n === null || Number.isNaN(n)) return "—";
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString("en-US");
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(digits);
}
