import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.ts";
import { defaultClaimsInFlight, QueueRunner } from "../src/queue/runner.ts";
import { STAGES } from "../src/queue/states.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { waitFor } from "./support/worker.ts";

describe("claims in flight", () => {
  it("keeps about 100 rows being claimed at once, 1 to 4 claims, never more than the step slots take", () => {
    expect(defaultClaimsInFlight(8, 5)).toBe(1); // the defaults: 8 slots take one claim of 5
    expect(defaultClaimsInFlight(100, 10)).toBe(4);
    expect(defaultClaimsInFlight(1000, 50)).toBe(2);
    expect(defaultClaimsInFlight(1000, 100)).toBe(1);
    expect(defaultClaimsInFlight(5000, 500)).toBe(1);
    expect(defaultClaimsInFlight(10, 1)).toBe(4);
    expect(defaultClaimsInFlight(2, 1)).toBe(2);
    expect(defaultClaimsInFlight(1, 10)).toBe(1);
  });
});

describe("QueueRunner and expired leases", () => {
  let t: TestDatabase;
  let runner: QueueRunner | undefined;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => runner?.stop(1_000));
  afterAll(async () => t?.drop());

  /** `n` rows in checking_licence whose worker died an hour ago (claimed then, no heartbeat since). */
  const expired = (prefix: string, n: number, attempts = 0) => t.db.$executeRaw`
    INSERT INTO package (name, version, status, attempts, lease_owner, lease_token, heartbeat_at, next_attempt_at)
    SELECT ${prefix} || g, '1.0.0', 'checking_licence', ${attempts}::int, 'dead', gen_random_uuid(), now() - interval '1 hour', now() - interval '1 hour'
    FROM generate_series(1, ${n}::int) g`;

  it("takes expired leases over at start, batch after batch, runs them once, fails the ones out of attempts, and looks again later", async () => {
    await expired("exp-a-", 25);
    await expired("exp-last-", 1, 2); // its third attempt: out of attempts (MAX 3)
    const ran: string[] = [];
    runner = new QueueRunner({
      sql: t.db,
      log: createLogger("test-runner", "silent"),
      workerId: "heir",
      stages: [{ states: STAGES[0]!, step: async (row) => (ran.push(row.name), { kind: "advance" }) }],
      concurrency: 100,
      batchSize: 10,
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      stuckSeconds: 60,
      takeoverCheckMs: 500,
      maxAttempts: 3,
      retryBaseSeconds: 1,
      retryMaxSeconds: 1,
      context: (_row, base) => base,
    });
    runner.start();
    // 26 expired rows, batches of 10: the looks follow each other without waiting for the next check
    await waitFor(async () => (await t.db.package.count({ where: { status: "licence_checked" } })) === 25, 5_000, "25 rows taken over and done");
    expect(ran.sort()).toEqual(Array.from({ length: 25 }, (_, i) => `exp-a-${i + 1}`).sort());
    const last = await t.db.package.findFirstOrThrow({ where: { name: "exp-last-1" } });
    expect([last.status, last.attempts, last.leaseToken, last.lastErrorCode]).toEqual(["failed", 3, null, "lease_expired"]);
    expect(await t.db.packageEvent.count({ where: { actor: "heir", reason: "stuck: no heartbeat; lease taken over" } })).toBe(25);
    expect(await t.db.packageEvent.count({ where: { actor: "heir", reason: "stuck: no heartbeat; retries used up", toStatus: "failed" } })).toBe(1);

    // a lease that expires while the runner is idle is taken over at the next check
    await expired("exp-b-", 1);
    await waitFor(async () => ran.includes("exp-b-1"), 5_000, "a later expired lease taken over");
    expect(ran.filter((n) => n.startsWith("exp-")).length).toBe(26);
  });
});
