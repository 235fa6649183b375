/**
 * drain-worker.ts mode `worker`: the real worker process, as worker/main.ts assembles it (createWorker:
 * its configuration, Prisma client and pool, runner (with its expired-lease checks), LISTEN connection,
 * liveness row, Prometheus registry, /health and /metrics server), with one
 * change: its steps are no-ops, so no upstream registry is needed. Benchmark 6 (memory.ts) measures this
 * process; drain-run.ts starts it from a bundle built like the production one, with the production node
 * flags (scripts/build-worker.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import type { Completion } from "../../src/queue/sql.ts";
import { STAGES } from "../../src/queue/states.ts";
import { startWorkerHttp } from "../../worker/http.ts";
import { createWorker } from "../../worker/worker.ts";
import type { DrainWorkerOptions } from "./drain-worker.ts";

export async function realWorker(opts: DrainWorkerOptions, completed: (n: number) => void): Promise<{ start(): Promise<void>; stop(): Promise<void> }> {
  const storage = mkdtempSync(join(tmpdir(), "spm-bench-store-"));
  const config = loadConfig({
    ...process.env,
    DATABASE_URL: opts.url,
    WORKER_CONCURRENCY: String(opts.concurrency),
    WORKER_MAX_PACKAGES_PER_CYCLE: String(opts.batch),
    WORKER_SLEEP_INTERVAL: "1",
    WORKER_METRICS_PORT: "0",
    WORKER_ID: `bench-${process.pid}`,
    STORAGE_DIR: storage,
  });
  const log = createLogger("worker", config.LOG_LEVEL);
  const noop = async () => ({ kind: "advance" as const });
  const stageStates = opts.stages === 3 ? [...STAGES].reverse() : [STAGES[0]!];
  const finalStatus = opts.stages === 3 ? "pending_approval" : "licence_checked";
  const worker = createWorker(
    config,
    opts.url,
    log,
    { applied: (cs: Completion[]) => completed(cs.filter((c) => c.to === finalStatus).length) },
    { stages: stageStates.map((states) => ({ states, step: noop })) },
  );
  const http = await startWorkerHttp(worker, config, log);
  // Connected before `go`, as the other modes are (the first query also loads Prisma's query compiler).
  await worker.db.$queryRaw`SELECT 1`;
  return {
    async start() {
      await worker.start();
    },
    async stop() {
      await worker.stop();
      await http.close();
      rmSync(storage, { recursive: true, force: true });
    },
  };
}
