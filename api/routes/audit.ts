/**
 * The audit trail (path kept from the system this replaces): every status transition of every package,
 * with its place in the hash chain (src/audit/chain.ts). JSON pages by event id, or the whole selection
 * streamed as JSON Lines (`Accept: application/x-ndjson` or `?format=jsonl`). Approvers and admins.
 */
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { auditEvents, streamAuditEvents, type AuditFilter } from "../../src/audit/export.ts";
import { sealEvents } from "../../src/audit/sealer.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses, statusEnum } from "../schemas.ts";

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1_000;
/** Batches sealed at the start of an export (best effort; workers seal the rest on schedule). */
const SEAL_BATCHES = 10;
const NDJSON = "application/x-ndjson";

const nullableStatus = { type: ["string", "null"], enum: [...statusEnum.enum, null] } as const;

const auditItem = {
  type: "object",
  properties: {
    id: { type: "integer" },
    seal_seq: { type: ["integer", "null"], description: "position in the hash chain; null until sealed" },
    package_id: { type: "integer" },
    package: { type: ["string", "null"], description: "name@version (null if the package row no longer exists)" },
    from: nullableStatus,
    to: statusEnum,
    actor: { type: "string" },
    reason: { type: ["string", "null"] },
    details: { description: "free-form JSON recorded with the transition (or null)" },
    at: { type: "string", description: "UTC with microseconds: the exact text the hash covers" },
    prev_hash: { type: ["string", "null"] },
    hash: { type: ["string", "null"] },
  },
} as const;

interface AuditQuery {
  request_id?: number;
  package_id?: number;
  actor?: string;
  from?: string;
  to?: string;
  limit?: number;
  cursor?: number;
  format?: "json" | "jsonl";
}

function wantsJsonLines(request: FastifyRequest<{ Querystring: AuditQuery }>): boolean {
  if (request.query.format) return request.query.format === "jsonl";
  const accept = request.headers.accept ?? "";
  return accept.split(",").some((part) => part.trim().toLowerCase().startsWith(NDJSON));
}

export default async function auditRoutes(app: FastifyInstance, { db }: AppDeps) {
  const security = [{ bearer: [] }];

  app.get<{ Querystring: AuditQuery }>(
    "/api/packages/audit",
    {
      onRequest: app.requireRole("approver"),
      schema: {
        tags: ["audit"],
        summary: "Audit trail of status transitions, with hash-chain fields; JSON pages or a JSON Lines export",
        description:
          "Filters combine (AND). `from` ≤ at < `to`. JSON: `{ items, next_cursor }`, ordered by event id; pass `next_cursor` " +
          "as `cursor` for the next page. JSON Lines (`Accept: application/x-ndjson` or `format=jsonl`): every matching " +
          "event after `cursor` (at most `limit` when given), one item per line, streamed.",
        security,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            request_id: { type: "integer", minimum: 1, maximum: 2147483647 },
            package_id: { type: "integer", minimum: 1, maximum: 2147483647 },
            actor: { type: "string", minLength: 1, maxLength: 200 },
            from: { type: "string", format: "date-time" },
            to: { type: "string", format: "date-time" },
            limit: { type: "integer", minimum: 1, maximum: MAX_LIMIT, description: `JSON: page size (default ${DEFAULT_LIMIT})` },
            cursor: { type: "integer", minimum: 0, description: "return events with id greater than this" },
            format: { type: "string", enum: ["json", "jsonl"] },
          },
        },
        response: {
          200: {
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  properties: {
                    items: { type: "array", items: auditItem },
                    next_cursor: { type: ["integer", "null"], description: "null: no more events" },
                  },
                },
              },
              [NDJSON]: { schema: { type: "string", description: "one audit item (as in `items`) per line" } },
            },
          },
          ...errorResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      // Seal what is pending first, so the export carries hashes for as much as possible. Best effort:
      // when a worker's sealer holds the lock it is doing exactly that, and the export does not wait.
      try {
        await sealEvents(db, { maxBatches: SEAL_BATCHES }, request.log);
      } catch (err) {
        request.log.warn({ err }, "sealing audit events before export failed");
      }
      const q = request.query;
      const filter: AuditFilter = { requestId: q.request_id, packageId: q.package_id, actor: q.actor, from: q.from, to: q.to };
      const after = BigInt(q.cursor ?? 0);
      if (wantsJsonLines(request)) {
        const items = streamAuditEvents(db, filter, { after, max: q.limit });
        async function* lines() {
          for await (const item of items) yield `${JSON.stringify(item)}\n`;
        }
        void reply.type(`${NDJSON}; charset=utf-8`).header("cache-control", "no-store");
        return reply.send(Readable.from(lines()));
      }
      const limit = q.limit ?? DEFAULT_LIMIT;
      const rows = await auditEvents(db, filter, after, limit + 1);
      const items = rows.slice(0, limit);
      return { items, next_cursor: rows.length > limit ? items[items.length - 1]!.id : null };
    },
  );
}
