/**
 * Benchmark 7 — registry reads (api/routes/registry.ts). A package with 120 approved versions (rows
 * with results.download pointing at a stored ~300 KB tarball and a realistic results.manifest), read
 * through the real app listening on 127.0.0.1 by loadgen.ts (its own process): 50 keep-alive
 * connections for 10 s (× BENCH_SCALE, at least 2 s) each, with a Bearer token and
 * `Accept-Encoding: gzip` as npm sends:
 *   abbreviated packument (Accept: application/vnd.npm.install-v1+json), full packument, tarball.
 * Baseline (the ceiling): a plain node:http server in this same process sending the very same bytes
 * (and content headers) from memory. Diagnostic: that server streaming the stored tarball file.
 *
 * Ours and the ceiling are measured in ROUNDS alternating rounds (of a fifth of the time each, at
 * least 1 s; which side goes first alternates too), and each figure is its total requests over its
 * total measured time: on a shared machine the load drifts by more than the effect measured, and
 * alternating exposes both sides to the same drift.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { ContentStore } from "../../src/store/content-store.ts";
import { listen, startApp } from "./api.ts";
import { log, median, pgClient, resetTables, result, ROOT, scaled, type BenchResult } from "./lib.ts";

const NAME = "bench-big";
const VERSIONS = 120;
const ABBREVIATED = "application/vnd.npm.install-v1+json";
const ROUNDS = 5;

interface Load {
  requests: number;
  bytes: number;
  secs: number;
  errors: number;
  non2xx: number;
  rps: number;
  mibps: number;
  p50: number;
  p99: number;
}

function load(url: string, headers: Record<string, string>, durationMs: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(ROOT, "scripts/bench/loadgen.ts"), JSON.stringify({ url, headers, connections: 50, durationMs })],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const kill = setTimeout(() => child.kill("SIGKILL"), durationMs + 60_000);
    child.on("exit", (code) => {
      clearTimeout(kill);
      if (code !== 0) return reject(new Error(`loadgen exited with ${code}`));
      const r = JSON.parse(out.trim()) as Load;
      if (r.errors > 0 || r.non2xx > 0) return reject(new Error(`loadgen saw ${r.errors} errors and ${r.non2xx} non-2xx answers on ${url}`));
      resolve(r);
    });
  });
}

/** Several rounds as one: rates over the total time, the median round's latencies. */
function combine(rounds: Load[]): Load {
  const sum = (f: (l: Load) => number) => rounds.reduce((a, l) => a + f(l), 0);
  const med = (f: (l: Load) => number) => median(rounds.map(f));
  const secs = sum((l) => l.secs);
  const bytes = sum((l) => l.bytes);
  const requests = sum((l) => l.requests);
  return {
    requests,
    bytes,
    secs,
    errors: sum((l) => l.errors),
    non2xx: sum((l) => l.non2xx),
    rps: requests / secs,
    mibps: bytes / secs / 2 ** 20,
    p50: med((l) => l.p50),
    p99: med((l) => l.p99),
  };
}

/** One GET, whole body as received (still gzip-encoded when it was sent so), with the headers. */
function fetchRaw(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

function manifest(version: string, i: number): Record<string, unknown> {
  const deps: Record<string, string> = {};
  for (let d = 0; d < 12; d++) deps[`dep-${(i + d) % 40}`] = `^${1 + (d % 4)}.${d}.0`;
  return {
    name: NAME,
    version,
    description: "A benchmark package with many versions, shaped like a popular library's manifest.",
    main: "index.js",
    types: "index.d.ts",
    license: "MIT",
    author: { name: "Bench Author", email: "bench@example.com" },
    repository: { type: "git", url: "git+https://github.com/example/bench-big.git" },
    homepage: "https://github.com/example/bench-big#readme",
    bugs: { url: "https://github.com/example/bench-big/issues" },
    keywords: ["bench", "registry", "packument", "npm"],
    engines: { node: ">=18" },
    dependencies: deps,
    devDependencies: { typescript: "^5.0.0", vitest: "^1.0.0", eslint: "^9.0.0" },
    peerDependencies: i % 3 === 0 ? { react: "^18.0.0" } : undefined,
    scripts: { build: "tsc -p .", test: "vitest run" },
    files: ["index.js", "index.d.ts", "lib/"],
  };
}

export async function benchRegistry(url: string): Promise<BenchResult[]> {
  const durationMs = scaled(10_000, 2_000);
  const storeDir = mkdtempSync(join(tmpdir(), "spm-bench-store-"));
  const c = await pgClient(url);
  let api: Awaited<ReturnType<typeof startApp>> | null = null;
  let ceiling: http.Server | null = null;
  try {
    await resetTables(c);
    const tarball = randomBytes(300 * 1024);
    const { blob } = await new ContentStore(storeDir).write(Readable.from([tarball]), 10 * 1024 * 1024);
    const versions = Array.from({ length: VERSIONS }, (_, i) => `${1 + Math.floor(i / 20)}.${i % 20}.0`);
    const results = versions.map((v, i) =>
      JSON.stringify({
        licence: { spdx: "MIT", verdict: "allow" },
        download: { storageKey: blob.key, size: blob.size, integrity: blob.integrity, shasum: blob.sha1 },
        manifest: manifest(v, i),
        upstream: { publishedAt: new Date(Date.UTC(2024, 0, 1 + i)).toISOString() },
        scan: { findings: [], installScripts: null },
      }),
    );
    await c.query(
      `INSERT INTO package (name, version, status, results)
       SELECT $1, v, 'approved', r::jsonb FROM unnest($2::text[], $3::text[]) AS t(v, r)`,
      [NAME, versions, results],
    );
    await c.query("VACUUM ANALYZE package");
    api = await startApp(url, { STORAGE_DIR: storeDir });
    const base = await listen(api.app);
    const auth = { authorization: `Bearer ${api.token}`, "accept-encoding": "gzip" };
    const targets = [
      { key: "abbreviated packument", path: `/npm/${NAME}`, headers: { ...auth, accept: ABBREVIATED }, goal: 0.5 },
      { key: "full packument", path: `/npm/${NAME}`, headers: { ...auth, accept: "application/json" }, goal: 0.5 },
      { key: "~300 KB tarball", path: `/npm/${NAME}/-/${NAME}-${versions[0]}.tgz`, headers: auth, goal: 0.8 },
    ];
    // the ceiling serves, per path and Accept, the bytes our app sent, with the same content headers
    const bodies = new Map<string, { body: Buffer; headers: Record<string, string> }>();
    for (const t of targets) {
      const r = await fetchRaw(`${base}${t.path}`, t.headers);
      if (r.status !== 200) throw new Error(`${t.key}: ${r.status} ${r.body.toString().slice(0, 200)}`);
      const headers: Record<string, string> = { "content-type": String(r.headers["content-type"]) };
      if (r.headers["content-encoding"]) headers["content-encoding"] = String(r.headers["content-encoding"]);
      if (r.headers.etag) headers.etag = String(r.headers.etag);
      bodies.set(t.key, { body: r.body, headers });
      log(`  registry ${t.key}: ${r.body.length.toLocaleString("en-US")} bytes on the wire (${headers["content-encoding"] ?? "identity"})`);
    }
    const tarballPath = new ContentStore(storeDir).path(blob.key);
    ceiling = http.createServer((req, res) => {
      if (req.url === "/from-disk.tgz") {
        // diagnostic: the same tarball streamed from the store's file (no database, no auth)
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.size });
        createReadStream(tarballPath).pipe(res);
        return;
      }
      const key = req.url?.endsWith(".tgz") ? "~300 KB tarball" : String(req.headers.accept).includes(ABBREVIATED) ? "abbreviated packument" : "full packument";
      const b = bodies.get(key)!;
      res.writeHead(200, { ...b.headers, "content-length": b.body.length });
      res.end(b.body);
    });
    ceiling.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => ceiling!.listen(0, "127.0.0.1", r));
    const addr = ceiling.address();
    const ceilingBase = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
    const out: BenchResult[] = [];
    // warm-up (JIT, caches, connections) of both servers
    for (const t of targets) {
      await load(`${base}${t.path}`, t.headers, 1_000);
      await load(`${ceilingBase}${t.path}`, t.headers, 1_000);
    }
    const roundMs = Math.max(1_000, Math.round(durationMs / ROUNDS));
    for (const t of targets) {
      const oursRounds: Load[] = [];
      const plainRounds: Load[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const sides = [
          { rounds: oursRounds, url: `${base}${t.path}` },
          { rounds: plainRounds, url: `${ceilingBase}${t.path}` },
        ];
        if (r % 2 === 1) sides.reverse();
        for (const side of sides) side.rounds.push(await load(side.url, t.headers, roundMs));
      }
      const ours = combine(oursRounds);
      const plain = combine(plainRounds);
      const perRound = oursRounds.map((o, i) => (o.rps / plainRounds[i]!.rps).toFixed(2)).join(" ");
      log(
        `  registry ${t.key}: ours ${Math.round(ours.rps)} req/s (p50 ${ours.p50.toFixed(1)} p99 ${ours.p99.toFixed(1)} ms, ${ours.mibps.toFixed(0)} MiB/s); ` +
          `plain node:http ${Math.round(plain.rps)} req/s (p99 ${plain.p99.toFixed(1)} ms, ${plain.mibps.toFixed(0)} MiB/s); ratio per round ${perRound}`,
      );
      out.push(
        result(`registry ${t.key} (${VERSIONS} versions), 50 keep-alive conns: ours vs plain node:http from memory`, ours.rps, "req/s", {
          baseline: plain.rps,
          goal: `≥ ${t.goal}× the ceiling`,
          met: ours.rps >= t.goal * plain.rps,
        }),
      );
    }
    const disk = await load(`${ceilingBase}/from-disk.tgz`, auth, durationMs);
    log(`  registry tarball streamed from disk by plain node:http (diagnostic): ${Math.round(disk.rps)} req/s (p99 ${disk.p99.toFixed(1)} ms)`);
    out.push(
      result("registry ~300 KB tarball: plain node:http streaming the stored file (diagnostic) vs from memory", disk.rps, "req/s", {
        baseline: bodies.size > 0 ? (out.at(-1)?.baseline ?? null) : null,
      }),
    );
    return out;
  } finally {
    if (ceiling) await new Promise<void>((r) => ceiling!.close(() => r()));
    await api?.close();
    await c.end();
    rmSync(storeDir, { recursive: true, force: true });
  }
}
