import { afterAll, beforeAll, expect, it } from "vitest";
import { sealBatch, trySealerLock } from "../src/audit/sealer.ts";
import { enqueuePackages } from "../src/queue/sql.ts";
import { createTestDatabase, type TestDatabase } from "../test/support/db.ts";
let t: TestDatabase;
beforeAll(async () => { t = await createTestDatabase(); });
afterAll(async () => t?.drop());
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
it("dup", async () => {
  const requests = await Promise.all(range(6).map(async () => (await t.db.request.create({ data: { uploadedByName: "t", lockfileSha256: "x", lockfileVersion: 3, total: 0, newCount: 0, existingCount: 0 } })).id));
  const loop = async () => {
    for (let i = 0; i < 30; i++) {
      const r = await t.db.$transaction(async (tx) => {
        if (!(await trySealerLock(tx))) return null;
        const before = await tx.$queryRaw<unknown[]>`SELECT seal_seq::text AS s, id::text AS id, txid_current()::text AS x, pg_backend_pid() AS pid FROM package_event WHERE seal_seq IS NOT NULL ORDER BY seal_seq DESC LIMIT 1`;
        const cnt = await tx.$queryRaw<unknown[]>`SELECT count(*)::int AS n, max(seal_seq)::text AS m FROM package_event WHERE seal_seq IS NOT NULL`;
        console.log("batch", i, JSON.stringify(before), JSON.stringify(cnt));
        try { return await sealBatch(tx, 7); } catch (e) { console.log("ERR", String(e).slice(-200)); throw e; }
      });
      console.log("result", JSON.stringify(r));
      if (!r || r.sealed < 7) break;
    }
  };
  await Promise.allSettled([
    ...requests.map((requestId, i) => t.db.$transaction((tx) => enqueuePackages(tx, { requestId, actor: `u${i}`, rows: range(30).map((j) => ({ name: `pkg-${(i * 10 + j) % 80}`, version: "1.0.0", integrity: null, resolved: null })) }))),
    loop(),
  ]);
  expect(1).toBe(1);
});
