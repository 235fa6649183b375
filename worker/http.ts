/**
 * The worker's small HTTP endpoint (WORKER_METRICS_PORT): `GET /health` is 200 while the poll loop is
 * alive (its last poll reached the database recently), `GET /metrics` serves the worker's Prometheus
 * registry (no auth: keep the port internal). Port 0 picks a free port (returned as `port`).
 */
import { createServer, type Server } from "node:http";
import type { Config } from "../src/config.ts";
import type { Logger } from "../src/logger.ts";
import type { Registry } from "../src/metrics/registry.ts";
import type { Worker } from "./worker.ts";

export async function startWorkerHttp(
  worker: Worker,
  config: Config,
  log: Logger,
  registry: Registry = worker.metrics.registry,
): Promise<{ close(): Promise<void>; port: number }> {
  const staleMs = Math.max(60_000, config.WORKER_SLEEP_INTERVAL * 3_000);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/health") {
      const age = Date.now() - worker.runner.lastPoll;
      const ok = worker.runner.lastPoll > 0 && age < staleMs;
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: ok ? "ok" : "stale", workerId: worker.id, lastPollMsAgo: age, inFlight: worker.runner.inFlight }));
      return;
    }
    if (path === "/metrics") {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        })
        .catch((err: unknown) => {
          log.error({ err }, "metrics failed");
          res.writeHead(500).end();
        });
      return;
    }
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.WORKER_METRICS_PORT ?? 0, config.HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  log.info({ port }, "worker health and metrics listening");
  return { port, close: () => new Promise((r) => server.close(() => r())) };
}
