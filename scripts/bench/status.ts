/**
 * Benchmark 4 — status endpoints at 100k package rows (and 1M when BENCH_SCALE ≥ 1). Rows are seeded
 * with generate_series in a realistic mix (most approved, some queued, in progress, awaiting review,
 * rejected, failed; a results document on settled rows; one event per package), plus a request of
 * 5,000 packages. Sequential GETs over one keep-alive connection to the real app on 127.0.0.1:
 *   GET /api/packages/processing/status
 *   GET /api/packages/requests/:id/processing-status   (default page: 1,000 packages)
 * Baseline: the main query of each endpoint, run raw on one node-postgres connection (a GROUP BY status count
 * of the table; the request's first page joined with its packages).
 */
import http from "node:http";
import type pg from "pg";
import { listen, startApp, timedGet } from "./api.ts";
import { benchScale, log, percentile, pgClient, resetTables, result, type BenchResult } from "./lib.ts";

const MIX = [
  ...Array(10).fill("approved"),
  "failed",
  "requested",
  "requested",
  "licence_checked",
  "downloaded",
  "checking_licence",
  "downloading",
  "scanning",
  "pending_approval",
  "rejected",
] as const;

async function seed(c: pg.Client, from: number, to: number): Promise<void> {
  const key = "ab".repeat(64);
  await c.query(
    `INSERT INTO package (name, version, status, attempts, next_attempt_at, lease_owner, lease_token, heartbeat_at,
                          results, reason_code, reason_message, created_at, updated_at)
     SELECT 'st-pkg-' || (g / 10), '1.' || (g % 10) || '.0', s.status, 0,
            now() - make_interval(secs => (g % 3600)::float8),
            CASE WHEN s.active THEN 'bench-worker' END, CASE WHEN s.active THEN gen_random_uuid() END,
            CASE WHEN s.active THEN now() - make_interval(secs => CASE WHEN g % 1000 = 0 THEN 7200 ELSE g % 60 END) END,
            CASE WHEN s.status IN ('approved', 'pending_approval', 'rejected') THEN jsonb_build_object(
              'licence', jsonb_build_object('spdx', 'MIT', 'verdict', 'allow'),
              'download', jsonb_build_object('storageKey', $3::text, 'size', 12345, 'integrity', 'sha512-' || md5(g::text)),
              'scan', jsonb_build_object('findings', '[]'::jsonb, 'installScripts', NULL)) ELSE '{}'::jsonb END,
            CASE WHEN s.status = 'rejected' THEN 'licence_denied' END,
            CASE WHEN s.status = 'rejected' THEN 'GPL-3.0-only is denied by policy' END,
            now() - interval '1 day', now() - make_interval(secs => (g % 86400)::float8)
     FROM generate_series($1::int, $2::int) g
     CROSS JOIN LATERAL (SELECT ($4::package_status[])[1 + g % ${MIX.length}] AS status) m
     CROSS JOIN LATERAL (SELECT m.status, m.status IN ('checking_licence', 'downloading', 'scanning') AS active) s`,
    [from, to, key, [...MIX]],
  );
  await c.query(
    `INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
     SELECT id, NULL, 'requested', 'bench', 'uploaded' FROM package WHERE id BETWEEN $1 AND $2`,
    [from, to],
  );
}

interface Latencies {
  global: number[];
  request: number[];
  rawGlobal: number[];
  rawRequest: number[];
}

async function measure(c: pg.Client, base: string, token: string, requestId: number, n: number): Promise<Latencies> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const headers = { authorization: `Bearer ${token}` };
  const out: Latencies = { global: [], request: [], rawGlobal: [], rawRequest: [] };
  const globalUrl = `${base}/api/packages/processing/status`;
  const requestUrl = `${base}/api/packages/requests/${requestId}/processing-status`;
  const rawGlobal = "SELECT status::text AS status, count(*)::int AS n FROM package GROUP BY status";
  const rawRequest = `SELECT p.id, p.name, p.version, p.status::text AS status, p.attempts, p.last_error_code, p.last_error_message,
                             p.reason_code, p.reason_message, p.updated_at
                      FROM request_package rp JOIN package p ON p.id = rp.package_id
                      WHERE rp.request_id = $1 ORDER BY p.name, p.version LIMIT 1000`;
  try {
    for (let i = 0; i < 20; i++) {
      await timedGet(agent, globalUrl, headers);
      await timedGet(agent, requestUrl, headers);
    }
    for (let i = 0; i < n; i++) {
      const g = await timedGet(agent, globalUrl, headers);
      if (g.status !== 200) throw new Error(`status endpoint answered ${g.status}`);
      out.global.push(g.ms);
      const r = await timedGet(agent, requestUrl, headers);
      if (r.status !== 200) throw new Error(`request status endpoint answered ${r.status}`);
      out.request.push(r.ms);
      let t0 = performance.now();
      await c.query(rawGlobal);
      out.rawGlobal.push(performance.now() - t0);
      t0 = performance.now();
      await c.query(rawRequest, [requestId]);
      out.rawRequest.push(performance.now() - t0);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

export async function benchStatus(url: string): Promise<BenchResult[]> {
  const c = await pgClient(url);
  await resetTables(c);
  const sizes = benchScale() >= 1 ? [100_000, 1_000_000] : [100_000];
  const n = 200;
  const api = await startApp(url);
  const out: BenchResult[] = [];
  try {
    const base = await listen(api.app);
    await c.query(`INSERT INTO worker (id, hostname, pid, info) VALUES ('bench-worker', 'bench', 1, '{"inFlight": 8}'), ('bench-worker-2', 'bench', 2, '{}')`);
    let seeded = 0;
    let requestId = 0;
    for (const size of sizes) {
      const t0 = performance.now();
      for (let from = seeded + 1; from <= size; from += 100_000) await seed(c, from, Math.min(size, from + 99_999));
      seeded = size;
      if (requestId === 0) {
        const { rows } = await c.query<{ id: number }>(
          `INSERT INTO request (uploaded_by_name, lockfile_sha256, lockfile_version, total, new_count, existing_count)
           VALUES ('bench', md5('bench'), 3, 5000, 5000, 0) RETURNING id`,
        );
        requestId = rows[0]!.id;
        // 5,000 packages spread over the table (every status of the mix)
        await c.query(
          `INSERT INTO request_package (request_id, package_id) SELECT $1, g * 17 FROM generate_series(1, 5000) g`,
          [requestId],
        );
      }
      await c.query("VACUUM ANALYZE package");
      await c.query("VACUUM ANALYZE package_event");
      await c.query("VACUUM ANALYZE request_package");
      log(`  status: seeded ${size.toLocaleString("en-US")} rows in ${Math.round(performance.now() - t0)} ms`);
      const lat = await measure(c, base, api.token, requestId, n);
      const label = size >= 1_000_000 ? "1M" : `${size / 1000}k`;
      const goal100k = size === 100_000;
      log(
        `  status ${label}: global p50 ${percentile(lat.global, 50).toFixed(1)} p99 ${percentile(lat.global, 99).toFixed(1)} ms; ` +
          `request p50 ${percentile(lat.request, 50).toFixed(1)} p99 ${percentile(lat.request, 99).toFixed(1)} ms`,
      );
      for (const [what, ours, raw] of [
        ["GET /api/packages/processing/status", lat.global, lat.rawGlobal],
        ["GET /api/packages/requests/:id/processing-status (5,000 pkgs)", lat.request, lat.rawRequest],
      ] as const) {
        out.push(result(`${what} p50 at ${label} rows: ours vs raw query`, percentile(ours, 50), "ms", { baseline: percentile(raw, 50) }));
        out.push(
          result(`${what} p99 at ${label} rows: ours vs raw query`, percentile(ours, 99), "ms", {
            baseline: percentile(raw, 99),
            goal: goal100k ? "< 50 ms" : null,
            met: goal100k ? percentile(ours, 99) < 50 : null,
          }),
        );
      }
    }
  } finally {
    await api.close();
    await c.end();
  }
  return out;
}
