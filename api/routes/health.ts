import type { FastifyInstance } from "fastify";
import type { AppDeps } from "../app.ts";

export default async function healthRoutes(app: FastifyInstance, { db }: AppDeps) {
  app.get(
    "/health",
    {
      logLevel: "warn",
      schema: {
        tags: ["health"],
        summary: "The process is up",
        response: { 200: { type: "object", properties: { status: { type: "string" } } } },
      },
    },
    async () => ({ status: "ok" }),
  );
  app.get(
    "/ready",
    {
      logLevel: "warn",
      schema: {
        tags: ["health"],
        summary: "The database is reachable (503 otherwise)",
        response: {
          200: { type: "object", properties: { status: { type: "string" } } },
          503: { type: "object", properties: { status: { type: "string" }, error: { type: "string" } } },
        },
      },
    },
    async (_request, reply) => {
      try {
        await Promise.race([
          db.$queryRaw`SELECT 1`,
          new Promise((_, reject) => setTimeout(() => reject(new Error("database check timed out")), 2_000).unref()),
        ]);
        return { status: "ready" };
      } catch (err) {
        return reply.status(503).send({ status: "unavailable", error: (err as Error).message.split("\n")[0] });
      }
    },
  );
}
