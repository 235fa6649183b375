/**
 * Benchmark 3 — upload. A generated package-lock.json (v3) of N distinct, never-seen packages POSTed to
 * the real Fastify app (api/app.ts, app.inject: routing, auth, parse, one transaction with the bulk
 * enqueue and NOTIFY) until the 202. N = 500, 5,000 and 50,000 (× BENCH_SCALE, at least 20,000).
 * Baseline: a raw multi-row INSERT … SELECT FROM unnest($names, $versions) of the same number of
 * rows on one node-postgres connection (the floor of writing those rows at all).
 */
import { createHash } from "node:crypto";
import { median, pgClient, resetTables, result, scaled, log, type BenchResult } from "./lib.ts";
import { startApp } from "./api.ts";

function lockfile(prefix: string, n: number): Buffer {
  const packages: Record<string, unknown> = { "": { name: "bench-app", version: "1.0.0" } };
  for (let i = 0; i < n; i++) {
    const name = `${prefix}-${i}`;
    const version = `1.${i % 50}.${i % 7}`;
    packages[`node_modules/${name}`] = {
      version,
      resolved: `https://registry.npmjs.org/${name}/-/${name}-${version}.tgz`,
      integrity: `sha512-${createHash("sha512").update(`${name}@${version}`).digest("base64")}`,
    };
  }
  return Buffer.from(JSON.stringify({ name: "bench-app", version: "1.0.0", lockfileVersion: 3, requires: true, packages }));
}

export async function benchUpload(url: string): Promise<BenchResult[]> {
  const big = scaled(50_000, 20_000);
  const sizes = [500, 5_000, big];
  const reps: Record<number, number> = { 500: 5, 5000: 5 };
  const c = await pgClient(url);
  await resetTables(c);
  const api = await startApp(url, { MAX_UPLOAD_BYTES: String(64 * 1024 * 1024) });
  const ours = new Map<number, number[]>();
  const raw = new Map<number, number[]>();
  try {
    // warm up the route (JIT, first connections)
    await post(lockfile("warm", 200));
    let round = 0;
    for (const n of sizes) {
      const times = reps[n] ?? 2;
      for (let r = 0; r < times; r++) {
        round++;
        const body = lockfile(`up${round}`, n);
        const ms = await post(body);
        (ours.get(n) ?? ours.set(n, []).get(n)!).push(ms);
        const names = Array.from({ length: n }, (_, i) => `raw${round}-${i}`);
        const versions = Array.from({ length: n }, (_, i) => `1.${i % 50}.${i % 7}`);
        const t0 = performance.now();
        await c.query("INSERT INTO package (name, version) SELECT * FROM unnest($1::text[], $2::text[])", [names, versions]);
        (raw.get(n) ?? raw.set(n, []).get(n)!).push(performance.now() - t0);
      }
      log(`  upload ${n}: ours ${median(ours.get(n)!).toFixed(1)} ms, raw insert ${median(raw.get(n)!).toFixed(1)} ms`);
    }
  } finally {
    await api.close();
    await c.end();
  }
  const perRow = (m: Map<number, number[]>, n: number) => (median(m.get(n)!) / n) * 1000;
  const out: BenchResult[] = [
    result("upload 5,000-package lockfile → 202: ours vs raw INSERT … unnest", median(ours.get(5_000)!), "ms", {
      baseline: median(raw.get(5_000)!),
      goal: "< 1000 ms",
      met: median(ours.get(5_000)!) < 1000,
    }),
  ];
  for (const n of sizes) {
    const flat = n === big;
    out.push(
      result(`upload per-row cost at ${n.toLocaleString("en-US")} packages: ours vs raw INSERT`, perRow(ours, n), "µs/row", {
        baseline: perRow(raw, n),
        goal: flat ? "flat: ≤ 1.5× the per-row cost at 5,000" : null,
        met: flat ? perRow(ours, n) <= 1.5 * perRow(ours, 5_000) : null,
      }),
    );
  }
  return out;

  async function post(body: Buffer): Promise<number> {
    const t0 = performance.now();
    const res = await api.app.inject({
      method: "POST",
      url: "/api/packages/upload",
      headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json", "x-file-name": "package-lock.json" },
      payload: body,
    });
    const ms = performance.now() - t0;
    if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
    return ms;
  }
}
