import { startBenchDatabase, pgClient } from "./lib.ts";
const db = await startBenchDatabase();
try {
  const c = await pgClient(db.url);
  await c.query("CREATE TABLE t (id int)");
  let t = performance.now();
  for (let i = 0; i < 300; i++) await c.query("INSERT INTO t VALUES ($1)", [i]);
  console.log("commit ms", (performance.now() - t) / 300);
  await c.query("SET synchronous_commit = off");
  t = performance.now();
  for (let i = 0; i < 300; i++) await c.query("INSERT INTO t VALUES ($1)", [i]);
  console.log("async commit ms", (performance.now() - t) / 300);
  t = performance.now();
  for (let i = 0; i < 300; i++) await c.query("SELECT 1");
  console.log("select ms", (performance.now() - t) / 300);
  await c.end();
} finally { await db.stop(); }
