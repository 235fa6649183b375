import { startBenchDatabase, pgClient, seedPackages, settle } from "./lib.ts";
import { createDb } from "../../src/db/client.ts";
import { claim } from "../../src/queue/sql.ts";
const db = await startBenchDatabase();
try {
  const c = await pgClient(db.url);
  await seedPackages(c, 20000); await settle(c);
  const prisma = createDb(db.url, 10);
  await prisma.$queryRaw`SELECT 1`;
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
  for (const sc of ["on", "off"]) {
    await c.query(`SET synchronous_commit = ${sc}`);
    let t = performance.now();
    for (let i = 0; i < 50; i++) await c.query(ourClaim, [["requested"], ["checking_licence"], 10, "w"]);
    console.log(sc, "our claim via pg", (performance.now() - t) / 50);
    t = performance.now();
    for (let i = 0; i < 50; i++) await c.query(`UPDATE package p SET status = 'checking_licence', lease_token = gen_random_uuid(), heartbeat_at = now()
         FROM (SELECT id FROM package WHERE status = 'requested' AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) c WHERE p.id = c.id RETURNING p.id`, [10]);
    console.log(sc, "raw claim", (performance.now() - t) / 50);
  }
  let t = performance.now();
  for (let i = 0; i < 50; i++) await claim(prisma, { queued: ["requested"], active: ["checking_licence"], limit: 10, worker: "w" });
  console.log("our claim via prisma", (performance.now() - t) / 50);
  const r = await c.query("EXPLAIN (ANALYZE, BUFFERS) " + ourClaim, [["requested"], ["checking_licence"], 10, "w"]);
  console.log(r.rows.map((x: any) => x["QUERY PLAN"]).join("\n"));
  await prisma.$disconnect(); await c.end();
} finally { await db.stop(); }
