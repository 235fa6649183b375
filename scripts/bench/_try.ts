import { startBenchDatabase } from "./lib.ts";
import { prepareGraphile, runDrain } from "./drain-run.ts";
const db = await startBenchDatabase();
console.log(db.settings);
await prepareGraphile(db.url);
try {
  for (const mode of ["raw", "ours", "graphile"] as const) {
    for (const batch of [10, 100]) {
      const conc = mode === "ours" ? 10 : 10;
      const r = await runDrain(db.url, { mode, batch, concurrency: conc, procs: 1, rows: 5000 });
      console.log(mode, batch, Math.round(r.jobsPerSec), Math.round(r.ms));
    }
  }
} finally { await db.stop(); }
