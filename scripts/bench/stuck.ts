/**
 * Benchmark 5 — stuck reset. 100,000 rows (× BENCH_SCALE) in progress whose heartbeat is 2 h old
 * (their worker died), spread over the three active statuses; `rescueStuck` (src/queue/rescuer.ts)
 * resets them all. Meanwhile a claim loop (the project's `claim`, 10 rows at a time, as a worker
 * would) runs on other queued rows; we report the longest claim during the reset, against the longest
 * claim in the same loop before the reset started.
 * Baselines: one raw UPDATE of the same rows back to their queues (no events, no batching); and that
 * UPDATE plus one raw INSERT of the same event rows (the same writes, in two statements).
 */
import type pg from "pg";
import { createDb } from "../../src/db/client.ts";
import { rescueStuck } from "../../src/queue/rescuer.ts";
import { claim } from "../../src/queue/sql.ts";
import { QUEUED_STATUSES } from "../../src/queue/states.ts";
import { log, pgClient, resetTables, result, scaled, settle, sleep, type BenchResult } from "./lib.ts";

async function seedStuck(c: pg.Client, n: number): Promise<void> {
  await resetTables(c);
  await c.query(
    `INSERT INTO package (name, version, status, attempts, lease_owner, lease_token, heartbeat_at)
     SELECT 'stuck-' || g, '1.0.0', (ARRAY['checking_licence', 'downloading', 'scanning']::package_status[])[1 + g % 3],
            g % 2, 'bench-dead-worker', gen_random_uuid(), now() - interval '2 hours'
     FROM generate_series(1, $1::int) g`,
    [n],
  );
  // work for the claim loop: queued rows in the first stage
  await c.query(`INSERT INTO package (name, version, status) SELECT 'live-' || g, '1.0.0', 'requested' FROM generate_series(1, 20000) g`);
  await settle(c);
}

export async function benchStuck(url: string): Promise<BenchResult[]> {
  const n = scaled(100_000, 1_000);
  const c = await pgClient(url);
  const db = createDb(url, 4);
  const claimer = createDb(url, 2);
  try {
    // baseline: one raw UPDATE of every stuck row back to its queue
    await seedStuck(c, n);
    let t0 = performance.now();
    const raw = await c.query(
      `UPDATE package SET status = CASE status WHEN 'checking_licence' THEN 'requested'::package_status
                                               WHEN 'downloading' THEN 'licence_checked'::package_status
                                               ELSE 'downloaded'::package_status END,
              attempts = attempts + 1, lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL, next_attempt_at = now()
       WHERE status IN ('checking_licence', 'downloading', 'scanning') AND heartbeat_at < now() - interval '30 minutes'`,
    );
    const rawMs = performance.now() - t0;
    if (raw.rowCount !== n) throw new Error(`raw reset moved ${raw.rowCount} rows, expected ${n}`);
    // … and the same event rows the rescuer writes (one per reset row), as one raw INSERT
    t0 = performance.now();
    await c.query(
      `INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
       SELECT id, 'downloading', status, 'rescuer', 'stuck: no heartbeat', jsonb_build_object('lease_owner', 'bench-dead-worker')
       FROM package WHERE name LIKE 'stuck-%'`,
    );
    const rawEventsMs = performance.now() - t0;

    // ours, with a claim loop running on the side
    await seedStuck(c, n);
    await claimer.$queryRaw`SELECT 1`;
    const claims: { start: number; ms: number }[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const s = performance.now();
        await claim(claimer, { queued: ["requested"], active: ["checking_licence"], limit: 10, worker: "bench-claimer" });
        claims.push({ start: s, ms: performance.now() - s });
        await sleep(5);
      }
    })();
    await sleep(1_000);
    t0 = performance.now();
    const { count: resetCount } = await rescueStuck(db, { stuckAfterSeconds: 30 * 60, maxAttempts: 5 });
    const t1 = performance.now();
    await sleep(300);
    stop = true;
    await loop;
    const oursMs = t1 - t0;
    if (resetCount !== n) throw new Error(`rescueStuck reset ${resetCount} rows, expected ${n}`);
    const { rows } = await c.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM package WHERE name LIKE 'stuck-%' AND status = ANY($1::package_status[])",
      [[...QUEUED_STATUSES]],
    );
    if (rows[0]!.n !== n) throw new Error(`only ${rows[0]!.n} of ${n} stuck rows are back in a queue`);
    const before = claims.filter((x) => x.start + x.ms < t0);
    const during = claims.filter((x) => x.start < t1 && x.start + x.ms > t0);
    const maxBefore = Math.max(...before.map((x) => x.ms));
    const maxDuring = Math.max(...during.map((x) => x.ms));
    log(
      `  stuck: rescueStuck ${n} rows in ${Math.round(oursMs)} ms (raw UPDATE ${Math.round(rawMs)} ms); ` +
        `+ raw event INSERT ${Math.round(rawEventsMs)} ms; ` +
        `claims during reset: ${during.length}, max ${maxDuring.toFixed(1)} ms (before: ${before.length}, max ${maxBefore.toFixed(1)} ms)`,
    );
    const label = `${n.toLocaleString("en-US")} stuck rows`;
    return [
      result(`stuck reset of ${label}: rescueStuck vs one raw UPDATE`, oursMs, "ms", { baseline: rawMs, goal: "< 1000 ms", met: oursMs < 1000 }),
      result(`stuck reset of ${label}: rescueStuck vs raw UPDATE + raw event INSERT (same writes)`, oursMs, "ms", { baseline: rawMs + rawEventsMs }),
      result(`max claim latency during the reset of ${label} vs before it`, maxDuring, "ms", {
        baseline: maxBefore,
        goal: "no stall: ≤ 100 ms",
        met: during.length > 0 && maxDuring <= 100,
      }),
    ];
  } finally {
    await db.$disconnect();
    await claimer.$disconnect();
    await c.end();
  }
}
