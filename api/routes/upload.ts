/**
 * POST /api/packages/upload — a package-lock.json as multipart field `file` or as the raw JSON body.
 * Parses and validates everything before writing anything; answers 202 with the request id.
 */
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { AppError } from "../../src/errors.ts";
import { parseLockfile } from "../../src/lockfile/parse.ts";
import { createRequest } from "../../src/requests/create-request.ts";
import { Semaphore } from "../../src/requests/semaphore.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses } from "../schemas.ts";

export default async function uploadRoutes(app: FastifyInstance, { db, config }: AppDeps) {
  const limit = config.MAX_UPLOAD_BYTES;
  // Upload transactions hold a pooled connection for their bulk inserts: bound how many run at once,
  // so a burst of uploads queues here instead of starving status reads and health checks of connections.
  const uploads = new Semaphore(Math.max(1, Math.floor(config.DB_POOL_SIZE / 2)));
  await app.register(multipart, { limits: { fileSize: limit, files: 1, fields: 10, parts: 20 }, throwFileSizeLimit: true });
  // The raw bytes are parsed by the lockfile parser itself (BOM, strict UTF-8, safe keys, sha256). Fastify's default
  // text/plain parser goes too, so any other content type is refused with 415 rather than read as an empty upload.
  app.removeContentTypeParser(["application/json", "text/plain"]);
  app.addContentTypeParser(["application/json", "application/octet-stream"], { parseAs: "buffer", bodyLimit: limit }, (_req, body, done) => done(null, body));

  app.post(
    "/api/packages/upload",
    {
      onRequest: app.authenticate,
      bodyLimit: limit,
      schema: {
        tags: ["packages"],
        summary: "Upload a package-lock.json (lockfileVersion 1, 2 or 3) to vet every package in it",
        description: "Send the file as multipart field `file`, or as the raw body with Content-Type application/json.",
        security: [{ bearer: [] }],
        consumes: ["multipart/form-data", "application/json"],
        response: {
          202: {
            type: "object",
            required: ["request_id", "packages", "skipped"],
            properties: {
              request_id: { type: "integer" },
              packages: {
                type: "object",
                properties: { total: { type: "integer" }, new: { type: "integer" }, existing: { type: "integer" } },
              },
              skipped: { type: "array", items: { type: "object", properties: { path: { type: "string" }, reason: { type: "string" } } } },
            },
          },
          ...errorResponses(400, 401, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const { raw, fileName } = await readUpload(request);
      const parsed = parseLockfile(raw);
      const created = await uploads.run(() =>
        createRequest(db, {
          parsed,
          raw,
          fileName,
          user: { id: Number(request.user.sub) || null, username: request.user.name },
        }),
      );
      request.log.info({ requestId: created.request_id, ...created.packages, skipped: created.skipped.length }, "lockfile accepted");
      return reply.status(202).send(created);
    },
  );
}

async function readUpload(request: FastifyRequest): Promise<{ raw: Buffer; fileName: string | null }> {
  if (request.isMultipart()) {
    try {
      for await (const part of request.parts()) {
        if (part.type === "file" && part.fieldname === "file") {
          return { raw: await part.toBuffer(), fileName: part.filename || null };
        }
        if (part.type === "file") await part.toBuffer();
      }
    } catch (err) {
      // The multipart plugin's own errors carry a code (limits → 413); the parser's (busboy) are plain Errors about a
      // malformed body (no boundary, truncated part), which are the client's fault, not a 500.
      if (err instanceof AppError || typeof (err as { code?: unknown }).code === "string") throw err;
      throw new AppError("bad_request", `malformed multipart body: ${(err as Error).message}`);
    }
    throw new AppError("no_file", "the multipart body has no field named `file`");
  }
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) throw new AppError("no_file", "empty request body");
  const name = request.headers["x-file-name"];
  return { raw: body, fileName: typeof name === "string" ? name.slice(0, 255) : null };
}
