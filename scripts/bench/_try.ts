import { startBenchDatabase } from "./lib.ts";
import { prepareGraphile, runDrain } from "./drain-run.ts";
const db = await startBenchDatabase();
await prepareGraphile(db.url);
const rows = Number(process.env.ROWS ?? 5000);
try {
  for (const [mode, batch, conc] of JSON.parse(process.env.CFG!) as [any, number, number][]) {
    const r = await runDrain(db.url, { mode, batch, concurrency: conc, procs: Number(process.env.PROCS ?? 1), rows });
    console.log(mode, batch, conc, Math.round(r.jobsPerSec), Math.round(r.ms));
  }
} finally { await db.stop(); }
