/**
 * PostgreSQL restarted in the middle of a run, on a dedicated server (the shared test server cannot be
 * restarted). 200 packages are uploaded through the listening API, two worker processes vet them against a
 * fixture upstream that answers slowly, and half-way PostgreSQL stops for a few seconds. Meanwhile
 * /ready answers 503 and /health 200; once PostgreSQL is back /ready is 200 again, the workers reconnect
 * (pool and LISTEN) without restarting, and every package settles: nothing lost, nothing done twice,
 * nothing left in an -ing state.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../../src/advisories/store.ts";
import { createDb, type Db } from "../../src/db/client.ts";
import type { Maintenance } from "../../src/maintenance/scheduler.ts";
import { buildTestApp, type TestApp } from "../support/app.ts";
import { startDedicatedPostgres, type DedicatedPostgres } from "../support/dedicated-postgres.ts";
import { startFixtureRegistry, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3 } from "../support/lockfile.ts";
import { spawnWorker, startMaintenance, waitFor, workerEnv } from "../support/worker.ts";

const COUNT = 200;
const old = new Date(Date.now() - 30 * 86_400_000);
const names = Array.from({ length: COUNT }, (_, i) => `restart-${i}`);

let server: DedicatedPostgres;
let db: Db;
let ta: TestApp;
let base: string;
let upstream: FixtureRegistry;
let storageDir: string;
let maintenance: Maintenance | undefined;
const children: ChildProcess[] = [];
const output: string[] = [];

/** A check that counts a database error as "not yet" (the server may be down). */
function tolerant(check: () => Promise<boolean>): () => Promise<boolean> {
  return async () => {
    try {
      return await check();
    } catch {
      return false;
    }
  };
}

const get = async (path: string) => {
  const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

beforeAll(async () => {
  server = await startDedicatedPostgres();
  db = createDb(server.url, 4);
  async function* docs() {
    yield {
      source: "fixture.json",
      doc: {
        id: "GHSA-unrelated-0001",
        modified: new Date().toISOString(),
        database_specific: { severity: "LOW" },
        affected: [{ package: { ecosystem: "npm", name: "unrelated" }, ranges: [{ type: "SEMVER", events: [{ introduced: "0" }] }] }],
      },
    };
  }
  await importAdvisories(db, docs(), "test");
  upstream = await startFixtureRegistry();
  for (const name of names) upstream.addPackage(name, [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
  // Slow enough that the run is still under way when PostgreSQL goes.
  upstream.setFault({ kind: "tarball" }, { kind: "delay", ms: 250 });
  upstream.setFault({ kind: "packument" }, { kind: "delay", ms: 50 });
  // DATABASE_URL: the registry's cache LISTENs too, and must come back as well.
  ta = await buildTestApp(db, { DATABASE_URL: server.url });
  await ta.app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(ta.app.server.address() as AddressInfo).port}/`;
  storageDir = mkdtempSync(join(tmpdir(), "spm-restart-store-"));
}, 120_000);

afterAll(async () => {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const hard = setTimeout(() => c.kill("SIGKILL"), 15_000);
          c.once("exit", () => {
            clearTimeout(hard);
            resolve();
          });
          c.kill("SIGTERM");
        }),
    ),
  );
  await maintenance?.stop();
  await ta?.app.close();
  await db?.$disconnect();
  await upstream?.close();
  await server?.destroy();
  if (storageDir) rmSync(storageDir, { recursive: true, force: true });
});

describe("PostgreSQL restart mid-run", () => {
  it("reports not ready while down, recovers on its own, and loses or repeats nothing", { timeout: 90_000 }, async () => {
    const entries = names.map((name) => ({ name, version: "1.0.0", integrity: upstream.integrity(name, "1.0.0") }));
    const res = await fetch(new URL("api/packages/upload", base), {
      method: "POST",
      headers: { ...ta.auth("user"), "content-type": "application/json" },
      body: lockfileV3(entries),
    });
    expect(res.status).toBe(202);

    const env = workerEnv({
      UPSTREAM_REGISTRY: upstream.url,
      STORAGE_DIR: storageDir,
      // A lease whose claim was committed but never answered (the connection died) comes back quickly.
      STUCK_AFTER_MINUTES: "0.2",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
    });
    // The API process's maintenance (the audit sealer), as api/main.ts runs it, through the same restart.
    maintenance = startMaintenance(db, env);
    for (const id of ["restart-w1", "restart-w2"]) {
      const child = spawnWorker(server.url, { ...env, WORKER_ID: id });
      child.stdout?.on("data", (b: Buffer) => output.push(`[${id}] ${b.toString()}`));
      child.stderr?.on("data", (b: Buffer) => output.push(`[${id}] ${b.toString()}`));
      children.push(child);
    }

    // Mid-run: some packages through the whole pipeline, most not.
    await waitFor(async () => (await db.package.count({ where: { status: "approved" } })) >= 10, 45_000, "10 packages approved");
    const before = await db.package.count({ where: { status: "approved" } });
    expect(before).toBeLessThan(COUNT / 2);
    expect((await get("ready")).status).toBe(200);

    await server.stop();

    // Down: the API is alive but not ready; the workers stay up.
    const down = await get("ready");
    expect(down.status).toBe(503);
    expect(down.body.status).toBe("unavailable");
    expect((await get("health")).status).toBe(200);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await get("ready")).status).toBe(503);
    expect((await get("health")).status).toBe(200);
    for (const c of children) expect(c.exitCode, output.join("")).toBeNull();

    await server.start();

    // Back: ready again, and the workers finish the run without being restarted.
    await waitFor(tolerant(async () => (await get("ready")).status === 200), 30_000, "/ready 200 after the restart");
    await waitFor(
      tolerant(async () => (await db.package.count({ where: { status: { notIn: ["approved", "rejected", "failed", "pending_approval"] } } })) === 0),
      60_000,
      "every package settled after the restart",
    );
    for (const c of children) expect(c.exitCode, output.join("")).toBeNull();

    // Nothing lost: every package approved, none in an -ing state.
    const statuses = await db.package.groupBy({ by: ["status"], _count: true });
    expect(statuses.map((s) => [s.status, s._count]), output.join("").slice(-5_000)).toEqual([["approved", COUNT]]);

    // Nothing done twice: each stage's done-transition exactly once per package.
    const transitions = await db.$queryRaw<{ name: string; from_status: string; to_status: string; n: number }[]>`
      SELECT p.name, e.from_status::text AS from_status, e.to_status::text AS to_status, count(*)::int AS n
      FROM package_event e JOIN package p ON p.id = e.package_id
      WHERE (e.from_status, e.to_status) IN (('checking_licence', 'licence_checked'), ('downloading', 'downloaded'),
                                             ('scanning', 'pending_approval'), ('pending_approval', 'approved'))
      GROUP BY 1, 2, 3`;
    const counts = new Map(transitions.map((r) => [`${r.name} ${r.from_status}→${r.to_status}`, r.n]));
    for (const name of names) {
      for (const step of ["checking_licence→licence_checked", "downloading→downloaded", "scanning→pending_approval", "pending_approval→approved"]) {
        expect(counts.get(`${name} ${step}`) ?? 0, `${name} ${step}`).toBe(1);
      }
    }
    expect(transitions.every((r) => r.n === 1)).toBe(true);

    // Both workers LISTEN again (a new connection each), and so does the API's registry cache.
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      await waitFor(
        async () => {
          const { rows } = await admin.query<{ query: string; n: number }>(
            `SELECT query, count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %' GROUP BY query`,
          );
          const by = new Map(rows.map((r) => [r.query, r.n]));
          return by.get('LISTEN "spm_work"') === 2 && by.get('LISTEN "spm_registry"') === 1;
        },
        15_000,
        "the LISTEN connections to be back",
      );
    } finally {
      await admin.end();
    }
  });
});
