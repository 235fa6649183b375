/**
 * POST /api/packages/upload — a package-lock.json as multipart field `file` or as the raw JSON body.
 * Parses and validates everything before writing anything; answers 202 with the request id.
 */
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { AppError } from "../../src/errors.ts";
import { printable } from "../../src/lockfile/json.ts";
import { parseLockfile } from "../../src/lockfile/parse.ts";
import { createRequest } from "../../src/requests/create-request.ts";
import { Semaphore } from "../../src/requests/semaphore.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses } from "../schemas.ts";

/** The one file part the upload reads, and how many other form fields it tolerates (and ignores). */
const FILE_FIELD = "file";
const MAX_FIELDS = 10;
/** Bytes kept of each ignored text field (busboy truncates the rest): 10 fields cannot hold 10 MiB. */
const MAX_FIELD_BYTES = 1024;

export default async function uploadRoutes(app: FastifyInstance, { db, config }: AppDeps) {
  const limit = config.MAX_UPLOAD_BYTES;
  // Upload transactions hold a pooled connection for their bulk inserts: bound how many run at once,
  // so a burst of uploads queues here instead of starving status reads and health checks of connections.
  const uploads = new Semaphore(Math.max(1, Math.floor(config.DB_POOL_SIZE / 2)));
  // files: 1 — a second file part (whatever its field name) raises the plugin's files limit, answered as `multiple_files`.
  await app.register(multipart, {
    limits: { fileSize: limit, files: 1, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES, parts: 2 * MAX_FIELDS },
    throwFileSizeLimit: true,
  });
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
  if (request.isMultipart()) return readMultipart(request);
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) throw new AppError("no_file", "empty request body");
  const name = request.headers["x-file-name"];
  return { raw: body, fileName: typeof name === "string" ? name.slice(0, 255) : null };
}

/**
 * Reads the multipart body to its end before deciding, so the answer does not depend on the order of the parts:
 * a second file part after `file`, or too many fields after it, is refused like one before it.
 */
async function readMultipart(request: FastifyRequest): Promise<{ raw: Buffer; fileName: string | null }> {
  let upload: { raw: Buffer; fileName: string | null } | undefined;
  let otherFile: string | undefined;
  let textField = false;
  try {
    for await (const part of request.parts()) {
      if (part.type !== "file") {
        if (part.fieldname === FILE_FIELD) textField = true;
        continue;
      }
      // Read (or drain) every file part: toBuffer enforces MAX_UPLOAD_BYTES (413) whatever the field name.
      const raw = await part.toBuffer();
      if (part.fieldname === FILE_FIELD) upload = { raw, fileName: part.filename || null };
      else otherFile = part.fieldname;
    }
  } catch (err) {
    throw multipartError(err);
  }
  if (upload) return upload;
  if (otherFile !== undefined) {
    throw new AppError("no_file", `the multipart body has no file part named \`${FILE_FIELD}\` (got a file part named \`${printable(otherFile, 64)}\`)`);
  }
  if (textField) throw new AppError("no_file", `multipart field \`${FILE_FIELD}\` is a text field, not a file part (it needs a filename)`);
  throw new AppError("no_file", `the multipart body has no file part named \`${FILE_FIELD}\``);
}

/**
 * The multipart plugin reports its count limits as 413s; only the file size limit is about size. A second file part
 * and too many fields are the client's shape errors (400). The parser's (busboy) own errors are plain Errors about a
 * malformed body (no boundary, truncated part), which are the client's fault too, not a 500.
 */
function multipartError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: unknown }).code;
  if (code === "FST_FILES_LIMIT") {
    return new AppError("multiple_files", `the multipart body has more than one file part; only one, named \`${FILE_FIELD}\`, is read`);
  }
  if (code === "FST_FIELDS_LIMIT") return new AppError("too_many_fields", `the multipart body has more than ${MAX_FIELDS} form fields`);
  if (code === "FST_PARTS_LIMIT") return new AppError("too_many_fields", `the multipart body has more than ${2 * MAX_FIELDS} parts`);
  // Other plugin errors carry a code the error handler maps (file too large → 413 payload_too_large).
  if (typeof code === "string") return err;
  return new AppError("bad_request", `malformed multipart body: ${(err as Error).message}`);
}

