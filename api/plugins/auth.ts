/**
 * Bearer JWT auth (HS256 only, `JWT_SECRET`): tokens carry `sub` (user id), `name`, `role` and `exp`.
 * `app.authenticate` verifies; `app.requireRole(role)` also checks the role (403 otherwise).
 *
 * A token that verified is remembered (by its exact Authorization header) until it expires, so the
 * many requests of one install (`/npm/` packuments and tarballs) do not each decode the token and
 * compute its HMAC again: the tokens accepted are exactly those the verifier accepts (an entry is
 * used only before the token's `exp`; failures are never remembered and are verified every time).
 */
import fastifyJwt from "@fastify/jwt";
import { LRUCache } from "lru-cache";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { hasRole, type UserRole } from "../../src/auth/users.ts";
import { AppError } from "../../src/errors.ts";

export interface TokenClaims {
  sub: string;
  name: string;
  role: UserRole;
}

declare module "@fastify/jwt" {
  interface FastifyJWT {
    payload: TokenClaims;
    user: TokenClaims & { iat: number; exp: number };
  }
}

declare module "fastify" {
  interface FastifyInstance {
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    requireRole: (role: UserRole) => (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

/** Verified Authorization headers kept (least recently used dropped first beyond this). */
const MAX_VERIFIED = 10_000;

export default fp(async function auth(app: FastifyInstance, opts: { secret: string; ttl: string }) {
  await app.register(fastifyJwt, {
    secret: opts.secret,
    sign: { algorithm: "HS256", expiresIn: opts.ttl },
    verify: { algorithms: ["HS256"] },
  });
  const verified = new LRUCache<string, { user: FastifyRequest["user"]; expiresAtMs: number }>({ max: MAX_VERIFIED });
  const authenticate = async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    const known = header === undefined ? undefined : verified.get(header);
    if (known) {
      if (Date.now() < known.expiresAtMs) {
        request.user = { ...known.user };
        return;
      }
      verified.delete(header!);
    }
    try {
      await request.jwtVerify();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "FST_JWT_AUTHORIZATION_TOKEN_EXPIRED") throw new AppError("token_expired", "the token has expired");
      throw new AppError("unauthorized", code === "FST_JWT_NO_AUTHORIZATION_IN_HEADER" ? "no Bearer token" : "invalid token");
    }
    const u = request.user;
    // `name` is checked too: routes record it as the actor (uploaded_by_name, package_event.actor).
    if (
      typeof u?.sub !== "string" ||
      typeof u.name !== "string" ||
      typeof u.role !== "string" ||
      !["user", "approver", "admin"].includes(u.role)
    ) {
      throw new AppError("unauthorized", "token is missing claims");
    }
    // only tokens whose validity is a plain time window ending at `exp` (ours: no nbf)
    if (header !== undefined && typeof u.exp === "number" && (u as { nbf?: unknown }).nbf === undefined) {
      verified.set(header, { user: { ...u }, expiresAtMs: u.exp * 1000 });
    }
  };
  app.decorate("authenticate", authenticate);
  app.decorate("requireRole", (role: UserRole) => async (request: FastifyRequest) => {
    await authenticate(request);
    if (!hasRole(request.user, role)) throw new AppError("forbidden", `needs role ${role}; you are ${request.user.role}`);
  });
});
