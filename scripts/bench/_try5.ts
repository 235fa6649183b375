import { startBenchDatabase, pgClient, seedPackages, settle } from "./lib.ts";
import { createDb } from "../../src/db/client.ts";
import { claim } from "../../src/queue/sql.ts";
const db = await startBenchDatabase();
const N = 3000;
const ourClaim = `WITH stages AS (
      SELECT q.status, q.ord FROM unnest($1::package_status[]) WITH ORDINALITY AS q(status, ord)
    ), picked AS (
      SELECT c.id, c.status FROM stages s CROSS JOIN LATERAL (
        SELECT p.id, p.status FROM package p WHERE p.status = s.status AND p.next_attempt_at <= now()
        ORDER BY p.next_attempt_at, p.id LIMIT $3 FOR UPDATE SKIP LOCKED) c
      ORDER BY s.ord LIMIT $3
    ), moved AS (
      UPDATE package p SET status = ($2::package_status[])[array_position($1::package_status[], picked.status)],
        lease_owner = $4, lease_token = gen_random_uuid(), heartbeat_at = now(), updated_at = now()
      FROM picked WHERE p.id = picked.id
      RETURNING p.id, p.name, p.version, p.status, picked.status AS from_status, p.attempts, p.lease_token, p.results
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
      SELECT id, from_status, status, $4, 'claimed' FROM moved
    ) SELECT id FROM moved`;
const rawClaim = `UPDATE package p SET status = 'checking_licence', lease_token = gen_random_uuid(), heartbeat_at = now()
         FROM (SELECT id FROM package WHERE status = 'requested' AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) c WHERE p.id = c.id RETURNING p.id`;
try {
  const c = await pgClient(db.url);
  const prisma = createDb(db.url, 10);
  for (const variant of ["raw", "ourSqlViaPg", "ourViaPrisma", "raw", "ourSqlViaPg", "ourViaPrisma"]) {
    await c.query("TRUNCATE package CASCADE");
    await seedPackages(c, N); await settle(c);
    const clients = await Promise.all(Array.from({ length: 4 }, () => pgClient(db.url)));
    const lat: number[] = [];
    const t0 = performance.now();
    await Promise.all(clients.map(async (k) => {
      for (;;) {
        const t = performance.now();
        let n: number;
        if (variant === "raw") n = (await k.query(rawClaim, [10])).rows.length;
        else if (variant === "ourSqlViaPg") n = (await k.query(ourClaim, [["requested"], ["checking_licence"], 10, "w"])).rows.length;
        else n = (await claim(prisma, { queued: ["requested"], active: ["checking_licence"], limit: 10, worker: "w" })).length;
        lat.push(performance.now() - t);
        if (n === 0) break;
      }
    }));
    const ms = performance.now() - t0;
    console.log(variant, "claims/s rows", Math.round(N / ms * 1000), "avg claim ms", (lat.reduce((a, b) => a + b) / lat.length).toFixed(1));
    await Promise.all(clients.map((k) => k.end()));
  }
  await prisma.$disconnect(); await c.end();
} finally { await db.stop(); }
