/** Run pipeline workers in-process (or as child processes) against a test database and fixture upstream. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadConfig, type Config } from "../../src/config.ts";
import type { Db } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { createMaintenance, type Maintenance } from "../../src/maintenance/scheduler.ts";
import { createWorker, type Worker } from "../../worker/worker.ts";
import { TEST_JWT_SECRET } from "./app.ts";
import { WORKER_BUNDLE, WORKER_NODE_FLAGS } from "../../scripts/build-worker.ts";

export function workerEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: "test",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    JWT_SECRET: TEST_JWT_SECRET,
    WORKER_SLEEP_INTERVAL: "0.2",
    WORKER_MAX_PACKAGES_PER_CYCLE: "10",
    WORKER_CONCURRENCY: "8",
    RETRY_BASE_SECONDS: "0.05",
    RETRY_MAX_SECONDS: "0.5",
    CIRCUIT_OPEN_SECONDS: "0.5",
    WORKER_GRACE_SECONDS: "5",
    STORAGE_DIR: mkdtempSync(join(tmpdir(), "spm-store-")),
    ...extra,
  };
}

export function startWorker(databaseUrl: string, env: Record<string, string>): { worker: Worker; config: Config } {
  const config = loadConfig(env);
  const worker = createWorker(config, databaseUrl, createLogger("test-worker", config.LOG_LEVEL));
  return { worker, config };
}

/**
 * The periodic maintenance (the audit sealer) as the API process runs it
 * (src/maintenance/scheduler.ts), scheduled with the env's AUDIT_SEAL_CRON.
 */
export function startMaintenance(db: Db, env: Record<string, string>): Maintenance {
  const config = loadConfig(env);
  const maintenance = createMaintenance({ config, db, log: createLogger("test-maintenance", config.LOG_LEVEL) });
  maintenance.start();
  return maintenance;
}

/**
 * A worker as its own OS process, for kill and signal tests: as production runs it, the bundle that
 * test/global-setup.ts builds (dist/worker/main.mjs) under WORKER_NODE_FLAGS.
 */
export function spawnWorker(databaseUrl: string, env: Record<string, string>): ChildProcess {
  const root = resolve(import.meta.dirname, "../..");
  return spawn(process.execPath, [...WORKER_NODE_FLAGS, join(root, WORKER_BUNDLE)], {
    cwd: root,
    env: { ...process.env, ...env, DATABASE_URL: databaseUrl },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Wait until `check` returns true (polling), or throw after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const SETTLED = ["approved", "rejected", "failed", "pending_approval"] as const;

/** Wait until no package is queued or in progress. */
export function waitSettled(db: Db, timeoutMs = 60_000): Promise<void> {
  return waitFor(async () => (await db.package.count({ where: { status: { notIn: [...SETTLED] } } })) === 0, timeoutMs, "all packages settled");
}
