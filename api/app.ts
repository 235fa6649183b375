/**
 * Builds the Fastify app (no listening here: api/main.ts listens). Tests build it with their own
 * database and configuration.
 */
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import type { Config } from "../src/config.ts";
import type { Db } from "../src/db/client.ts";
import { loggerOptions } from "../src/logger.ts";
import authPlugin from "./plugins/auth.ts";
import { registerErrorHandling } from "./plugins/errors.ts";
import metricsPlugin from "./plugins/metrics.ts";
import { registerOpenApi } from "./plugins/openapi.ts";
import adminLicenceRoutes from "./routes/admin-licenses.ts";
import approverRoutes from "./routes/approver.ts";
import auditRoutes from "./routes/audit.ts";
import authRoutes from "./routes/auth.ts";
import healthRoutes from "./routes/health.ts";
import registryRoutes from "./routes/registry.ts";
import retryRoutes from "./routes/retry.ts";
import sbomRoutes from "./routes/sbom.ts";
import statusRoutes from "./routes/status.ts";
import uploadRoutes from "./routes/upload.ts";

export interface AppDeps {
  config: Config;
  db: Db;
}

export interface BuildOptions extends AppDeps {
  jwtSecret: string;
  /** false: no request logging (tests). */
  logger?: false;
}

export interface RouteEntry {
  method: string;
  url: string;
  schema?: { summary?: string; response?: Record<string, unknown>; hide?: boolean };
}

declare module "fastify" {
  interface FastifyInstance {
    routeTable: RouteEntry[];
  }
}

export async function buildApp(opts: BuildOptions): Promise<FastifyInstance> {
  const { config, db } = opts;
  const app = Fastify({
    logger: opts.logger === false ? false : loggerOptions(config.LOG_LEVEL, "api"),
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    },
    bodyLimit: 1024 * 1024,
    trustProxy: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: false } },
  });
  app.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  registerErrorHandling(app);
  // Every route the app registers, for the test that checks each one is documented.
  const routeTable: RouteEntry[] = [];
  app.addHook("onRoute", (r) => {
    for (const method of [r.method].flat()) routeTable.push({ method, url: r.url, schema: r.schema as RouteEntry["schema"] });
  });
  app.decorate("routeTable", routeTable);
  await registerOpenApi(app);
  await app.register(metricsPlugin, { db });
  await app.register(authPlugin, { secret: opts.jwtSecret, ttl: config.JWT_TTL });
  const deps: AppDeps = { config, db };
  await app.register(healthRoutes, deps);
  await app.register(authRoutes, deps);
  await app.register(statusRoutes, deps);
  await app.register(retryRoutes, deps);
  await app.register(uploadRoutes, deps);
  await app.register(registryRoutes, deps);
  await app.register(approverRoutes, deps);
  await app.register(adminLicenceRoutes, deps);
  await app.register(auditRoutes, deps);
  await app.register(sbomRoutes, deps);
  return app;
}
