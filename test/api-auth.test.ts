import { createHmac } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../api/app.ts";
import { authenticate, createUser } from "../src/auth/users.ts";
import { verifyPassword } from "../src/auth/password.ts";
import { AppError } from "../src/errors.ts";
import { buildTestApp, TEST_JWT_SECRET, testConfig, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;
let app: FastifyInstance;

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
  app = ta.app;
});
afterAll(async () => {
  await app?.close();
  await t?.drop();
});

const b64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");

/** An HS256 JWT built by hand (so claims such as a past `exp` need no help from the library). */
function signHs256(payload: Record<string, unknown>, secret = TEST_JWT_SECRET, header: Record<string, unknown> = { alg: "HS256", typ: "JWT" }): string {
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${signingInput}.${createHmac("sha256", secret).update(signingInput).digest("base64url")}`;
}

function decodePayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
}

const now = () => Math.floor(Date.now() / 1000);

function me(token: string | null) {
  return app.inject({ method: "GET", url: "/api/auth/me", headers: token === null ? {} : { authorization: `Bearer ${token}` } });
}

function login(body: unknown) {
  return app.inject({ method: "POST", url: "/api/auth/login", payload: body as Record<string, unknown> });
}

function expectError(res: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { error: { code: string; message: string; hint: string } };
  expect(body.error).toMatchObject({ code, message: expect.any(String), hint: expect.any(String) });
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.hint.length).toBeGreaterThan(0);
  return body.error;
}

describe("login", () => {
  it("exchanges valid credentials for a token that works on /api/auth/me and carries the role", async () => {
    const res = await login({ username: "approver1", password: "approver-password" });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { token: string; expires_in: number; role: string };
    expect(body.role).toBe("approver");
    expect(body.expires_in).toBe(43_200);
    const claims = decodePayload(body.token);
    expect(claims).toMatchObject({ name: "approver1", role: "approver", sub: expect.any(String) });
    expect((claims.exp as number) - (claims.iat as number)).toBe(43_200);

    const who = await me(body.token);
    expect(who.statusCode).toBe(200);
    const user = await t.db.user.findUniqueOrThrow({ where: { username: "approver1" } });
    const meBody = who.json() as { id: number; username: string; role: string; expires_at: string };
    expect(meBody).toMatchObject({ id: user.id, username: "approver1", role: "approver" });
    const expiresIn = (Date.parse(meBody.expires_at) - Date.now()) / 1000;
    expect(expiresIn).toBeGreaterThan(43_200 - 60);
    expect(expiresIn).toBeLessThanOrEqual(43_200 + 1);
  });

  it("answers 401 invalid_credentials with the same message for a wrong password and an unknown user", async () => {
    const wrong = expectError(await login({ username: "user1", password: "not-the-password" }), 401, "invalid_credentials");
    const unknown = expectError(await login({ username: "nobody-here", password: "user-password" }), 401, "invalid_credentials");
    expect(wrong.message).toBe(unknown.message);
    expect(wrong.hint).toBe(unknown.hint);
  });

  it.each([
    ["no username", { password: "x" }],
    ["no password", { username: "user1" }],
    ["empty username", { username: "", password: "x" }],
    ["an object as username", { username: { a: 1 }, password: "x" }],
    ["a too long username", { username: "u".repeat(65), password: "x" }],
    ["an extra field", { username: "user1", password: "user-password", role: "admin" }],
    ["an empty object", {}],
  ])("answers 400 validation_failed for %s", async (_label, body) => {
    expectError(await login(body), 400, "validation_failed");
  });

  it("answers 400 for a missing or non-JSON body", async () => {
    const none = await app.inject({ method: "POST", url: "/api/auth/login" });
    expect(none.statusCode).toBe(400);
    expect((none.json() as { error: { code: string } }).error.code).toMatch(/^(validation_failed|bad_request)$/);
    const garbage = await app.inject({ method: "POST", url: "/api/auth/login", headers: { "content-type": "application/json" }, payload: "{nope" });
    expect(garbage.statusCode).toBe(400);
    expect((garbage.json() as { error: { hint: string } }).error.hint).toEqual(expect.any(String));
  });
});

describe("tokens", () => {
  /** Every /api route from the OpenAPI document except login, with path parameters filled in. */
  function apiRoutes(): { method: string; url: string }[] {
    const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
    const routes: { method: string; url: string }[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/api/") || path === "/api/auth/login") continue;
      for (const method of Object.keys(ops)) {
        if (!["get", "post", "put", "patch", "delete"].includes(method)) continue;
        routes.push({ method: method.toUpperCase(), url: path.replace(/\{[^}]+\}/g, "1") });
      }
    }
    return routes;
  }

  it("refuses every /api route without a token: 401 with { error: { code, message, hint } }", async () => {
    const routes = apiRoutes();
    const urls = routes.map((r) => `${r.method} ${r.url}`);
    for (const expected of [
      "GET /api/auth/me",
      "POST /api/packages/upload",
      "GET /api/packages/requests",
      "GET /api/packages/requests/1",
      "GET /api/packages/requests/1/processing-status",
      "GET /api/packages/processing/status",
      "POST /api/packages/processing/retry",
    ]) {
      expect(urls).toContain(expected);
    }
    for (const route of routes) {
      const res = await app.inject({ method: route.method as "GET", url: route.url });
      expect(res.statusCode, `${route.method} ${route.url}`).toBe(401);
      const body = res.json() as Record<string, unknown>;
      expect(Object.keys(body)).toEqual(["error"]);
      expect(body.error).toMatchObject({ code: "unauthorized", message: expect.any(String), hint: expect.any(String) });
    }
  });

  it("refuses a malformed Authorization header", async () => {
    for (const authorization of [`Basic ${ta.tokens.user}`, "Bearer", "Bearer not.a.jwt", ta.tokens.user, `Bearer ${ta.tokens.user}x`]) {
      const res = await app.inject({ method: "GET", url: "/api/auth/me", headers: { authorization } });
      expectError(res, 401, "unauthorized");
    }
  });

  it("accepts a token built by hand with the right secret (so the checks below test what they claim)", async () => {
    const user = await t.db.user.findUniqueOrThrow({ where: { username: "user1" } });
    const token = signHs256({ sub: String(user.id), name: "user1", role: "user", iat: now(), exp: now() + 60 });
    expect((await me(token)).statusCode).toBe(200);
  });

  it("answers 401 token_expired for an expired token", async () => {
    const token = signHs256({ sub: "1", name: "user1", role: "user", iat: now() - 3600, exp: now() - 10 });
    const error = expectError(await me(token), 401, "token_expired");
    expect(error.hint).toMatch(/log in again/i);
    // also one the app signed itself
    const short = app.jwt.sign({ sub: "1", name: "user1", role: "user" }, { expiresIn: 1 });
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    expectError(await me(short), 401, "token_expired");
  });

  it("refuses an unsigned alg:none token", async () => {
    const payload = { sub: "1", name: "admin1", role: "admin", iat: now(), exp: now() + 600 };
    const unsigned = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify(payload))}.`;
    expectError(await me(unsigned), 401, "unauthorized");
    // alg:none with a signature part left in place
    const withSig = `${unsigned}${createHmac("sha256", TEST_JWT_SECRET).update("x").digest("base64url")}`;
    expectError(await me(withSig), 401, "unauthorized");
  });

  it("refuses another HMAC algorithm than HS256, even with the right secret", async () => {
    const payload = { sub: "1", name: "admin1", role: "admin", iat: now(), exp: now() + 600 };
    const header = { alg: "HS512", typ: "JWT" };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
    const token = `${signingInput}.${createHmac("sha512", TEST_JWT_SECRET).update(signingInput).digest("base64url")}`;
    expectError(await me(token), 401, "unauthorized");
  });

  it("refuses a token signed with another secret", async () => {
    const token = signHs256({ sub: "1", name: "admin1", role: "admin", iat: now(), exp: now() + 600 }, "another-secret-0123456789-0123456789-xyz");
    expectError(await me(token), 401, "unauthorized");
  });

  it("refuses a token whose payload was edited (forged role, signature kept)", async () => {
    const [header, payload, signature] = ta.tokens.user.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
    expect(claims.role).toBe("user");
    const forged = `${header}.${b64url(JSON.stringify({ ...claims, role: "admin" }))}.${signature}`;
    expectError(await me(forged), 401, "unauthorized");
  });

  it("refuses a validly signed token with missing or unknown claims", async () => {
    for (const claims of [
      { sub: "1", name: "x", role: "superuser" },
      { sub: "1", name: "x" },
      { name: "x", role: "admin" },
      { sub: 1, name: "x", role: "admin" },
      { sub: "1", role: "admin" },
      { sub: "1", name: 5, role: "admin" },
    ]) {
      const token = signHs256({ ...claims, iat: now(), exp: now() + 600 });
      expectError(await me(token), 401, "unauthorized");
    }
  });
});

describe("roles", () => {
  it("answers 403 forbidden to a valid token with too low a role on the real role-restricted routes", async (ctx) => {
    const routes = [
      { url: "/api/approver/packages/validated", allowed: "approver" as const, denied: "user" as const },
      { url: "/api/admin/licenses", allowed: "admin" as const, denied: "approver" as const },
    ].filter((r) => app.hasRoute({ method: "GET", url: r.url }));
    if (routes.length === 0) ctx.skip();
    for (const r of routes) {
      const denied = await app.inject({ method: "GET", url: r.url, headers: ta.auth(r.denied) });
      const error = expectError(denied, 403, "forbidden");
      expect(error.message).toContain(r.allowed);
      const ok = await app.inject({ method: "GET", url: r.url, headers: ta.auth(r.allowed) });
      expect(ok.statusCode, `${r.url}: ${ok.body}`).toBe(200);
      expect((await app.inject({ method: "GET", url: r.url, headers: ta.auth("admin") })).statusCode).toBe(200);
    }
  });

  let roleApp: FastifyInstance;
  beforeAll(async () => {
    // requireRole itself, on routes of its own (registered on a fresh app before it is ready).
    roleApp = await buildApp({ config: testConfig(), db: t.db, jwtSecret: TEST_JWT_SECRET, logger: false });
    roleApp.get("/api/test/approver-only", { onRequest: roleApp.requireRole("approver") }, async () => ({ ok: true }));
    roleApp.get("/api/test/admin-only", { onRequest: roleApp.requireRole("admin") }, async () => ({ ok: true }));
    await roleApp.ready();
  });
  afterAll(async () => roleApp?.close());

  const call = (url: string, token?: string) =>
    roleApp.inject({ method: "GET", url, headers: token ? { authorization: `Bearer ${token}` } : {} });

  it("answers 403 forbidden to a valid token with too low a role, 200 to a high enough one", async () => {
    const error = expectError(await call("/api/test/approver-only", ta.tokens.user), 403, "forbidden");
    expect(error.message).toContain("approver");
    expect((await call("/api/test/approver-only", ta.tokens.approver)).statusCode).toBe(200);
    expect((await call("/api/test/approver-only", ta.tokens.admin)).statusCode).toBe(200);
    expectError(await call("/api/test/admin-only", ta.tokens.approver), 403, "forbidden");
    expect((await call("/api/test/admin-only", ta.tokens.admin)).statusCode).toBe(200);
  });

  it("answers 401 (not 403) without a token or with a forged one", async () => {
    expectError(await call("/api/test/approver-only"), 401, "unauthorized");
    const [header, payload, signature] = ta.tokens.user.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
    const forged = `${header}.${b64url(JSON.stringify({ ...claims, role: "approver" }))}.${signature}`;
    expectError(await call("/api/test/approver-only", forged), 401, "unauthorized");
  });
});

describe("health", () => {
  it("/health and /ready need no token; /ready is 200 with a live database", async () => {
    const health = await app.inject({ method: "GET", url: "/health" });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: "ok" });
    const ready = await app.inject({ method: "GET", url: "/ready" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: "ready" });
  });

  it("unknown routes answer 404 in the error shape", async () => {
    expectError(await app.inject({ method: "GET", url: "/api/nope", headers: ta.auth("user") }), 404, "not_found");
  });
});

describe("users", () => {
  async function codeOf(promise: Promise<unknown>): Promise<string> {
    try {
      await promise;
    } catch (err) {
      expect(err).toBeInstanceOf(AppError);
      return (err as AppError).code;
    }
    throw new Error("expected an AppError");
  }

  it("creates a user whose password is stored scrypt-hashed, never in plain text", async () => {
    const created = await createUser(t.db, "carol", "correct horse battery", "user");
    expect(created).toMatchObject({ username: "carol", role: "user" });
    const row = await t.db.user.findUniqueOrThrow({ where: { username: "carol" } });
    expect(row.passwordHash.startsWith("scrypt$")).toBe(true);
    expect(row.passwordHash).not.toContain("correct horse battery");
    expect(row.passwordHash.split("$")).toHaveLength(6);
    expect(await verifyPassword("correct horse battery", row.passwordHash)).toBe(true);
    expect(await verifyPassword("wrong", row.passwordHash)).toBe(false);
    // two users with the same password get different hashes (salted)
    await createUser(t.db, "dave", "correct horse battery", "user");
    const dave = await t.db.user.findUniqueOrThrow({ where: { username: "dave" } });
    expect(dave.passwordHash).not.toBe(row.passwordHash);
    // and can log in through the API
    const res = await login({ username: "carol", password: "correct horse battery" });
    expect(res.statusCode).toBe(200);
    expect((res.json() as { role: string }).role).toBe("user");
  });

  it("refuses a duplicate username (conflict) and a short password or bad username (validation_failed)", async () => {
    expect(await codeOf(createUser(t.db, "carol", "another-long-password", "admin"))).toBe("conflict");
    expect(await codeOf(createUser(t.db, "erin", "short", "user"))).toBe("validation_failed");
    expect(await codeOf(createUser(t.db, "erin", "1234567", "user"))).toBe("validation_failed");
    expect(await codeOf(createUser(t.db, "", "long-enough-password", "user"))).toBe("validation_failed");
    expect(await codeOf(createUser(t.db, "bad name", "long-enough-password", "user"))).toBe("validation_failed");
    expect(await codeOf(createUser(t.db, "-dash", "long-enough-password", "user"))).toBe("validation_failed");
    expect(await t.db.user.count({ where: { username: { in: ["erin", "", "bad name", "-dash"] } } })).toBe(0);
    // exactly 8 characters is enough
    await expect(createUser(t.db, "erin", "12345678", "user")).resolves.toMatchObject({ username: "erin" });
  });

  it("authenticate() checks the password and gives the same error for an unknown user", async () => {
    await expect(authenticate(t.db, "carol", "correct horse battery")).resolves.toMatchObject({ username: "carol", role: "user" });
    const wrong = await authenticate(t.db, "carol", "nope").catch((e: AppError) => e);
    const unknown = await authenticate(t.db, "nobody", "nope").catch((e: AppError) => e);
    expect(wrong).toBeInstanceOf(AppError);
    expect(unknown).toBeInstanceOf(AppError);
    expect((wrong as AppError).code).toBe("invalid_credentials");
    expect((unknown as AppError).message).toBe((wrong as AppError).message);
  });
});

describe("login rate limit", () => {
  it("answers 429 rate_limited after LOGIN_RATE_LIMIT attempts per minute for one username", async () => {
    const limited = await buildTestApp(t.db, { LOGIN_RATE_LIMIT: "3" });
    const attempt = () =>
      limited.app.inject({ method: "POST", url: "/api/auth/login", payload: { username: "user1", password: "wrong-password" } });
    for (let i = 0; i < 3; i++) expect((await attempt()).statusCode).toBe(401);
    const res = await attempt();
    expect(res.statusCode).toBe(429);
    expect(res.json().error.code).toBe("rate_limited");
    // another username from the same address is not affected
    const other = await limited.app.inject({ method: "POST", url: "/api/auth/login", payload: { username: "admin1", password: "admin-password" } });
    expect(other.statusCode).toBe(200);
    await limited.app.close();
  });
});
