/** CycloneDX 1.5 SBOM of a request's packages, with the vetting outcome of each (src/audit/sbom.ts). */
import type { FastifyInstance } from "fastify";
import { requestSbom } from "../../src/audit/sbom.ts";
import { AppError } from "../../src/errors.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses, idParam } from "../schemas.ts";

const property = { type: "object", properties: { name: { type: "string" }, value: { type: "string" } } } as const;

const component = {
  type: "object",
  properties: {
    type: { type: "string" },
    "bom-ref": { type: "string" },
    group: { type: "string" },
    name: { type: "string" },
    version: { type: "string" },
    description: { type: "string" },
    purl: { type: "string" },
    licenses: { type: "array", items: { type: "object", properties: { expression: { type: "string" } } } },
    hashes: { type: "array", items: { type: "object", properties: { alg: { type: "string" }, content: { type: "string" } } } },
    properties: { type: "array", items: property },
  },
} as const;

export default async function sbomRoutes(app: FastifyInstance, { db }: AppDeps) {
  app.get<{ Params: { id: number } }>(
    "/api/packages/requests/:id/sbom",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["status"],
        summary: "CycloneDX 1.5 SBOM (JSON) of a request's packages, with licences, tarball hashes and each package's vetting outcome",
        security: [{ bearer: [] }],
        params: idParam,
        response: {
          200: {
            type: "object",
            properties: {
              bomFormat: { type: "string" },
              specVersion: { type: "string" },
              serialNumber: { type: "string" },
              version: { type: "integer" },
              metadata: {
                type: "object",
                properties: {
                  timestamp: { type: "string" },
                  tools: {
                    type: "object",
                    properties: {
                      components: {
                        type: "array",
                        items: { type: "object", properties: { type: { type: "string" }, name: { type: "string" }, version: { type: "string" } } },
                      },
                    },
                  },
                  component,
                  properties: { type: "array", items: property },
                },
              },
              components: { type: "array", items: component },
            },
          },
          ...errorResponses(400, 401, 404),
        },
      },
    },
    async (request, reply) => {
      const bom = await requestSbom(db, request.params.id);
      if (!bom) throw new AppError("request_not_found", `no request ${request.params.id}`);
      void reply.type("application/vnd.cyclonedx+json; version=1.5");
      return bom;
    },
  );
}
