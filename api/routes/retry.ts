import type { FastifyInstance } from "fastify";
import { AppError } from "../../src/errors.ts";
import { notifyWork, retryFailed } from "../../src/queue/sql.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses } from "../schemas.ts";

export default async function retryRoutes(app: FastifyInstance, { db }: AppDeps) {
  app.post<{ Body: { request_id?: number; package_ids?: number[] } | undefined }>(
    "/api/packages/processing/retry",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "Move failed packages (all, of one request, or the given ids) back to `requested`",
        security: [{ bearer: [] }],
        body: {
          type: ["object", "null"],
          additionalProperties: false,
          properties: {
            request_id: { type: "integer", minimum: 1, maximum: 2147483647 },
            package_ids: { type: "array", minItems: 1, maxItems: 100000, items: { type: "integer", minimum: 1, maximum: 2147483647 } },
          },
        },
        response: { 200: { type: "object", properties: { retried: { type: "integer" } } }, ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const body = request.body ?? {};
      if (body.request_id !== undefined) {
        const exists = await db.request.findUnique({ where: { id: body.request_id }, select: { id: true } });
        if (!exists) throw new AppError("request_not_found", `no request ${body.request_id}`);
      }
      const retried = await db.$transaction(async (tx) => {
        const n = await retryFailed(tx, { requestId: body.request_id, packageIds: body.package_ids }, `user:${request.user.name}`);
        if (n > 0) await notifyWork(tx);
        return n;
      });
      request.log.info({ retried, scope: body }, "retry");
      return { retried };
    },
  );
}
