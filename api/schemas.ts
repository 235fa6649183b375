/** Shared JSON schemas for route definitions (validation and the OpenAPI document at /docs). */

export const errorBody = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message", "hint"],
      properties: { code: { type: "string" }, message: { type: "string" }, hint: { type: "string" }, details: {} },
    },
  },
} as const;

/** Response schemas for the given error statuses, all in the one error shape. */
export function errorResponses(...statuses: number[]): Record<number, typeof errorBody> {
  return Object.fromEntries(statuses.map((s) => [s, errorBody]));
}

export const statusEnum = {
  type: "string",
  enum: ["requested", "checking_licence", "licence_checked", "downloading", "downloaded", "scanning", "pending_approval", "approved", "rejected", "failed"],
} as const;

export const statusCounts = {
  type: "object",
  additionalProperties: { type: "integer" },
} as const;

export const idParam = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "integer", minimum: 1, maximum: 2147483647 } },
} as const;

export const codeMessage = {
  type: ["object", "null"],
  properties: { code: { type: "string" }, message: { type: ["string", "null"] } },
} as const;

/** The fields every package row view shares (request progress lists, package detail). */
export const packageRowProperties = {
  id: { type: "integer" },
  name: { type: "string" },
  version: { type: "string" },
  status: { type: "string" },
  attempts: { type: "integer" },
  last_error: codeMessage,
  reason: codeMessage,
  updated_at: { type: "string" },
} as const;
