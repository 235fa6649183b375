/**
 * Benchmark 8 — real work (BENCH_REAL=1 only; needs the npm registry). In a temporary directory:
 *   1. `npm install --package-lock-only` of a large app (a web framework set plus its build and test
 *      tooling) writes a real package-lock.json (not timed);
 *   2. baseline: a cold `npm ci --ignore-scripts` of it with an empty cache directory (timed);
 *   3. ours: a fresh stack — the API in this process (app.inject upload) and one worker process
 *      (worker/main.ts, WORKER_CONCURRENCY=32, real upstream registry, empty content store) — from the
 *      upload until every package of the request is settled (approved, awaiting review, rejected or
 *      failed): licence check, download with integrity check, and tarball scan of every package.
 * Goal: ours ≤ 1.5× npm ci.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SETTLED_STATUSES } from "../../src/queue/states.ts";
import { startApp } from "./api.ts";
import { JWT_SECRET, log, pgClient, resetTables, result, ROOT, sleep, type BenchResult } from "./lib.ts";

const APP_DEPENDENCIES: Record<string, string> = {
  next: "^14.2.0",
  react: "^18.3.0",
  "react-dom": "^18.3.0",
  express: "^4.19.0",
  webpack: "^5.90.0",
  "webpack-cli": "^5.1.0",
  "@babel/core": "^7.24.0",
  "@babel/preset-env": "^7.24.0",
  jest: "^29.7.0",
  eslint: "^8.57.0",
  typescript: "^5.4.0",
  lodash: "^4.17.21",
  axios: "^1.6.0",
  // … and the toolchains of a few more frameworks: about 2,100 distinct name@versions in all
  "react-scripts": "^5.0.1",
  "@angular/cli": "^17.3.0",
  "@nestjs/cli": "^10.3.0",
  firebase: "^10.12.0",
  "@storybook/react": "^7.6.0",
  gatsby: "^5.13.0",
};

function run(cmd: string, args: string[], cwd: string, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(performance.now() - t0);
      else reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${err}`));
    });
  });
}

function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

export async function benchReal(url: string): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), "spm-bench-real-"));
  const npmEnv = { ...process.env, npm_config_registry: "https://registry.npmjs.org/", npm_config_fund: "false", npm_config_audit: "false" };
  let worker: ChildProcess | null = null;
  const c = await pgClient(url);
  try {
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "bench-real-app", version: "1.0.0", private: true, dependencies: APP_DEPENDENCIES }, null, 2));
    log("  real: resolving a lockfile with npm install --package-lock-only …");
    // --legacy-peer-deps: these frameworks' peer ranges disagree; npm resolves them as npm 6 did
    await run("npm", ["install", "--package-lock-only", "--ignore-scripts", "--legacy-peer-deps", "--cache", join(dir, "cache-resolve")], app, 10 * 60_000, npmEnv);
    const lock = readFileSync(join(app, "package-lock.json"));
    const entries = Object.keys((JSON.parse(lock.toString()) as { packages: Record<string, unknown> }).packages).length - 1;
    log(`  real: lockfile with ${entries} entries; cold npm ci …`);
    const npmCiMs = await run("npm", ["ci", "--ignore-scripts", "--legacy-peer-deps", "--cache", join(dir, "cache-empty"), "--prefer-online"], app, 20 * 60_000, npmEnv);
    log(`  real: npm ci took ${(npmCiMs / 1000).toFixed(1)} s`);

    await resetTables(c);
    const store = join(dir, "store");
    worker = spawn(process.execPath, ["--import", "tsx", join(ROOT, "worker/main.ts")], {
      cwd: ROOT,
      env: {
        ...process.env,
        NODE_ENV: "production",
        LOG_LEVEL: "warn",
        DATABASE_URL: url,
        JWT_SECRET,
        WORKER_ID: "bench-real-worker",
        WORKER_CONCURRENCY: "32",
        WORKER_MAX_PACKAGES_PER_CYCLE: "32",
        WORKER_SLEEP_INTERVAL: "5",
        UPSTREAM_REGISTRY: "https://registry.npmjs.org/",
        STORAGE_DIR: store,
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const ready = Date.now() + 60_000;
    for (;;) {
      const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM worker WHERE id = 'bench-real-worker'");
      if (rows[0]!.n > 0) break;
      if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode}`);
      if (Date.now() > ready) throw new Error("worker did not start within 60 s");
      await sleep(200);
    }
    const api = await startApp(url, { STORAGE_DIR: store });
    let oursMs: number;
    let total = 0;
    try {
      const t0 = performance.now();
      const res = await api.app.inject({
        method: "POST",
        url: "/api/packages/upload",
        headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
        payload: lock,
      });
      if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
      const requestId = (res.json() as { request_id: number }).request_id;
      const deadline = Date.now() + 30 * 60_000;
      let lastLog = 0;
      for (;;) {
        const { rows } = await c.query<{ settled: number; total: number }>(
          `SELECT count(*) FILTER (WHERE p.status = ANY($2::package_status[]))::int AS settled, count(*)::int AS total
           FROM request_package rp JOIN package p ON p.id = rp.package_id WHERE rp.request_id = $1`,
          [requestId, [...SETTLED_STATUSES]],
        );
        const { settled } = rows[0]!;
        total = rows[0]!.total;
        if (settled === total) break;
        if (Date.now() > deadline) throw new Error(`only ${settled}/${total} packages settled after 30 minutes`);
        if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode}`);
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`  real: ${settled}/${total} settled after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        }
        await sleep(250);
      }
      oursMs = performance.now() - t0;
      const { rows } = await c.query<{ status: string; n: number }>(
        `SELECT p.status::text AS status, count(*)::int AS n FROM request_package rp JOIN package p ON p.id = rp.package_id
         WHERE rp.request_id = $1 GROUP BY 1 ORDER BY 2 DESC`,
        [requestId],
      );
      log(`  real: ${total} packages vetted in ${(oursMs / 1000).toFixed(1)} s: ${rows.map((r) => `${r.status} ${r.n}`).join(", ")}`);
    } finally {
      await api.close();
    }
    return [
      result(`real work: vet a ${total}-package lockfile (upload → all settled) vs cold npm ci --ignore-scripts`, oursMs / 1000, "s", {
        baseline: npmCiMs / 1000,
        goal: "≤ 1.5× npm ci",
        met: oursMs <= 1.5 * npmCiMs,
      }),
    ];
  } finally {
    if (worker) await stopChild(worker, 40_000);
    await c.end();
    rmSync(dir, { recursive: true, force: true });
  }
}
