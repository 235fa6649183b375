import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claim, complete, enqueuePackages, heartbeat, release, requeueOrphans, resetStuck, retryFailed } from "../src/queue/sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "../src/queue/states.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => t?.drop());

const stages = { queued: ["requested" as const], active: ["checking_licence" as const] };

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

  it("resets stuck rows to their queue, and to failed once attempts are used up", async () => {
    await t.db.$executeRaw`UPDATE package SET heartbeat_at = now() - interval '1 hour' WHERE status = 'checking_licence'`;
    const stuck = await t.db.package.findMany({ where: { status: "checking_licence" } });
    expect(stuck.length).toBeGreaterThan(0);
    await t.db.package.update({ where: { id: stuck[0]!.id }, data: { attempts: 4 } });
    const reset = await resetStuck(t.db, { stuckSeconds: 60, maxAttempts: 5, limit: 1000, queued: [...QUEUED_STATUSES], active: [...ACTIVE_STATUSES] });
    expect(reset.reduce((n, g) => n + g.n, 0)).toBe(stuck.length);
    expect(reset.flatMap((g) => g.sample_ids).sort()).toEqual(stuck.map((r) => r.id).sort());
    const first = await t.db.package.findUniqueOrThrow({ where: { id: stuck[0]!.id } });
    expect(first.status).toBe("failed");
    expect(first.lastErrorCode).toBe("lease_expired");
    const others = await t.db.package.findMany({ where: { id: { in: stuck.slice(1).map((s) => s.id) } } });
    expect(others.every((r) => r.status === "requested" && r.attempts === 1)).toBe(true);
    // retry brings failed rows back
    expect(await retryFailed(t.db, { packageIds: [stuck[0]!.id] }, "admin")).toBe(1);
    const retried = await t.db.package.findUniqueOrThrow({ where: { id: stuck[0]!.id } });
    expect(retried.status).toBe("requested");
    expect(retried.attempts).toBe(0);
  });

  it("requeues every in-progress row at start, without charging an attempt", async () => {
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
