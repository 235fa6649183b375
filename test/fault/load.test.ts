/**
 * Load: 50 concurrent uploads of 300-package lockfiles with heavily overlapping names (and two versions
 * of the shared names), through the real API, while two in-process workers claim and complete the same
 * rows. Every upload is accepted, every package is linked to every request that listed it, there is one
 * row (and one creation event) per name@version, no deadlock was detected by PostgreSQL, and neither the
 * API nor the workers logged a database error. The workers then stop gracefully with nothing left half-done.
 */
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../../src/advisories/store.ts";
import { loadConfig } from "../../src/config.ts";
import { createWorker, type Worker } from "../../worker/worker.ts";
import { uploadRaw } from "../support/api-helpers.ts";
import { buildApp } from "../../api/app.ts";
import { createUser } from "../../src/auth/users.ts";
import { TEST_JWT_SECRET, testConfig } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3, type LockEntry } from "../support/lockfile.ts";
import { waitFor, workerEnv } from "../support/worker.ts";

const UPLOADS = 50;
const COMMON = 100;
const RING = 1_000;
const WINDOW = 200;
const old = new Date(Date.now() - 30 * 86_400_000);

let t: TestDatabase;
let app: FastifyInstance;
let auth: { authorization: string };
/** Errors the API met while handling requests (onError hook). */
const apiErrors: Error[] = [];
let upstream: FixtureRegistry;
const workers: Worker[] = [];
/** warn-and-above log lines of the workers. */
const logged: { level: number; msg: string; err?: { message?: string } }[] = [];

/** Upload i: the 100 common names, and a window of 200 names of a ring (neighbours overlap), in version 1.0.(i % 2). */
function entriesOf(i: number): LockEntry[] {
  const out: LockEntry[] = [];
  for (let c = 0; c < COMMON; c++) out.push({ name: `load-common-${c}`, version: "1.0.0" });
  for (let w = 0; w < WINDOW; w++) out.push({ name: `load-ring-${(i * 37 + w) % RING}`, version: `1.0.${i % 2}` });
  return out.map((e) => ({ ...e, integrity: upstream.integrity(e.name, e.version) }));
}

async function deadlocks(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: string }>("SELECT deadlocks::text AS n FROM pg_stat_database WHERE datname = current_database()");
    return Number(rows[0]!.n);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  t = await createTestDatabase();
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
  await importAdvisories(t.db, docs(), "test");
  app = await buildApp({ config: testConfig(), db: t.db, jwtSecret: TEST_JWT_SECRET, logger: false });
  app.addHook("onError", async (_request, _reply, err) => {
    apiErrors.push(err);
  });
  await app.ready();
  const user = await createUser(t.db, "loader", "loader-password", "user");
  auth = { authorization: `Bearer ${app.jwt.sign({ sub: String(user.id), name: user.username, role: "user" })}` };
  upstream = await startFixtureRegistry();
  for (let c = 0; c < COMMON; c++) upstream.addPackage(`load-common-${c}`, [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
  for (let r = 0; r < RING; r++) {
    upstream.addPackage(`load-ring-${r}`, [
      { version: "1.0.0", license: "MIT", publishedAt: old },
      { version: "1.0.1", license: "MIT", publishedAt: old },
    ]);
  }
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) logged.push(JSON.parse(line) as (typeof logged)[number]);
      cb();
    },
  });
  const log = pino({ level: "warn" }, sink);
  // One content store for both workers (a shared volume in production): either may scan what the other downloaded.
  const env = workerEnv({ UPSTREAM_REGISTRY: upstream.url });
  for (const id of ["load-w1", "load-w2"]) {
    const config = loadConfig({ ...env, WORKER_ID: id });
    workers.push(createWorker(config, t.url, log));
  }
}, 60_000);

afterAll(async () => {
  for (const w of workers) await w.stop();
  await app?.close();
  await upstream?.close();
  await t?.drop();
});

describe("50 concurrent uploads while workers run", () => {
  it("accepts every upload, links every package to every request that listed it, one row per name@version, no deadlocks", async () => {
    const deadlocksBefore = await deadlocks(t.url);
    for (const w of workers) await w.start();

    const lockfiles = Array.from({ length: UPLOADS }, (_, i) => entriesOf(i));
    const responses = await Promise.all(lockfiles.map((entries) => uploadRaw(app, auth, lockfileV3(entries))));
    expect(apiErrors.map((e) => `${e.message} ${String(e.cause ?? "")}`)).toEqual([]);
    for (const res of responses) expect(res.statusCode, res.body.slice(0, 500)).toBe(202);
    const bodies = responses.map((r) => r.json() as { request_id: number; packages: { total: number; new: number; existing: number } });

    // Every request is linked to exactly the name@versions it listed.
    const expected = new Set(lockfiles.flatMap((entries) => entries.map((e) => `${e.name}@${e.version}`)));
    const links = await t.db.$queryRaw<{ request_id: number; id: string }[]>`
      SELECT rp.request_id, p.name || '@' || p.version AS id FROM request_package rp JOIN package p ON p.id = rp.package_id`;
    const byRequest = new Map<number, Set<string>>();
    for (const l of links) {
      const set = byRequest.get(l.request_id) ?? new Set<string>();
      set.add(l.id);
      byRequest.set(l.request_id, set);
    }
    bodies.forEach((body, i) => {
      const listed = lockfiles[i]!.map((e) => `${e.name}@${e.version}`).sort();
      expect(body.packages.total).toBe(WINDOW + COMMON);
      expect(body.packages.new + body.packages.existing).toBe(WINDOW + COMMON);
      expect([...(byRequest.get(body.request_id) ?? [])].sort(), `request ${body.request_id}`).toEqual(listed);
    });
    expect(links.length).toBe(UPLOADS * (WINDOW + COMMON));
    expect(await t.db.request.count()).toBe(UPLOADS);

    // One row per name@version, each created once (one `uploaded` event), and every new row counted once.
    const rows = await t.db.package.findMany({ select: { name: true, version: true } });
    expect(rows.length).toBe(expected.size);
    expect(new Set(rows.map((r) => `${r.name}@${r.version}`))).toEqual(expected);
    const created = await t.db.$queryRaw<{ n: number; packages: number }[]>`
      SELECT count(*)::int AS n, count(DISTINCT package_id)::int AS packages FROM package_event WHERE from_status IS NULL`;
    expect(created[0]).toEqual({ n: expected.size, packages: expected.size });
    expect(bodies.reduce((sum, b) => sum + b.packages.new, 0)).toBe(expected.size);

    // The workers keep going under the load for a while, then stop gracefully: every lease is released
    // (nothing left in an -ing state) and no stage's done-transition was recorded twice for a package.
    await waitFor(async () => (await t.db.package.count({ where: { status: "approved" } })) >= 100, 45_000, "100 packages approved");
    for (const w of workers.splice(0)) await w.stop();
    expect(await t.db.package.count({ where: { status: { in: ["checking_licence", "downloading", "scanning"] } } })).toBe(0);
    expect(await t.db.package.count({ where: { status: "failed" } })).toBe(0);
    const doubled = await t.db.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM (
        SELECT package_id, to_status FROM package_event
        WHERE to_status IN ('licence_checked', 'downloaded', 'pending_approval', 'approved')
        GROUP BY package_id, to_status HAVING count(*) > 1) d`;
    expect(doubled[0]!.n).toBe(0);

    // No deadlock, no database error. Backends flush their statistics when they exit: close every connection first.
    await app.close();
    await t.db.$disconnect();
    expect(await deadlocks(t.url)).toBe(deadlocksBefore);
    expect(logged.filter((l) => l.level >= 40).map((l) => `${l.msg}: ${l.err?.message ?? ""}`)).toEqual([]);
  });
});
