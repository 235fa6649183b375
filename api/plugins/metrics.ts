/**
 * Prometheus metrics for the API: `GET /metrics` (text format, no auth — keep it off the public
 * network; see README "Metrics") and a request duration histogram labelled with the route template.
 * Each app gets its own registry (`app.metricsRegistry`), so tests can build several apps in one process.
 */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "../../src/db/client.ts";
import { createApiMetrics } from "../../src/metrics/api.ts";
import { createMetricsRegistry, type Registry } from "../../src/metrics/registry.ts";

declare module "fastify" {
  interface FastifyInstance {
    metricsRegistry: Registry;
  }
}

export interface MetricsPluginOptions {
  db: Db;
  /** Defaults to a fresh registry with the default process metrics. */
  registry?: Registry;
  countsCacheMs?: number;
}

/** The route label of a request that matched no route (keeps raw URLs out of the label set). */
export const UNMATCHED_ROUTE = "unmatched";

export default fp(
  async function metrics(app: FastifyInstance, opts: MetricsPluginOptions) {
    const registry = opts.registry ?? createMetricsRegistry();
    const m = createApiMetrics(registry, opts.db, { log: app.log, countsCacheMs: opts.countsCacheMs });
    app.decorate("metricsRegistry", registry);

    app.addHook("onResponse", async (request, reply) => {
      m.observeRequest(request.method, request.routeOptions.url ?? UNMATCHED_ROUTE, reply.statusCode, reply.elapsedTime / 1000);
    });

    app.get(
      "/metrics",
      {
        logLevel: "warn",
        schema: {
          tags: ["health"],
          summary: "Prometheus metrics, text format (no auth: keep it internal)",
          response: { 200: { description: "Prometheus text exposition format", type: "string" } },
        },
      },
      async (_request, reply) => {
        const body = await registry.metrics();
        return reply.header("content-type", registry.contentType).send(body);
      },
    );
  },
  { name: "spm-metrics" },
);
