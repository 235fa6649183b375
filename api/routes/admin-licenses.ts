/**
 * The licence policy (table `licence_policy`), admin only: licence → verdict, plus the `unknown` row
 * (the verdict for licences that cannot be identified or are not listed). Workers read the table
 * through a 2 s cache (src/policy/licence-policy-store.ts), so a change applies to packages whose
 * licence is checked afterwards; packages already past the licence step keep their evaluation.
 *
 * Keys: an SPDX licence id (matched case-insensitively, stored in its canonical spelling), optionally
 * `<id> WITH <exception id>` (an explicit entry for that combination), a `LicenseRef-…`, or `unknown`.
 */
import type { FastifyInstance } from "fastify";
import exceptionIds from "spdx-exceptions/index.json" with { type: "json" };
import deprecatedLicenceIds from "spdx-license-ids/deprecated.json" with { type: "json" };
import licenceIds from "spdx-license-ids/index.json" with { type: "json" };
import { AppError } from "../../src/errors.ts";
import type { LicenceVerdict } from "../../src/generated/prisma/enums.ts";
import { isSpdxLicenceId } from "../../src/policy/licence-normalise.ts";
import { UNKNOWN_LICENCE_KEY } from "../../src/policy/licence-policy-store.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses } from "../schemas.ts";

const canonicalLicence = new Map<string, string>();
for (const id of [...licenceIds, ...deprecatedLicenceIds]) canonicalLicence.set(id.toLowerCase(), id);
const canonicalException = new Map<string, string>();
for (const id of exceptionIds) canonicalException.set(id.toLowerCase(), id);

const LICENCE_REF = /^licenseref-([A-Za-z0-9.-]+)$/i;

/** The canonical policy key for `input`, or a validation error saying what is accepted. */
export function canonicalPolicyKey(input: string): string {
  const text = input.trim();
  if (text.toLowerCase() === UNKNOWN_LICENCE_KEY) return UNKNOWN_LICENCE_KEY;
  const ref = LICENCE_REF.exec(text);
  if (ref) return `LicenseRef-${ref[1] ?? ""}`;
  const [id, exception, ...extra] = text.split(/\s+WITH\s+/i);
  const licence = canonicalLicence.get((id ?? "").toLowerCase());
  if (licence !== undefined && isSpdxLicenceId(licence) && extra.length === 0) {
    if (exception === undefined) return licence;
    const exc = canonicalException.get(exception.toLowerCase());
    if (exc !== undefined) return `${licence} WITH ${exc}`;
    throw new AppError("validation_failed", `"${exception}" is not an SPDX licence exception id`);
  }
  throw new AppError(
    "validation_failed",
    `"${text}" is not an SPDX licence id (e.g. MIT, Apache-2.0, GPL-3.0-only), a LicenseRef-…, or "unknown"`,
    { hint: "Licence ids are listed at https://spdx.org/licenses/; case does not matter." },
  );
}

const verdictSchema = { type: "string", enum: ["allow", "review", "deny"] } as const;

const entry = {
  type: "object",
  properties: {
    licence: { type: "string" },
    verdict: { type: "string" },
    updated_at: { type: "string" },
    updated_by: { type: "string" },
  },
} as const;

const licenceParam = {
  type: "object",
  required: ["licence"],
  properties: { licence: { type: "string", minLength: 1, maxLength: 200 } },
} as const;

function view(r: { licence: string; verdict: LicenceVerdict; updatedAt: Date; updatedBy: string }) {
  return { licence: r.licence, verdict: r.verdict, updated_at: r.updatedAt.toISOString(), updated_by: r.updatedBy };
}

export default async function adminLicenceRoutes(app: FastifyInstance, { db, config }: AppDeps) {
  const security = [{ bearer: [] }];
  const admin = app.requireRole("admin");

  app.get(
    "/api/admin/licenses",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        summary: "The licence policy: each licence with its verdict, and the `unknown` row (unidentified or unlisted licences)",
        security,
        response: {
          200: {
            type: "object",
            properties: {
              items: { type: "array", items: entry },
              unknown: { type: ["string", "null"] },
              total: { type: "integer" },
            },
          },
          ...errorResponses(401, 403),
        },
      },
    },
    async () => {
      const rows = await db.licencePolicy.findMany();
      rows.sort((a, b) =>
        a.licence === UNKNOWN_LICENCE_KEY ? -1 : b.licence === UNKNOWN_LICENCE_KEY ? 1 : a.licence.toLowerCase().localeCompare(b.licence.toLowerCase()),
      );
      return {
        items: rows.map(view),
        // Without an `unknown` row, LICENCE_UNKNOWN_VERDICT decides.
        unknown: rows.find((r) => r.licence === UNKNOWN_LICENCE_KEY)?.verdict ?? config.LICENCE_UNKNOWN_VERDICT,
        total: rows.length,
      };
    },
  );

  app.post<{ Body: { licence: string; verdict: LicenceVerdict } }>(
    "/api/admin/licenses",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        summary: "Add a licence to the policy (409 if it is already listed; change it with PUT)",
        security,
        body: {
          type: "object",
          additionalProperties: false,
          required: ["licence", "verdict"],
          properties: { licence: { type: "string", minLength: 1, maxLength: 200 }, verdict: verdictSchema },
        },
        response: { 201: entry, ...errorResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const licence = canonicalPolicyKey(request.body.licence);
      const { count } = await db.licencePolicy.createMany({
        data: [{ licence, verdict: request.body.verdict, updatedBy: request.user.name }],
        skipDuplicates: true,
      });
      if (count === 0) throw new AppError("conflict", `${licence} is already in the licence policy; change it with PUT /api/admin/licenses/${licence}`);
      const row = await db.licencePolicy.findUniqueOrThrow({ where: { licence } });
      request.log.info({ licence, verdict: row.verdict }, "licence policy entry added");
      return reply.status(201).send(view(row));
    },
  );

  app.put<{ Params: { licence: string }; Body: { verdict: LicenceVerdict } }>(
    "/api/admin/licenses/:licence",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        summary: "Change a licence's verdict",
        security,
        params: licenceParam,
        body: { type: "object", additionalProperties: false, required: ["verdict"], properties: { verdict: verdictSchema } },
        response: { 200: entry, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const licence = canonicalPolicyKey(request.params.licence);
      const { count } = await db.licencePolicy.updateMany({
        where: { licence },
        data: { verdict: request.body.verdict, updatedBy: request.user.name, updatedAt: new Date() },
      });
      if (count === 0) throw new AppError("not_found", `${licence} is not in the licence policy; add it with POST /api/admin/licenses`);
      const row = await db.licencePolicy.findUniqueOrThrow({ where: { licence } });
      request.log.info({ licence, verdict: row.verdict }, "licence policy entry changed");
      return view(row);
    },
  );

  app.delete<{ Params: { licence: string } }>(
    "/api/admin/licenses/:licence",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        summary: "Remove a licence from the policy (it then gets the `unknown` verdict; removing `unknown` falls back to LICENCE_UNKNOWN_VERDICT)",
        security,
        params: licenceParam,
        response: { 204: { type: "null" }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const licence = canonicalPolicyKey(request.params.licence);
      const { count } = await db.licencePolicy.deleteMany({ where: { licence } });
      if (count === 0) throw new AppError("not_found", `${licence} is not in the licence policy`);
      request.log.info({ licence }, "licence policy entry removed");
      return reply.status(204).send();
    },
  );
}
