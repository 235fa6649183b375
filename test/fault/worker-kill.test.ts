/**
 * Crash safety: a worker process killed with SIGKILL in the middle of each stage's step loses nothing
 * (another worker takes its expired leases over and completes the rows, applying each step once) and its
 * late write is refused by the lease token; a worker
 * stopped with SIGTERM releases its in-flight rows at once and exits 0.
 */
import type { ChildProcess } from "node:child_process";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseLockfile } from "../../src/lockfile/parse.ts";
import { createRequest } from "../../src/requests/create-request.ts";
import { complete } from "../../src/queue/sql.ts";
import type { Worker } from "../../worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3 } from "../support/lockfile.ts";
import { spawnWorker, startWorker, waitFor, waitSettled, workerEnv } from "../support/worker.ts";

let upstream: FixtureRegistry;
const names = ["alpha", "bravo", "charlie", "delta"];

beforeAll(async () => {
  upstream = await startFixtureRegistry();
  for (const n of names) upstream.addPackage(n, [{ version: "1.0.0", license: "MIT" }]);
});
afterAll(async () => upstream?.close());

async function seed(t: TestDatabase): Promise<void> {
  const raw = Buffer.from(lockfileV3(names.map((name) => ({ name, version: "1.0.0", integrity: upstream.integrity(name, "1.0.0") }))));
  await createRequest(t.db, { parsed: parseLockfile(raw), raw, fileName: null, user: { id: null, username: "t" } });
}

function exited(proc: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve({ code: proc.exitCode, signal: proc.signalCode });
    else proc.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * How each stage is held mid-step while the worker is killed: the licence and download steps wait on a
 * slow upstream (packument, tarball); the scan step reads the advisory data, which a transaction of the
 * test holds locked.
 */
interface StageHold {
  stage: string;
  active: "checking_licence" | "downloading" | "scanning";
  done: "licence_checked" | "downloaded" | "pending_approval";
  hold(t: TestDatabase): Promise<() => Promise<void>>;
}

const slowUpstream =
  (kind: "packument" | "tarball") =>
  async (): Promise<() => Promise<void>> => {
    upstream.setFault({ kind }, { kind: "delay", ms: 60_000 });
    return async () => upstream.setFault({ kind }, null);
  };

const holds: StageHold[] = [
  { stage: "licence", active: "checking_licence", done: "licence_checked", hold: slowUpstream("packument") },
  { stage: "download", active: "downloading", done: "downloaded", hold: slowUpstream("tarball") },
  {
    stage: "scan",
    active: "scanning",
    done: "pending_approval",
    hold: async (t) => {
      const locker = new pg.Client({ connectionString: t.url });
      await locker.connect();
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE advisory_import IN ACCESS EXCLUSIVE MODE");
      return async () => {
        await locker.query("ROLLBACK");
        await locker.end();
      };
    },
  },
];

describe.each(holds)("worker killed with SIGKILL mid-$stage", ({ active, done, hold }) => {
  let t: TestDatabase;
  let child: ChildProcess | undefined;
  let rescuer: Worker | undefined;
  let release: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    child?.kill("SIGKILL");
    await release?.();
    await rescuer?.stop();
  });
  afterAll(async () => t?.drop());

  it("takes the dead worker's expired leases over, completes the rows elsewhere, and refuses its late write", async () => {
    await seed(t);
    release = await hold(t);
    const env = workerEnv({ UPSTREAM_REGISTRY: upstream.url, STUCK_AFTER_MINUTES: "0.03" });
    child = spawnWorker(t.url, { ...env, WORKER_ID: "doomed" });
    await waitFor(async () => (await t.db.package.count({ where: { status: active, leaseOwner: "doomed" } })) === names.length, 30_000, `doomed worker in ${active}`);
    const held = await t.db.package.findMany({ where: { leaseOwner: "doomed" } });
    child.kill("SIGKILL");
    expect((await exited(child)).signal).toBe("SIGKILL");

    await release();
    release = undefined;
    // another worker takes the dead worker's leases over once they expire (1.8 s), and finishes the rows
    rescuer = startWorker(t.url, { ...env, WORKER_ID: "rescuer" }).worker;
    await rescuer.start();
    await waitSettled(t.db, 30_000);

    const rows = await t.db.package.findMany();
    expect(rows.every((r) => r.status === "pending_approval" || r.status === "approved")).toBe(true);
    const takeovers = await t.db.packageEvent.findMany({ where: { reason: "stuck: no heartbeat; lease taken over" } });
    expect(takeovers.map((e) => [e.actor, e.fromStatus, e.toStatus, (e.details as { lease_owner: string }).lease_owner])).toEqual(
      names.map(() => ["rescuer", active, active, "doomed"]),
    );
    // the stage's step applied once per package, by the worker that took it over
    const applied = await t.db.packageEvent.findMany({ where: { fromStatus: active, toStatus: done } });
    expect(applied.map((e) => e.actor)).toEqual(names.map(() => "rescuer"));

    // The dead worker's late completion, with its old lease tokens, changes nothing.
    const late = await complete(
      t.db,
      "doomed",
      held.map((r) => ({ id: r.id, token: r.leaseToken!, from: active, to: done, attempts: 0, eventReason: "late" })),
    );
    expect(late.size).toBe(0);
    expect(await t.db.packageEvent.count({ where: { reason: "late" } })).toBe(0);
  });
});

describe("worker stopped with SIGTERM", () => {
  let t: TestDatabase;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    child?.kill("SIGKILL");
    upstream.setFault({ kind: "tarball" }, null);
    await t?.drop();
  });

  it("releases in-flight rows back to their queue and exits 0 within the grace period", async () => {
    await seed(t);
    upstream.setFault({ kind: "tarball" }, { kind: "delay", ms: 60_000 });
    child = spawnWorker(t.url, { ...workerEnv({ UPSTREAM_REGISTRY: upstream.url, WORKER_GRACE_SECONDS: "1" }), WORKER_ID: "polite" });
    await waitFor(async () => (await t.db.package.count({ where: { status: "downloading" } })) === names.length, 30_000, "downloading");
    const started = Date.now();
    child.kill("SIGTERM");
    const { code } = await exited(child);
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const rows = await t.db.package.findMany();
    expect(rows.every((r) => r.status === "licence_checked" && r.leaseToken === null && r.attempts === 0)).toBe(true);
    expect(await t.db.packageEvent.count({ where: { reason: "released on shutdown" } })).toBe(names.length);
  });
});
