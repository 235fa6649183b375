/**
 * Benchmark 5 — stuck rows. 100,000 rows (× BENCH_SCALE) in progress whose worker died two hours ago
 * (claimed then, no heartbeat since), spread over the three active statuses, beside 20,000 queued rows
 * that a claim loop (the project's `claim`, 10 rows at a time, as a worker would) keeps taking.
 *
 * The project has no reset pass: an expired lease is taken over by the next claim (`takeOver`, one
 * write per row: fresh lease, attempts + 1, one event). So the rows can be claimed again the moment
 * their lease expires, and what a crash costs is the takeover claims themselves. Measured:
 * - time until the stuck rows can be claimed again: the first takeover claim, against the reset pass a
 *   rescuer design must finish first (one raw UPDATE of every stuck row back to its queue);
 * - taking over all of them (claims of 100) against claiming as many queued rows (claims of 100, the
 *   same rows after that raw reset): the takeover's extra cost per row (its event);
 * - the same against the reset pass + those claims: the two writes per row a rescuer design costs;
 * - the longest claim of the loop beside it, during the takeovers against before them (no stall).
 */
import type pg from "pg";
import { createDb } from "../../src/db/client.ts";
import { claim, takeOver } from "../../src/queue/sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "../../src/queue/states.ts";
import { log, pgClient, resetTables, result, scaled, settle, sleep, type BenchResult } from "./lib.ts";

const BATCH = 100;
const STUCK_SECONDS = 30 * 60;

async function seedStuck(c: pg.Client, n: number): Promise<void> {
  await resetTables(c);
  await c.query(
    `INSERT INTO package (name, version, status, attempts, lease_owner, lease_token, heartbeat_at, next_attempt_at)
     SELECT 'stuck-' || g, '1.0.0', (ARRAY['checking_licence', 'downloading', 'scanning']::package_status[])[1 + g % 3],
            g % 2, 'bench-dead-worker', gen_random_uuid(), now() - interval '2 hours', now() - interval '2 hours'
     FROM generate_series(1, $1::int) g`,
    [n],
  );
  // work for the claim loop: queued rows in the first stage
  await c.query(`INSERT INTO package (name, version, status) SELECT 'live-' || g, '1.0.0', 'requested' FROM generate_series(1, 20000) g`);
  await settle(c);
}

/** Run `fn` until it returns fewer than BATCH rows; returns the rows taken and the first call's time. */
async function drainAll(fn: () => Promise<unknown[]>): Promise<{ rows: number; firstMs: number }> {
  let rows = 0;
  let firstMs = -1;
  for (;;) {
    const t0 = performance.now();
    const got = await fn();
    if (firstMs < 0) firstMs = performance.now() - t0;
    rows += got.length;
    if (got.length < BATCH) return { rows, firstMs };
  }
}

export async function benchStuck(url: string): Promise<BenchResult[]> {
  const n = scaled(100_000, 1_000);
  const c = await pgClient(url);
  const db = createDb(url, 4);
  const claimer = createDb(url, 2);
  const stages = { queued: [...QUEUED_STATUSES], active: [...ACTIVE_STATUSES] };
  try {
    // baseline: a reset pass (one raw UPDATE of every stuck row back to its queue), then the claims
    await seedStuck(c, n);
    let t0 = performance.now();
    const raw = await c.query(
      `UPDATE package SET status = CASE status WHEN 'checking_licence' THEN 'requested'::package_status
                                               WHEN 'downloading' THEN 'licence_checked'::package_status
                                               ELSE 'downloaded'::package_status END,
              attempts = attempts + 1, lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL, next_attempt_at = now()
       WHERE status IN ('checking_licence', 'downloading', 'scanning') AND heartbeat_at < now() - interval '30 minutes'`,
    );
    const rawResetMs = performance.now() - t0;
    if (raw.rowCount !== n) throw new Error(`raw reset moved ${raw.rowCount} rows, expected ${n}`);
    // claim them (the claim loop's live rows are in the first queue too: claim the later stages' first,
    // then the rest, until n rows are claimed)
    t0 = performance.now();
    let claimed = 0;
    const order = [stages.queued.slice().reverse(), stages.active.slice().reverse()] as const;
    for (;;) {
      const got = await claim(db, { queued: order[0], active: order[1], limit: Math.min(BATCH, n - claimed), worker: "bench-claimer" });
      claimed += got.length;
      if (claimed >= n || got.length === 0) break;
    }
    const claimAllMs = performance.now() - t0;
    if (claimed !== n) throw new Error(`claimed ${claimed} reset rows, expected ${n}`);

    // ours: takeover claims, with the claim loop running on the side
    await seedStuck(c, n);
    await claimer.$queryRaw`SELECT 1`;
    await db.$queryRaw`SELECT 1`;
    const claims: { start: number; ms: number }[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const s = performance.now();
        await claim(claimer, { queued: ["requested"], active: ["checking_licence"], limit: 10, worker: "bench-claim-loop" });
        claims.push({ start: s, ms: performance.now() - s });
        await sleep(5);
      }
    })();
    await sleep(1_000);
    t0 = performance.now();
    const taken = await drainAll(() =>
      takeOver(db, { active: stages.active, limit: BATCH, worker: "bench-worker", stuckSeconds: STUCK_SECONDS, maxAttempts: 5 }),
    );
    const t1 = performance.now();
    await sleep(300);
    stop = true;
    await loop;
    const takeAllMs = t1 - t0;
    if (taken.rows !== n) throw new Error(`takeOver took ${taken.rows} rows, expected ${n}`);
    const { rows } = await c.query<{ n: number; events: number }>(
      `SELECT count(*)::int AS n, (SELECT count(*)::int FROM package_event WHERE actor = 'bench-worker') AS events
       FROM package WHERE name LIKE 'stuck-%' AND lease_owner = 'bench-worker' AND attempts >= 1`,
    );
    if (rows[0]!.n !== n || rows[0]!.events !== n) throw new Error(`${rows[0]!.n} rows / ${rows[0]!.events} events taken over, expected ${n}`);
    const before = claims.filter((x) => x.start + x.ms < t0);
    const during = claims.filter((x) => x.start < t1 && x.start + x.ms > t0);
    const maxBefore = Math.max(...before.map((x) => x.ms));
    const maxDuring = Math.max(...during.map((x) => x.ms));
    log(
      `  stuck: first takeover claim ${taken.firstMs.toFixed(1)} ms (raw reset UPDATE of all ${n} rows ${Math.round(rawResetMs)} ms); ` +
        `takeover of all in claims of ${BATCH}: ${Math.round(takeAllMs)} ms (claiming them after the raw reset: ${Math.round(claimAllMs)} ms); ` +
        `claims during the takeovers: ${during.length}, max ${maxDuring.toFixed(1)} ms (before: ${before.length}, max ${maxBefore.toFixed(1)} ms)`,
    );
    const label = `${n.toLocaleString("en-US")} stuck rows`;
    return [
      result(`stuck reset of ${label}: time until they can be claimed again (first takeover claim) vs a reset pass (one raw UPDATE)`, taken.firstMs, "ms", {
        baseline: rawResetMs,
        goal: "< 1000 ms",
        met: taken.firstMs < 1000,
      }),
      result(`stuck rows: taking over ${label} (claims of ${BATCH}) vs claiming them as queued rows`, takeAllMs, "ms", { baseline: claimAllMs }),
      result(`stuck rows: taking over ${label} vs reset pass + claims (a rescuer's two writes per row)`, takeAllMs, "ms", { baseline: rawResetMs + claimAllMs }),
      result(`max claim latency while ${label} are taken over vs before`, maxDuring, "ms", {
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
