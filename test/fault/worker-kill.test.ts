/**
 * Crash safety: a worker process killed with SIGKILL mid-step loses nothing (the rescuer resets its
 * rows and another worker completes them) and its late write is refused by the lease token; a worker
 * stopped with SIGTERM releases its in-flight rows at once and exits 0.
 */
import type { ChildProcess } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseLockfile } from "../../src/lockfile/parse.ts";
import { createRequest } from "../../src/requests/create-request.ts";
import { complete } from "../../src/queue/sql.ts";
import type { Maintenance } from "../../src/maintenance/scheduler.ts";
import type { Worker } from "../../worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3 } from "../support/lockfile.ts";
import { spawnWorker, startMaintenance, startWorker, waitFor, waitSettled, workerEnv } from "../support/worker.ts";

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

describe("worker killed with SIGKILL mid-download", () => {
  let t: TestDatabase;
  let child: ChildProcess | undefined;
  let rescuer: Worker | undefined;
  let maintenance: Maintenance | undefined;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    child?.kill("SIGKILL");
    await rescuer?.stop();
    await maintenance?.stop();
    upstream.setFault({ kind: "tarball" }, null);
  });
  afterAll(async () => t?.drop());

  it("resets the dead worker's rows, completes them elsewhere, and refuses its late write", async () => {
    await seed(t);
    upstream.setFault({ kind: "tarball" }, { kind: "delay", ms: 60_000 });
    const env = workerEnv({ UPSTREAM_REGISTRY: upstream.url, STUCK_AFTER_MINUTES: "0.03", STUCK_CHECK_CRON: "* * * * * *" });
    child = spawnWorker(t.url, { ...env, WORKER_ID: "doomed" });
    await waitFor(async () => (await t.db.package.count({ where: { status: "downloading", leaseOwner: "doomed" } })) === names.length, 30_000, "doomed worker downloading");
    const held = await t.db.package.findMany({ where: { leaseOwner: "doomed" } });
    child.kill("SIGKILL");
    expect((await exited(child)).signal).toBe("SIGKILL");

    upstream.setFault({ kind: "tarball" }, null);
    // the API process's maintenance resets the dead worker's rows; another worker finishes them
    maintenance = startMaintenance(t.db, env);
    rescuer = startWorker(t.url, { ...env, WORKER_ID: "rescuer" }).worker;
    await rescuer.start();
    await waitSettled(t.db, 30_000);

    const rows = await t.db.package.findMany();
    expect(rows.every((r) => r.status === "pending_approval" || r.status === "approved")).toBe(true);
    const resets = await t.db.packageEvent.count({ where: { actor: "rescuer", reason: "stuck: no heartbeat" } });
    expect(resets).toBe(names.length);

    // The dead worker's late completion, with its old lease tokens, changes nothing.
    const late = await complete(
      t.db,
      "doomed",
      held.map((r) => ({ id: r.id, token: r.leaseToken!, from: "downloading" as const, to: "downloaded" as const, attempts: 0, eventReason: "late" })),
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
