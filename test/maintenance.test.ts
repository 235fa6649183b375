/**
 * The API process's periodic maintenance (src/maintenance/scheduler.ts): the stuck-row rescuer and the
 * audit sealer on their node-cron schedules, one run at a time across processes, idle workers woken
 * after a reset, and invalid schedules refused before anything runs.
 */
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { createMaintenance, type Maintenance } from "../src/maintenance/scheduler.ts";
import { createMetricsRegistry } from "../src/metrics/registry.ts";
import { WORK_CHANNEL } from "../src/queue/sql.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { waitFor } from "./support/worker.ts";

const log = createLogger("test-maintenance", "silent");
const env = (extra: Record<string, string> = {}) => loadConfig({ NODE_ENV: "test", STUCK_AFTER_MINUTES: "1", ...extra });

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

  const stuck = async (name: string, minutesAgo: number) => {
    const rows = await t.db.$queryRaw<{ id: number }[]>`
      INSERT INTO package (name, version, status, lease_owner, lease_token, heartbeat_at)
      VALUES (${name}, '1.0.0', 'downloading', 'dead-worker', gen_random_uuid(), now() - make_interval(mins => ${minutesAgo}::int))
      RETURNING id`;
    return rows[0]!.id;
  };

  it("refuses an invalid schedule before anything runs", () => {
    expect(() => createMaintenance({ config: env({ STUCK_CHECK_CRON: "every minute" }), db: t.db, log })).toThrow(/STUCK_CHECK_CRON is not a valid cron expression/);
    expect(() => createMaintenance({ config: env({ AUDIT_SEAL_CRON: "61 * * * *" }), db: t.db, log })).toThrow(/AUDIT_SEAL_CRON is not a valid cron expression/);
  });

  it("rescue() resets only rows past STUCK_AFTER_MINUTES, counts them, and wakes the workers", async () => {
    const old = await stuck("mt-old", 5);
    const fresh = await stuck("mt-fresh", 0);
    const listener = new pg.Client({ connectionString: t.url });
    await listener.connect();
    const woken: string[] = [];
    listener.on("notification", (n) => woken.push(n.channel));
    await listener.query(`LISTEN ${WORK_CHANNEL}`);
    try {
      const registry = createMetricsRegistry({ defaults: false });
      const m = createMaintenance({ config: env(), db: t.db, log, metricsRegistry: registry });
      expect(await m.rescue()).toBe(1);
      const rows = await t.db.package.findMany({ where: { id: { in: [old, fresh] } }, orderBy: { id: "asc" } });
      expect(rows.map((r) => [r.status, r.leaseOwner])).toEqual([
        ["licence_checked", null],
        ["downloading", "dead-worker"],
      ]);
      const metric = await registry.getSingleMetric("spm_rescuer_reset_total")!.get();
      expect(metric.values).toEqual([{ labels: { from_status: "downloading" }, value: 1 }]);
      await waitFor(async () => woken.includes(WORK_CHANNEL), 5_000, "NOTIFY on the work channel after a reset");
      expect(await m.rescue()).toBe(0); // nothing left to reset
    } finally {
      await listener.end();
    }
  });

  it("runs both tasks on their schedules, and two processes' runs never do the same work twice", async () => {
    const id = await stuck("mt-scheduled", 5);
    const config = env({ STUCK_CHECK_CRON: "* * * * * *", AUDIT_SEAL_CRON: "* * * * * *" });
    running = [createMaintenance({ config, db: t.db, log }), createMaintenance({ config, db: t.db, log })];
    for (const m of running) m.start();
    await waitFor(async () => (await t.db.package.findUniqueOrThrow({ where: { id } })).status === "licence_checked", 10_000, "scheduled rescue");
    await waitFor(async () => (await t.db.packageEvent.count({ where: { sealSeq: null } })) === 0, 10_000, "scheduled seal");
    // one reset event for the row, however many processes ran the rescuer
    expect(await t.db.packageEvent.count({ where: { packageId: id, actor: "rescuer" } })).toBe(1);
    const sealed = await t.db.packageEvent.findMany({ orderBy: { sealSeq: "asc" }, select: { sealSeq: true } });
    expect(sealed.map((e) => Number(e.sealSeq))).toEqual(sealed.map((_, i) => i + 1));
  });

  it("stop() unschedules and waits for a run in progress", async () => {
    const m = createMaintenance({ config: env({ STUCK_CHECK_CRON: "* * * * * *" }), db: t.db, log });
    m.start();
    await m.stop();
    const id = await stuck("mt-after-stop", 5);
    await new Promise((r) => setTimeout(r, 2_200));
    expect((await t.db.package.findUniqueOrThrow({ where: { id } })).status).toBe("downloading");
  });
});
