/**
 * The approval workflow: the queue of packages waiting for a person, batch decisions, and the full
 * record of one package. Decisions are guarded transitions (src/queue/sql.ts `decide`): a package
 * that is not in an eligible state is left alone and reported as skipped.
 *
 *   approve: pending_approval → approved; with `override: true` (admin, with a comment) also
 *            rejected → approved (overriding a policy or reviewer rejection).
 *   reject:  pending_approval → rejected, and approved → rejected (revoking an approval).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { hasRole } from "../../src/auth/users.ts";
import type { Db } from "../../src/db/client.ts";
import { AppError } from "../../src/errors.ts";
import { decide } from "../../src/queue/sql.ts";
import type { PackageStatus } from "../../src/queue/states.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses, idParam, packageRowProperties } from "../schemas.ts";

const MAX_IDS = 10_000;

/** A free-form object recorded by the pipeline, passed through as stored. */
const recorded = { type: ["object", "null"], additionalProperties: true } as const;

const finding = {
  type: "object",
  additionalProperties: true,
  properties: {
    rule: { type: "string" },
    severity: { type: "string" },
    file: { type: ["string", "null"] },
    message: { type: "string" },
  },
} as const;

const advisory = {
  type: "object",
  additionalProperties: true,
  properties: {
    id: { type: "string" },
    aliases: { type: "array", items: { type: "string" } },
    summary: { type: ["string", "null"] },
    severity: { type: "string" },
    malicious: { type: "boolean" },
    fixedVersions: { type: "array", items: { type: "string" } },
    url: { type: ["string", "null"] },
  },
} as const;

const licenceSummary = {
  type: ["object", "null"],
  properties: {
    declared: { type: ["string", "null"] },
    expression: { type: ["string", "null"] },
    verdict: { type: "string" },
    reason: { type: "string" },
  },
} as const;

const decisionBody = (withOverride: boolean) =>
  ({
    type: "object",
    additionalProperties: false,
    properties: {
      package_ids: { type: "array", minItems: 1, maxItems: MAX_IDS, items: { type: "integer", minimum: 1, maximum: 2147483647 } },
      request_id: { type: "integer", minimum: 1, maximum: 2147483647 },
      comment: { type: "string", maxLength: 2000 },
      ...(withOverride ? { override: { type: "boolean" } } : {}),
    },
  }) as const;

const decisionResponse = (verb: "approved" | "rejected") =>
  ({
    type: "object",
    properties: {
      [verb]: { type: "integer" },
      /** Overridden rejections that had nothing stored yet: they resume the pipeline (download, scan). */
      resumed: { type: "integer" },
      skipped: {
        type: "array",
        items: {
          type: "object",
          properties: { id: { type: "integer" }, status: { type: ["string", "null"] }, reason: { type: "string" } },
        },
      },
    },
  }) as const;

interface DecisionBody {
  package_ids?: number[];
  request_id?: number;
  comment?: string;
  override?: boolean;
}

interface Skipped {
  id: number;
  status: PackageStatus | null;
  reason: string;
}

type Json = Record<string, unknown>;

const asObject = (v: unknown): Json | null => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Json) : null);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function licenceOf(v: unknown) {
  const l = asObject(v);
  if (!l) return null;
  return { declared: l.declared ?? null, expression: l.expression ?? null, verdict: l.verdict, reason: l.reason };
}

function reviewReasonsOf(results: Json, reasonCode: string | null, reasonMessage: string | null): string[] {
  const reasons = asArray(asObject(results.review)?.reasons).filter((r): r is string => typeof r === "string");
  if (reasons.length > 0) return reasons;
  return reasonCode === "needs_review" && reasonMessage ? [reasonMessage] : [];
}

export default async function approverRoutes(app: FastifyInstance, { db }: AppDeps) {
  const security = [{ bearer: [] }];

  app.get<{ Querystring: { page: number; per_page: number; request_id?: number } }>(
    "/api/approver/packages/validated",
    {
      onRequest: app.requireRole("approver"),
      schema: {
        tags: ["approval"],
        summary: "Packages awaiting approval, with the reasons they need a person, licence, findings and advisories",
        security,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            page: { type: "integer", minimum: 1, default: 1 },
            per_page: { type: "integer", minimum: 1, maximum: 200, default: 50 },
            request_id: { type: "integer", minimum: 1, maximum: 2147483647 },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              items: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    id: { type: "integer" },
                    name: { type: "string" },
                    version: { type: "string" },
                    review_reasons: { type: "array", items: { type: "string" } },
                    licence: licenceSummary,
                    findings: { type: "array", items: finding },
                    advisories: { type: "array", items: advisory },
                    published_at: { type: ["string", "null"] },
                    request_ids: { type: "array", items: { type: "integer" } },
                    pending_since: { type: "string" },
                  },
                },
              },
              page: { type: "integer" },
              per_page: { type: "integer" },
              total: { type: "integer" },
            },
          },
          ...errorResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const { page, per_page } = request.query;
      const requestId = request.query.request_id ?? null;
      if (requestId !== null) await requireRequest(db, requestId);
      const [rows, counted] = await Promise.all([
        db.$queryRaw<
          {
            id: number;
            name: string;
            version: string;
            reason_code: string | null;
            reason_message: string | null;
            review: unknown;
            licence: unknown;
            findings: unknown;
            advisories: unknown;
            published_at: string | null;
            request_ids: number[];
            pending_since: Date;
          }[]
        >`
          SELECT p.id, p.name, p.version, p.reason_code, p.reason_message,
            p.results -> 'review' AS review,
            p.results -> 'licence' AS licence,
            p.results -> 'scan' -> 'findings' AS findings,
            p.results -> 'scan' -> 'advisories' AS advisories,
            p.results -> 'upstream' ->> 'publishedAt' AS published_at,
            ARRAY(SELECT rp.request_id FROM request_package rp WHERE rp.package_id = p.id ORDER BY rp.request_id) AS request_ids,
            COALESCE((SELECT max(e.at) FROM package_event e WHERE e.package_id = p.id AND e.to_status = 'pending_approval'),
                     p.updated_at) AS pending_since
          FROM package p
          WHERE p.status = 'pending_approval'
            AND (${requestId}::int IS NULL OR EXISTS (
              SELECT 1 FROM request_package rp WHERE rp.package_id = p.id AND rp.request_id = ${requestId}::int))
          ORDER BY p.id
          LIMIT ${per_page}::int OFFSET ${(page - 1) * per_page}::int`,
        db.$queryRaw<{ n: number }[]>`
          SELECT count(*)::int AS n FROM package p
          WHERE p.status = 'pending_approval'
            AND (${requestId}::int IS NULL OR EXISTS (
              SELECT 1 FROM request_package rp WHERE rp.package_id = p.id AND rp.request_id = ${requestId}::int))`,
      ]);
      return {
        items: rows.map((r) => ({
          id: r.id,
          name: r.name,
          version: r.version,
          review_reasons: reviewReasonsOf({ review: r.review }, r.reason_code, r.reason_message),
          licence: licenceOf(r.licence),
          findings: asArray(r.findings),
          advisories: asArray(r.advisories),
          published_at: r.published_at,
          request_ids: r.request_ids,
          pending_since: r.pending_since.toISOString(),
        })),
        page,
        per_page,
        total: counted[0]?.n ?? 0,
      };
    },
  );

  app.post<{ Body: DecisionBody }>(
    "/api/approver/packages/batch-approve",
    {
      onRequest: app.requireRole("approver"),
      schema: {
        tags: ["approval"],
        summary:
          "Approve packages awaiting approval (by ids or by request). `override: true` (admin, with a comment) also approves rejected packages",
        security,
        body: decisionBody(true),
        response: { 200: decisionResponse("approved"), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const body = request.body;
      const comment = normaliseComment(body.comment);
      const override = body.override === true;
      if (override) {
        if (!hasRole(request.user, "admin")) {
          throw new AppError("forbidden", `overriding a rejection needs role admin; you are ${request.user.role}`);
        }
        if (comment === null) throw new AppError("comment_required", "overriding a rejection needs a comment that says why");
      }
      const from: PackageStatus[] = override ? ["pending_approval", "rejected"] : ["pending_approval"];
      const result = await decideBatch(db, request, body, {
        to: "approved",
        from,
        comment,
        reasonCode: null,
        reasonMessage: null,
      });
      request.log.info({ approved: result.moved, skipped: result.skipped.length, override, scope: scopeOf(body) }, "batch approve");
      return { approved: result.moved, resumed: result.resumed, skipped: result.skipped };
    },
  );

  app.post<{ Body: DecisionBody }>(
    "/api/approver/packages/batch-reject",
    {
      onRequest: app.requireRole("approver"),
      schema: {
        tags: ["approval"],
        summary: "Reject packages awaiting approval, or revoke approved ones (by ids or by request)",
        security,
        body: decisionBody(false),
        response: { 200: decisionResponse("rejected"), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const body = request.body;
      const comment = normaliseComment(body.comment);
      const result = await decideBatch(db, request, body, {
        to: "rejected",
        from: ["pending_approval", "approved"],
        comment,
        reasonCode: "rejected_by_reviewer",
        reasonMessage: comment ?? `rejected by ${request.user.name}`,
      });
      request.log.info({ rejected: result.moved, skipped: result.skipped.length, scope: scopeOf(body) }, "batch reject");
      return { rejected: result.moved, skipped: result.skipped };
    },
  );

  app.get<{ Params: { id: number } }>(
    // Digits only, so that /api/packages/requests, /api/packages/processing/… are never taken for an id
    // (static routes win anyway; this also makes /api/packages/<word> a 404 rather than a 400).
    "/api/packages/:id(^\\d+$)",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "Everything known about one package: status, licence, integrity, findings, decisions, requests and its full history",
        security,
        params: idParam,
        response: {
          200: {
            type: "object",
            properties: {
              ...packageRowProperties,
              created_at: { type: "string" },
              next_attempt_at: { type: "string" },
              lease_owner: { type: ["string", "null"] },
              heartbeat_at: { type: ["string", "null"] },
              licence: recorded,
              upstream: recorded,
              download: recorded,
              scan: {
                type: ["object", "null"],
                properties: {
                  verdict: { type: ["string", "null"] },
                  files: { type: ["integer", "null"] },
                  unpacked_bytes: { type: ["integer", "null"] },
                  install_scripts: { type: ["object", "null"], additionalProperties: { type: "string" } },
                },
              },
              findings: { type: "array", items: finding },
              advisories: { type: "array", items: advisory },
              review_reasons: { type: "array", items: { type: "string" } },
              approval: recorded,
              rejection: recorded,
              manifest: recorded,
              requests: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    id: { type: "integer" },
                    uploaded_by: { type: "string" },
                    file_name: { type: ["string", "null"] },
                    created_at: { type: "string" },
                    integrity: { type: ["string", "null"] },
                    resolved: { type: ["string", "null"] },
                  },
                },
              },
              events: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    id: { type: "integer" },
                    from: { type: ["string", "null"] },
                    to: { type: "string" },
                    actor: { type: "string" },
                    reason: { type: ["string", "null"] },
                    details: {},
                    at: { type: "string" },
                  },
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
      const [p, events] = await Promise.all([
        db.package.findUnique({
          where: { id },
          include: { requests: { include: { request: true }, orderBy: { requestId: "asc" } } },
        }),
        // the audit trail is keyed by package id, not a relation (it outlives package rows)
        db.packageEvent.findMany({ where: { packageId: id }, orderBy: { id: "asc" } }),
      ]);
      if (!p) throw new AppError("package_not_found", `no package ${id}`);
      const results = asObject(p.results) ?? {};
      const scan = asObject(results.scan);
      return {
        id: p.id,
        name: p.name,
        version: p.version,
        status: p.status,
        attempts: p.attempts,
        last_error: p.lastErrorCode === null ? null : { code: p.lastErrorCode, message: p.lastErrorMessage },
        reason: p.reasonCode === null ? null : { code: p.reasonCode, message: p.reasonMessage },
        created_at: p.createdAt.toISOString(),
        updated_at: p.updatedAt.toISOString(),
        next_attempt_at: p.nextAttemptAt.toISOString(),
        lease_owner: p.leaseOwner,
        heartbeat_at: p.heartbeatAt?.toISOString() ?? null,
        licence: asObject(results.licence),
        upstream: asObject(results.upstream),
        download: asObject(results.download),
        scan: scan
          ? {
              verdict: scan.verdict ?? null,
              files: scan.files ?? null,
              unpacked_bytes: scan.unpackedBytes ?? null,
              install_scripts: asObject(scan.installScripts),
            }
          : null,
        findings: asArray(scan?.findings),
        advisories: asArray(scan?.advisories),
        review_reasons: reviewReasonsOf(results, p.reasonCode, p.reasonMessage),
        approval: asObject(results.approval),
        rejection: asObject(results.rejection),
        manifest: asObject(results.manifest),
        requests: p.requests.map((rp) => ({
          id: rp.requestId,
          uploaded_by: rp.request.uploadedByName,
          file_name: rp.request.fileName,
          created_at: rp.request.createdAt.toISOString(),
          integrity: rp.integrity,
          resolved: rp.resolved,
        })),
        events: events.map((e) => ({
          id: Number(e.id),
          from: e.fromStatus,
          to: e.toStatus,
          actor: e.actor,
          reason: e.reason,
          details: e.details,
          at: e.at.toISOString(),
        })),
      };
    },
  );
}

function normaliseComment(comment: string | undefined): string | null {
  const trimmed = comment?.trim() ?? "";
  return trimmed.length > 0 ? trimmed : null;
}

function scopeOf(body: DecisionBody): { request_id?: number; package_ids?: number } {
  return body.request_id !== undefined ? { request_id: body.request_id } : { package_ids: body.package_ids?.length ?? 0 };
}

async function requireRequest(db: Db, id: number): Promise<void> {
  const exists = await db.request.findUnique({ where: { id }, select: { id: true } });
  if (!exists) throw new AppError("request_not_found", `no request ${id}`);
}

/** Resolve the target ids, apply the decision in one guarded statement, and explain what was left alone. */
async function decideBatch(
  db: Db,
  request: FastifyRequest,
  body: DecisionBody,
  d: { to: "approved" | "rejected"; from: PackageStatus[]; comment: string | null; reasonCode: string | null; reasonMessage: string | null },
): Promise<{ moved: number; resumed: number; skipped: Skipped[] }> {
  if ((body.package_ids === undefined) === (body.request_id === undefined)) {
    throw new AppError("validation_failed", "send exactly one of package_ids (an array of package ids) or request_id");
  }
  const requestId = body.request_id;
  if (requestId !== undefined) await requireRequest(db, requestId);
  return db.$transaction(async (tx) => {
    const ids =
      requestId !== undefined
        ? (await tx.requestPackage.findMany({ where: { requestId }, select: { packageId: true }, orderBy: { packageId: "asc" } })).map(
            (r) => r.packageId,
          )
        : [...new Set(body.package_ids)];
    const moved = await decide(tx, { ids, ...d, actor: `user:${request.user.name}` });
    const movedIds = new Set(moved.map((r) => r.id));
    const rest = ids.filter((id) => !movedIds.has(id));
    const found = rest.length === 0 ? [] : await tx.package.findMany({ where: { id: { in: rest } }, select: { id: true, status: true, reasonCode: true } });
    const byId = new Map(found.map((r) => [r.id, r]));
    const skipped = rest.map((id): Skipped => {
      const row = byId.get(id);
      if (!row) return { id, status: null, reason: "no such package" };
      return { id, status: row.status, reason: skipReason(d.to, row.status, row.reasonCode) };
    });
    const resumed = moved.filter((r) => r.to_status === "licence_checked").length;
    return { moved: moved.length - resumed, resumed, skipped };
  });
}

function skipReason(to: "approved" | "rejected", status: PackageStatus, reasonCode: string | null): string {
  if (status === to) return `already ${status}`;
  if (to === "approved" && status === "rejected") {
    return `rejected (${reasonCode ?? "no reason code"}); only an admin can override a rejection, with "override": true and a comment`;
  }
  if (status === "failed") return "failed in the pipeline; retry it with POST /api/packages/processing/retry first";
  return `not awaiting a decision: still in the pipeline (${status})`;
}
