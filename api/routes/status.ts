/** Processing status and request views (paths kept from the system this replaces). */
import type { FastifyInstance } from "fastify";
import { AppError } from "../../src/errors.ts";
import type { PackageStatus } from "../../src/queue/states.ts";
import {
  globalCounts,
  progress,
  recentTransitions,
  recentWorkers,
  requestCounts,
  requestPackages,
  requestsDone,
  stageQueues,
  stuckCount,
} from "../../src/status/queries.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses, idParam, packageRowProperties, statusCounts, statusEnum } from "../schemas.ts";

const requestSummary = {
  type: "object",
  properties: {
    id: { type: "integer" },
    uploaded_by: { type: "string" },
    file_name: { type: ["string", "null"] },
    lockfile_sha256: { type: "string" },
    lockfile_version: { type: "integer" },
    packages: { type: "object", properties: { total: { type: "integer" }, new: { type: "integer" }, existing: { type: "integer" } } },
    skipped_count: { type: "integer" },
    created_at: { type: "string" },
    done: { type: "boolean" },
    percent_complete: { type: "number" },
  },
} as const;

export default async function statusRoutes(app: FastifyInstance, { db, config }: AppDeps) {
  const security = [{ bearer: [] }];

  app.get(
    "/api/packages/processing/status",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "Pipeline overview: counts per status, queue per stage, stuck rows, live workers, recent transitions",
        security,
        response: {
          200: {
            type: "object",
            properties: {
              counts: statusCounts,
              total: { type: "integer" },
              stages: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    stage: { type: "string" },
                    queued_status: { type: "string" },
                    queued: { type: "integer" },
                    ready: { type: "integer" },
                    in_progress: { type: "integer" },
                    oldest_queued_seconds: { type: ["integer", "null"] },
                  },
                },
              },
              stuck: { type: "integer" },
              stuck_after_minutes: { type: "number" },
              workers: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    id: { type: "string" },
                    hostname: { type: "string" },
                    pid: { type: "integer" },
                    started_at: { type: "string" },
                    last_seen_at: { type: "string" },
                    in_flight: { type: ["integer", "null"] },
                    circuit: { type: ["object", "null"], additionalProperties: true },
                  },
                },
              },
              upstream_circuit: { type: "string" },
              recent_transitions: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    package_id: { type: "integer" },
                    package: { type: "string" },
                    from: { type: ["string", "null"] },
                    to: { type: "string" },
                    actor: { type: "string" },
                    reason: { type: ["string", "null"] },
                    at: { type: "string" },
                  },
                },
              },
            },
          },
          ...errorResponses(401, 503),
        },
      },
    },
    async () => {
      const counts = await globalCounts(db);
      const [stages, stuck, workers, recent] = await Promise.all([
        stageQueues(db, counts),
        stuckCount(db, config.STUCK_AFTER_MINUTES * 60),
        recentWorkers(db),
        recentTransitions(db),
      ]);
      const workerViews = workers.map((w) => {
        const info = (w.info ?? {}) as { inFlight?: number; circuit?: { state?: string } };
        return {
          id: w.id,
          hostname: w.hostname,
          pid: w.pid,
          started_at: w.startedAt.toISOString(),
          last_seen_at: w.lastSeenAt.toISOString(),
          in_flight: info.inFlight ?? null,
          circuit: info.circuit ?? null,
        };
      });
      const circuits = workerViews.map((w) => (w.circuit as { state?: string } | null)?.state ?? "closed");
      return {
        counts,
        total: Object.values(counts).reduce((a, b) => a + b, 0),
        stages,
        stuck,
        stuck_after_minutes: config.STUCK_AFTER_MINUTES,
        workers: workerViews,
        upstream_circuit: circuits.includes("open") ? "open" : circuits.includes("half_open") ? "half_open" : "closed",
        recent_transitions: recent,
      };
    },
  );

  app.get<{ Querystring: { page: number; per_page: number } }>(
    "/api/packages/requests",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "Uploaded requests, newest first",
        security,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { page: { type: "integer", minimum: 1, default: 1 }, per_page: { type: "integer", minimum: 1, maximum: 200, default: 20 } },
        },
        response: {
          200: {
            type: "object",
            properties: { items: { type: "array", items: requestSummary }, page: { type: "integer" }, per_page: { type: "integer" }, total: { type: "integer" } },
          },
          ...errorResponses(400, 401),
        },
      },
    },
    async (request) => {
      const { page, per_page } = request.query;
      const [rows, total] = await Promise.all([
        db.request.findMany({ orderBy: { id: "desc" }, skip: (page - 1) * per_page, take: per_page }),
        db.request.count(),
      ]);
      const done = await requestsDone(db, rows.map((r) => r.id));
      return {
        items: rows.map((r) => {
          const d = done.get(r.id) ?? { settled: 0, total: 0 };
          return {
            ...summary(r),
            done: d.settled === d.total,
            percent_complete: d.total === 0 ? 100 : Math.floor((d.settled / d.total) * 1000) / 10,
          };
        }),
        page,
        per_page,
        total,
      };
    },
  );

  app.get<{ Params: { id: number } }>(
    "/api/packages/requests/:id",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "One request: what was uploaded, counts per status, skipped entries",
        security,
        params: idParam,
        response: {
          200: {
            type: "object",
            properties: {
              ...requestSummary.properties,
              counts: statusCounts,
              skipped: { type: "array", items: { type: "object", properties: { path: { type: "string" }, reason: { type: "string" } } } },
            },
          },
          ...errorResponses(400, 401, 404),
        },
      },
    },
    async (request) => {
      const r = await db.request.findUnique({ where: { id: request.params.id } });
      if (!r) throw new AppError("request_not_found", `no request ${request.params.id}`);
      const counts = await requestCounts(db, r.id);
      const p = progress(counts);
      return { ...summary(r), counts, skipped: r.skipped, done: p.done, percent_complete: p.percent_complete };
    },
  );

  app.get<{ Params: { id: number }; Querystring: { status?: PackageStatus; limit: number; offset: number } }>(
    "/api/packages/requests/:id/processing-status",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "Progress of one request: counts, percent complete, done, and each package with its status and reason",
        security,
        params: idParam,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            status: statusEnum,
            limit: { type: "integer", minimum: 1, maximum: 10000, default: 1000 },
            offset: { type: "integer", minimum: 0, default: 0 },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              request_id: { type: "integer" },
              counts: statusCounts,
              total: { type: "integer" },
              settled: { type: "integer" },
              percent_complete: { type: "number" },
              done: { type: "boolean" },
              packages: {
                type: "array",
                items: {
                  type: "object",
                  properties: packageRowProperties,
                },
              },
            },
          },
          ...errorResponses(400, 401, 404),
        },
      },
    },
    async (request) => {
      const id = request.params.id;
      // Three independent reads, in parallel on the pool.
      const [exists, counts, packages] = await Promise.all([
        db.request.findUnique({ where: { id }, select: { id: true } }),
        requestCounts(db, id),
        requestPackages(db, id, request.query),
      ]);
      if (!exists) throw new AppError("request_not_found", `no request ${id}`);
      return { request_id: id, counts, ...progress(counts), packages };
    },
  );
}

function summary(r: {
  id: number;
  uploadedByName: string;
  fileName: string | null;
  lockfileSha256: string;
  lockfileVersion: number;
  total: number;
  newCount: number;
  existingCount: number;
  skipped: unknown;
  createdAt: Date;
}) {
  return {
    id: r.id,
    uploaded_by: r.uploadedByName,
    file_name: r.fileName,
    lockfile_sha256: r.lockfileSha256,
    lockfile_version: r.lockfileVersion,
    packages: { total: r.total, new: r.newCount, existing: r.existingCount },
    skipped_count: Array.isArray(r.skipped) ? r.skipped.length : 0,
    created_at: r.createdAt.toISOString(),
  };
}
