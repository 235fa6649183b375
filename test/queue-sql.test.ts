import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claim, complete, enqueuePackages, heartbeat, release, requeueDeadWorker, requeueOrphans, retryFailed, takeOver } from "../src/queue/sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "../src/queue/states.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => t?.drop());

const stages = { queued: ["requested" as const], active: ["checking_licence" as const] };

/** Enqueue `n` fresh rows (named `prefix`0…) in a new request. */
async function enqueue(prefix: string, n: number): Promise<void> {
  const rows = Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, version: "1.0.0", integrity: null, resolved: null }));
  await enqueuePackages(t.db, { requestId: await newRequest(), actor: "test", rows });
}

async function newRequest(): Promise<number> {
  const r = await t.db.request.create({
    data: { uploadedByName: "test", lockfileSha256: "x", lockfileVersion: 3, total: 0, newCount: 0, existingCount: 0 },
  });
  return r.id;
}

describe("queue SQL", () => {
  it("enqueues in bulk, shares rows between requests and records creation events", async () => {
    const r1 = await newRequest();
    const rows = Array.from({ length: 50 }, (_, i) => ({ name: `p${i}`, version: "1.0.0", integrity: null, resolved: null }));
    expect(await enqueuePackages(t.db, { requestId: r1, actor: "alice", rows })).toEqual({ inserted: 50, linked: 50 });
    const r2 = await newRequest();
    const more = [...rows.slice(0, 10), { name: "q", version: "2.0.0", integrity: null, resolved: null }];
    expect(await enqueuePackages(t.db, { requestId: r2, actor: "bob", rows: more })).toEqual({ inserted: 1, linked: 11 });
    expect(await t.db.package.count()).toBe(51);
    expect(await t.db.packageEvent.count({ where: { fromStatus: null, toStatus: "requested" } })).toBe(51);
  });

  it("claims with a lease, refuses a completion with the wrong token, applies the right one", async () => {
    const claimed = await claim(t.db, { ...stages, limit: 5, worker: "w1" });
    expect(claimed).toHaveLength(5);
    expect(claimed.every((r) => r.status === "checking_licence" && r.from_status === "requested")).toBe(true);
    const [a, b] = claimed;
    const wrong = await complete(t.db, "w1", [
      { id: a!.id, token: "00000000-0000-0000-0000-000000000000", from: "checking_licence", to: "licence_checked", attempts: 0, eventReason: "x" },
    ]);
    expect(wrong.size).toBe(0);
    const ok = await complete(t.db, "w1", [
      { id: a!.id, token: a!.lease_token, from: "checking_licence", to: "licence_checked", attempts: 0, eventReason: "done", patch: { licence: { id: "MIT" } } },
      { id: b!.id, token: b!.lease_token, from: "checking_licence", to: "requested", attempts: 1, delaySeconds: 60, errorCode: "upstream_error", errorMessage: "500", eventReason: "retry" },
    ]);
    expect(ok).toEqual(new Set([a!.id, b!.id]));
    const rowA = await t.db.package.findUniqueOrThrow({ where: { id: a!.id } });
    expect(rowA.status).toBe("licence_checked");
    expect(rowA.leaseToken).toBeNull();
    expect(rowA.results).toEqual({ licence: { id: "MIT" } });
    const rowB = await t.db.package.findUniqueOrThrow({ where: { id: b!.id } });
    expect(rowB.status).toBe("requested");
    expect(rowB.attempts).toBe(1);
    expect(rowB.nextAttemptAt.getTime()).toBeGreaterThan(Date.now() + 50_000);
    // the same completion again is refused: the lease is gone
    const again = await complete(t.db, "w1", [
      { id: a!.id, token: a!.lease_token, from: "checking_licence", to: "licence_checked", attempts: 0, eventReason: "done" },
    ]);
    expect(again.size).toBe(0);
    // heartbeat: only live leases answer
    const rest = claimed.slice(2);
    const alive = await heartbeat(t.db, [...rest.map((r) => ({ id: r.id, token: r.lease_token })), { id: a!.id, token: a!.lease_token }]);
    expect(alive).toEqual(new Set(rest.map((r) => r.id)));
    // release puts them back without charging an attempt
    expect(await release(t.db, { worker: "w1", leases: rest.map((r) => ({ id: r.id, token: r.lease_token })), ...stages })).toBe(3);
    const released = await t.db.package.findMany({ where: { id: { in: rest.map((r) => r.id) } } });
    expect(released.every((r) => r.status === "requested" && r.attempts === 0 && r.leaseToken === null)).toBe(true);
  });

  it("does not give a row to two claimers", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claim(t.db, { ...stages, limit: 10, worker: `w${i}` })));
    const ids = results.flat().map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("takes over expired leases with a fresh lease, fails rows whose attempts are used up, and refuses the old lease", async () => {
    await enqueue("to-", 4);
    const held = await claim(t.db, { ...stages, limit: 4, worker: "dead" });
    expect(held).toHaveLength(4);
    const ids = held.map((r) => r.id);
    const take = (worker: string) =>
      takeOver(t.db, { active: [...ACTIVE_STATUSES], limit: 1000, worker, stuckSeconds: 60, maxAttempts: 5 });
    // a claim sets next_attempt_at to the claim time; nothing has expired yet
    const claimedRow = await t.db.package.findUniqueOrThrow({ where: { id: ids[0]! } });
    expect(Math.abs(claimedRow.nextAttemptAt.getTime() - claimedRow.heartbeatAt!.getTime())).toBeLessThan(1);
    expect(await take("w2")).toEqual([]);
    // the dead worker's leases age; one row has used up its attempts; one was claimed long ago but still heartbeats
    await t.db.$executeRaw`UPDATE package SET heartbeat_at = now() - interval '1 hour', next_attempt_at = now() - interval '1 hour'
      WHERE id = ANY(${ids.slice(0, 3)}::int[])`;
    await t.db.$executeRaw`UPDATE package SET attempts = 4 WHERE id = ${ids[0]!}::int`;
    await t.db.$executeRaw`UPDATE package SET next_attempt_at = now() - interval '1 hour' WHERE id = ${ids[3]!}::int`;
    const taken = await take("w2");
    expect(taken.map((r) => r.id).sort()).toEqual(ids.slice(0, 3).sort());
    expect(taken.every((r) => r.previous_owner === "dead" && r.from_status === "checking_licence")).toBe(true);
    const failed = taken.find((r) => r.id === ids[0]);
    expect(failed).toMatchObject({ status: "failed", attempts: 5, lease_token: null });
    const live = taken.filter((r) => r.id !== ids[0]);
    expect(live.every((r) => r.status === "checking_licence" && r.attempts === 1 && r.lease_token !== null)).toBe(true);
    expect(live.every((r) => r.lease_token !== held.find((h) => h.id === r.id)!.lease_token)).toBe(true);
    const rows = await t.db.package.findMany({ where: { id: { in: ids } }, orderBy: { id: "asc" } });
    expect(rows.map((r) => [r.status, r.leaseOwner, r.lastErrorCode])).toEqual([
      ["failed", null, "lease_expired"],
      ["checking_licence", "w2", "lease_expired"],
      ["checking_licence", "w2", "lease_expired"],
      ["checking_licence", "dead", null], // heartbeating: not expired, however long ago it was claimed
    ]);
    expect(rows[1]!.lastErrorMessage).toBe("no heartbeat from dead for 60 s while checking_licence");
    // one event per moved row, by the worker that took it over
    const events = await t.db.packageEvent.findMany({ where: { packageId: { in: ids.slice(0, 3) }, actor: "w2" }, orderBy: { packageId: "asc" } });
    expect(events.map((e) => [e.packageId, e.fromStatus, e.toStatus, e.reason])).toEqual([
      [ids[0], "checking_licence", "failed", "stuck: no heartbeat; retries used up"],
      [ids[1], "checking_licence", "checking_licence", "stuck: no heartbeat; lease taken over"],
      [ids[2], "checking_licence", "checking_licence", "stuck: no heartbeat; lease taken over"],
    ]);
    expect(events[1]!.details).toEqual({ lease_owner: "dead", attempts: 1 });
    // the dead worker's late completion and heartbeat are refused; the new holder's go through
    const late = await complete(t.db, "dead", [
      { id: ids[1]!, token: held[1]!.lease_token, from: "checking_licence", to: "licence_checked", attempts: 0, eventReason: "late" },
    ]);
    expect(late.size).toBe(0);
    expect(await heartbeat(t.db, [{ id: ids[1]!, token: held[1]!.lease_token }])).toEqual(new Set());
    const newToken = live.find((r) => r.id === ids[1])!.lease_token;
    expect(await complete(t.db, "w2", [{ id: ids[1]!, token: newToken, from: "checking_licence", to: "licence_checked", attempts: 1, eventReason: "done" }])).toEqual(
      new Set([ids[1]]),
    );
    // nothing left to take over
    expect(await take("w3")).toEqual([]);
    // retry brings the failed row back
    expect(await retryFailed(t.db, { packageIds: [ids[0]!] }, "admin")).toBe(1);
    const retried = await t.db.package.findUniqueOrThrow({ where: { id: ids[0]! } });
    expect(retried.status).toBe("requested");
    expect(retried.attempts).toBe(0);
  });

  it("does not give an expired row to two workers taking over at once", async () => {
    await enqueue("race-", 20);
    const held = await claim(t.db, { ...stages, limit: 20, worker: "dead" });
    expect(held).toHaveLength(20);
    await t.db.$executeRaw`UPDATE package SET heartbeat_at = now() - interval '1 hour', next_attempt_at = now() - interval '1 hour'
      WHERE id = ANY(${held.map((r) => r.id)}::int[])`;
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        takeOver(t.db, { ...stages, limit: 5, worker: `w${i}`, stuckSeconds: 60, maxAttempts: 5 }),
      ),
    );
    const ids = results.flat().map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(await t.db.packageEvent.count({ where: { packageId: { in: held.map((r) => r.id) }, reason: "stuck: no heartbeat; lease taken over" } })).toBe(ids.length);
  });

  it("puts a dead worker's rows back to their queue with an attempt charged, and fails the ones out of attempts", async () => {
    await enqueue("dead-", 3);
    const gone = await claim(t.db, { ...stages, limit: 2, worker: "w-gone" });
    const alive = await claim(t.db, { ...stages, limit: 1, worker: "w-alive" });
    expect([gone.length, alive.length]).toEqual([2, 1]);
    await t.db.$executeRaw`UPDATE package SET attempts = 4 WHERE id = ${gone[0]!.id}::int`;
    const n = await requeueDeadWorker(t.db, {
      owner: "w-gone",
      actor: "supervisor",
      reason: "worker w-gone exited (SIGKILL) mid-step",
      queued: [...QUEUED_STATUSES],
      active: [...ACTIVE_STATUSES],
      maxAttempts: 5,
    });
    expect(n).toBe(2);
    const rows = await t.db.package.findMany({ where: { id: { in: [...gone, ...alive].map((r) => r.id) } }, orderBy: { id: "asc" } });
    const by = new Map(rows.map((r) => [r.id, [r.status, r.attempts, r.leaseOwner, r.lastErrorCode]]));
    expect(by.get(gone[0]!.id)).toEqual(["failed", 5, null, "worker_exited"]);
    expect(by.get(gone[1]!.id)).toEqual(["requested", 1, null, "worker_exited"]);
    expect(by.get(alive[0]!.id)).toEqual(["checking_licence", 0, "w-alive", null]); // another worker's lease: untouched
    const events = await t.db.packageEvent.findMany({ where: { actor: "supervisor", packageId: { in: gone.map((r) => r.id) } }, orderBy: { packageId: "asc" } });
    expect(events.map((e) => [e.fromStatus, e.toStatus, e.reason])).toEqual([
      ["checking_licence", "failed", "worker w-gone exited (SIGKILL) mid-step"],
      ["checking_licence", "requested", "worker w-gone exited (SIGKILL) mid-step"],
    ]);
    // the dead worker's late completion is refused
    expect((await complete(t.db, "w-gone", [{ id: gone[1]!.id, token: gone[1]!.lease_token, from: "checking_licence", to: "licence_checked", attempts: 0, eventReason: "late" }])).size).toBe(0);
    expect(await requeueDeadWorker(t.db, { owner: "w-gone", actor: "supervisor", reason: "again", queued: [...QUEUED_STATUSES], active: [...ACTIVE_STATUSES], maxAttempts: 5 })).toBe(0);
    await release(t.db, { worker: "w-alive", leases: alive.map((r) => ({ id: r.id, token: r.lease_token })), ...stages });
  });

  it("requeues every in-progress row at start, without charging an attempt", async () => {
    await enqueue("orphan-", 3);
    const claimed = await claim(t.db, { ...stages, limit: 3, worker: "gone" });
    expect(claimed.length).toBeGreaterThan(0);
    const n = await requeueOrphans(t.db, { actor: "start", queued: [...QUEUED_STATUSES], active: [...ACTIVE_STATUSES] });
    expect(n).toBe(await t.db.packageEvent.count({ where: { actor: "start" } }));
    expect(n).toBeGreaterThanOrEqual(claimed.length);
    expect(await t.db.package.count({ where: { status: { in: [...ACTIVE_STATUSES] } } })).toBe(0);
    const rows = await t.db.package.findMany({ where: { id: { in: claimed.map((c) => c.id) } } });
    expect(rows.every((r) => r.status === "requested" && r.leaseToken === null && r.attempts === claimed.find((c) => c.id === r.id)!.attempts)).toBe(true);
  });
});
