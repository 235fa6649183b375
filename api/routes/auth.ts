import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance } from "fastify";
import { AppError } from "../../src/errors.ts";
import { authenticate } from "../../src/auth/users.ts";
import { durationSeconds } from "../../src/config.ts";
import type { AppDeps } from "../app.ts";
import { errorResponses } from "../schemas.ts";

export default async function authRoutes(app: FastifyInstance, { db, config }: AppDeps) {
  // Brute-force brake: LOGIN_RATE_LIMIT attempts per minute per client address and username.
  await app.register(rateLimit, { global: false });
  app.post<{ Body: { username: string; password: string } }>(
    "/api/auth/login",
    {
      config: {
        rateLimit: {
          max: config.LOGIN_RATE_LIMIT,
          timeWindow: "1 minute",
          hook: "preHandler",
          keyGenerator: (request) => `${request.ip}|${(request.body as { username?: string } | undefined)?.username ?? ""}`,
          errorResponseBuilder: (_request, context) =>
            new AppError("rate_limited", `too many login attempts; try again in ${Math.ceil(context.ttl / 1000)} s`),
        },
      },
      schema: {
        tags: ["auth"],
        summary: "Exchange a username and password for a Bearer token",
        body: {
          type: "object",
          required: ["username", "password"],
          additionalProperties: false,
          properties: { username: { type: "string", minLength: 1, maxLength: 64 }, password: { type: "string", minLength: 1, maxLength: 1024 } },
        },
        response: {
          200: {
            type: "object",
            required: ["token", "expires_in", "role"],
            properties: { token: { type: "string" }, expires_in: { type: "integer" }, role: { type: "string" } },
          },
          ...errorResponses(400, 401, 429),
        },
      },
    },
    async (request) => {
      const user = await authenticate(db, request.body.username, request.body.password);
      const token = app.jwt.sign({ sub: String(user.id), name: user.username, role: user.role });
      return { token, expires_in: durationSeconds(config.JWT_TTL), role: user.role };
    },
  );

  app.get(
    "/api/auth/me",
    {
      onRequest: app.authenticate,
      schema: {
        tags: ["auth"],
        summary: "Who the token belongs to",
        security: [{ bearer: [] }],
        response: {
          200: { type: "object", properties: { id: { type: "integer" }, username: { type: "string" }, role: { type: "string" }, expires_at: { type: "string" } } },
          ...errorResponses(401),
        },
      },
    },
    async (request) => ({
      id: Number(request.user.sub),
      username: request.user.name,
      role: request.user.role,
      expires_at: new Date(request.user.exp * 1000).toISOString(),
    }),
  );
}
