/**
 * Worker process entry point: `npm run start:worker`. Needs DATABASE_URL (`npm start` provides it).
 * SIGTERM / SIGINT: stop claiming, finish in-flight steps within WORKER_GRACE_SECONDS, release the
 * rest back to their queues, exit 0.
 */
import { config as loadConfig, ConfigError } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { createWorker } from "./worker.ts";
import { startWorkerHttp } from "./http.ts";

const log = createLogger("worker");

async function main(): Promise<void> {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError(["DATABASE_URL: required for the worker (npm start sets it for the embedded database)"]);
  const worker = createWorker(config, config.DATABASE_URL, log);
  const http = config.WORKER_METRICS_PORT === undefined ? null : await startWorkerHttp(worker, config, log);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const hard = setTimeout(() => {
      log.error("shutdown took too long; exiting");
      process.exit(1);
    }, (config.WORKER_GRACE_SECONDS + 15) * 1000);
    hard.unref();
    void (async () => {
      await worker.stop();
      await http?.close();
      process.exit(0);
    })();
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  await worker.start();
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, "worker failed to start");
  process.exit(1);
});
