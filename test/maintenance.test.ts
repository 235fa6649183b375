/**
 * The API process's periodic maintenance (src/maintenance/scheduler.ts): the audit sealer on its
 * node-cron schedule, one run at a time across processes, and an invalid schedule refused before
 * anything runs. (Stuck rows have no periodic pass: workers take expired leases over; see
 * test/queue-sql.test.ts and test/fault/worker-kill.test.ts.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { createMaintenance, type Maintenance } from "../src/maintenance/scheduler.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { waitFor } from "./support/worker.ts";

const log = createLogger("test-maintenance", "silent");
const env = (extra: Record<string, string> = {}) => loadConfig({ NODE_ENV: "test", ...extra });

describe("maintenance", () => {
  let t: TestDatabase;
  let running: Maintenance[] = [];
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(running.map((m) => m.stop()));
    running = [];
  });
  afterAll(async () => t?.drop());

  const event = async (name: string) => {
    await t.db.$executeRaw`
      WITH p AS (INSERT INTO package (name, version) VALUES (${name}, '1.0.0') RETURNING id)
      INSERT INTO package_event (package_id, to_status, actor, reason) SELECT id, 'requested', 'test', 'created' FROM p`;
  };

  it("refuses an invalid schedule before anything runs", () => {
    expect(() => createMaintenance({ config: env({ AUDIT_SEAL_CRON: "61 * * * *" }), db: t.db, log })).toThrow(/AUDIT_SEAL_CRON is not a valid cron expression/);
  });

  it("runs the sealer on its schedule, and two processes' runs never seal the same event twice", async () => {
    for (let i = 0; i < 50; i++) await event(`mt-${i}`);
    const config = env({ AUDIT_SEAL_CRON: "* * * * * *" });
    running = [createMaintenance({ config, db: t.db, log }), createMaintenance({ config, db: t.db, log })];
    for (const m of running) m.start();
    await waitFor(async () => (await t.db.packageEvent.count({ where: { sealSeq: null } })) === 0, 10_000, "scheduled seal");
    const sealed = await t.db.packageEvent.findMany({ orderBy: { sealSeq: "asc" }, select: { sealSeq: true } });
    expect(sealed.map((e) => Number(e.sealSeq))).toEqual(sealed.map((_, i) => i + 1));
  });

  it("stop() unschedules and waits for a run in progress", async () => {
    const m = createMaintenance({ config: env({ AUDIT_SEAL_CRON: "* * * * * *" }), db: t.db, log });
    m.start();
    await m.stop();
    await event("mt-after-stop");
    await new Promise((r) => setTimeout(r, 2_200));
    expect(await t.db.packageEvent.count({ where: { sealSeq: null } })).toBe(1);
  });
});
