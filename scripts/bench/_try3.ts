import { startBenchDatabase, pgClient, seedPackages, settle } from "./lib.ts";
import { createDb } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { QueueRunner } from "../../src/queue/runner.ts";
import { STAGES } from "../../src/queue/states.ts";
import * as sqlmod from "../../src/queue/sql.ts";
const db = await startBenchDatabase();
const N = 3000;
try {
  const c = await pgClient(db.url);
  await seedPackages(c, N); await settle(c);
  const prisma = createDb(db.url, 10);
  await prisma.$queryRaw`SELECT 1`;
  let conc = 0, maxConc = 0; const durs: Record<string, number[]> = {};
  const wrapped: any = {
    $queryRaw: (...a: any[]) => { const t = performance.now(); conc++; maxConc = Math.max(maxConc, conc); const kind = String(a[0][0]).includes("package_event") && String(a[0].join("")).includes("claimed") ? "claim" : String(a[0].join("")).includes("jsonb_to_recordset") ? "complete" : "other";
      return (prisma.$queryRaw as any)(...a).finally(() => { conc--; (durs[kind] ??= []).push(performance.now() - t); }); },
    $executeRaw: prisma.$executeRaw.bind(prisma),
  };
  const claims: number[] = []; const applies: number[] = [];
  let done = 0;
  const t0 = performance.now();
  let finish: () => void = () => {};
  const fin = new Promise<void>((r) => (finish = r));
  const runner = new QueueRunner({ sql: wrapped, log: createLogger("x", "silent"), workerId: "w", stages: [{ states: STAGES[0]!, step: async () => ({ kind: "advance" }) }],
    concurrency: Number(process.env.C ?? 10), batchSize: Number(process.env.B ?? 10), pollIntervalMs: 1000, heartbeatMs: 30000, maxAttempts: 5, retryBaseSeconds: 2, retryMaxSeconds: 600,
    context: (_r, b) => b, events: { claimed: (r) => claims.push(r.length), applied: (cs) => { applies.push(cs.length); done += cs.length; if (done >= N) finish(); } } });
  runner.start();
  await fin;
  const ms = performance.now() - t0;
  await runner.stop(1000);
  const avg = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
  console.log("rate", Math.round(N / ms * 1000), "claims", claims.length, "avg", (N / claims.length).toFixed(1), "applies", applies.length, "avg", (N / applies.length).toFixed(1), "maxConc", maxConc);
  for (const [k, v] of Object.entries(durs)) console.log(k, v.length, "avg ms", avg(v).toFixed(2), "sum", Math.round(v.reduce((a, b) => a + b, 0)));
  await prisma.$disconnect(); await c.end();
} finally { await db.stop(); }
