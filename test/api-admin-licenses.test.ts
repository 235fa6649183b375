import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalPolicyKey } from "../api/routes/admin-licenses.ts";
import { evaluateLicence } from "../src/policy/licence-evaluate.ts";
import { defaultLicenceVerdicts } from "../src/policy/licence-defaults.ts";
import { cachedLicencePolicy, loadLicencePolicy } from "../src/policy/licence-policy-store.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
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

type Role = "user" | "approver" | "admin";
interface Entry {
  licence: string;
  verdict: string;
  updated_at: string;
  updated_by: string;
}

function expectError(res: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(res.statusCode, JSON.stringify(res.json())).toBe(status);
  const body = res.json() as { error: { code: string; message: string; hint: string } };
  expect(body.error).toMatchObject({ code, message: expect.any(String), hint: expect.any(String) });
  return body.error;
}

function call(method: "GET" | "POST" | "PUT" | "DELETE", url: string, role: Role | null = "admin", body?: unknown) {
  return app.inject({ method, url, headers: role ? ta.auth(role) : {}, ...(body === undefined ? {} : { payload: body as object }) });
}

async function list(): Promise<{ items: Entry[]; unknown: string | null; total: number }> {
  const res = await call("GET", "/api/admin/licenses");
  expect(res.statusCode).toBe(200);
  return res.json();
}

describe("seeded licence policy", () => {
  it("holds every default verdict; unknown comes from LICENCE_UNKNOWN_VERDICT (review)", async () => {
    const body = await list();
    const byLicence = new Map(body.items.map((e) => [e.licence, e.verdict]));
    expect(byLicence.get("MIT")).toBe("allow");
    expect(byLicence.get("GPL-3.0-only")).toBe("deny");
    expect(byLicence.get("CC-BY-4.0")).toBe("review");
    expect(byLicence.has("unknown")).toBe(false);
    expect(body.unknown).toBe("review");
    // the migration matches src/policy/licence-defaults.ts exactly
    expect(body.total).toBe(defaultLicenceVerdicts.length);
    for (const [id, verdict] of defaultLicenceVerdicts) expect(byLicence.get(id), id).toBe(verdict);
    expect(body.items.find((e) => e.licence === "MIT")!.updated_by).toBe("system");
  });
});

describe("/api/admin/licenses", () => {
  it("creates an entry under its canonical spelling and refuses a duplicate with 409", async () => {
    const res = await call("POST", "/api/admin/licenses", "admin", { licence: "beerware", verdict: "allow" });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ licence: "Beerware", verdict: "allow", updated_by: "admin1" });
    expectError(await call("POST", "/api/admin/licenses", "admin", { licence: "BEERWARE", verdict: "deny" }), 409, "conflict");
    expectError(await call("POST", "/api/admin/licenses", "admin", { licence: "mit", verdict: "deny" }), 409, "conflict");
    expect((await t.db.licencePolicy.findUniqueOrThrow({ where: { licence: "Beerware" } })).verdict).toBe("allow");

    const ref = await call("POST", "/api/admin/licenses", "admin", { licence: "licenseref-Acme-Internal", verdict: "allow" });
    expect(ref.statusCode).toBe(201);
    expect(ref.json()).toMatchObject({ licence: "LicenseRef-Acme-Internal" });
    const withException = await call("POST", "/api/admin/licenses", "admin", { licence: "gpl-2.0-only with classpath-exception-2.0", verdict: "review" });
    expect(withException.statusCode).toBe(201);
    expect(withException.json()).toMatchObject({ licence: "GPL-2.0-only WITH Classpath-exception-2.0", verdict: "review" });
  });

  it("validates licence ids and verdicts", async () => {
    for (const licence of ["NOT-A-LICENCE", "MIT OR ISC", "MIT WITH no-such-exception", "LicenseRef-", "", "Apache 2"]) {
      expectError(await call("POST", "/api/admin/licenses", "admin", { licence, verdict: "allow" }), 400, "validation_failed");
    }
    expectError(await call("POST", "/api/admin/licenses", "admin", { licence: "Zed", verdict: "maybe" }), 400, "validation_failed");
    expectError(await call("POST", "/api/admin/licenses", "admin", { licence: "Zed" }), 400, "validation_failed");
    expectError(await call("POST", "/api/admin/licenses", "admin", { licence: "Zed", verdict: "allow", extra: 1 }), 400, "validation_failed");
    expectError(await call("PUT", "/api/admin/licenses/MIT", "admin", { verdict: "sometimes" }), 400, "validation_failed");
    expectError(await call("PUT", "/api/admin/licenses/NOPE-1.0", "admin", { verdict: "deny" }), 400, "validation_failed");
    expect(canonicalPolicyKey(" Unknown ")).toBe("unknown");
    expect(canonicalPolicyKey("gpl-3.0")).toBe("GPL-3.0");
    expect(await t.db.licencePolicy.findUnique({ where: { licence: "Zed" } })).toBeNull();
  });

  it("updates a verdict (404 when missing) and records who changed it", async () => {
    const res = await call("PUT", "/api/admin/licenses/mpl-2.0", "admin", { verdict: "allow" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ licence: "MPL-2.0", verdict: "allow", updated_by: "admin1" });
    const row = await t.db.licencePolicy.findUniqueOrThrow({ where: { licence: "MPL-2.0" } });
    expect(row).toMatchObject({ verdict: "allow", updatedBy: "admin1" });
    expect(row.updatedAt.getTime()).toBeGreaterThan(Date.now() - 60_000);
    expectError(await call("PUT", "/api/admin/licenses/Zlib-acknowledgement", "admin", { verdict: "allow" }), 404, "not_found");
    const encoded = await call("PUT", `/api/admin/licenses/${encodeURIComponent("GPL-2.0-only WITH Classpath-exception-2.0")}`, "admin", { verdict: "allow" });
    expect(encoded.statusCode, encoded.body).toBe(200);
  });

  it("deletes an entry (404 when missing); deleting the unknown row falls back to the environment", async () => {
    expect((await call("DELETE", "/api/admin/licenses/beerware")).statusCode).toBe(204);
    expect(await t.db.licencePolicy.findUnique({ where: { licence: "Beerware" } })).toBeNull();
    expectError(await call("DELETE", "/api/admin/licenses/Beerware"), 404, "not_found");
    expect((await call("POST", "/api/admin/licenses", "admin", { licence: "unknown", verdict: "deny" })).statusCode).toBe(201);
    expect((await list()).unknown).toBe("deny");
    expect((await call("DELETE", "/api/admin/licenses/unknown")).statusCode).toBe(204);
    expect((await list()).unknown).toBe("review");
  });

  it("is for admins only", async () => {
    for (const role of ["approver", "user"] as const) {
      expectError(await call("GET", "/api/admin/licenses", role), 403, "forbidden");
      expectError(await call("POST", "/api/admin/licenses", role, { licence: "Zed", verdict: "allow" }), 403, "forbidden");
      expectError(await call("PUT", "/api/admin/licenses/MIT", role, { verdict: "deny" }), 403, "forbidden");
      expectError(await call("DELETE", "/api/admin/licenses/MIT", role), 403, "forbidden");
    }
    expectError(await call("GET", "/api/admin/licenses", null), 401, "unauthorized");
    expect((await t.db.licencePolicy.findUniqueOrThrow({ where: { licence: "MIT" } })).verdict).toBe("allow");
  });

  it("changes what the worker's policy loader sees", async () => {
    const cached = cachedLicencePolicy(t.db, "review", 50);
    const before = await loadLicencePolicy(t.db, "allow");
    expect(before.verdicts.get("ISC")).toBe("allow");
    expect(before.unknown).toBe("allow"); // no `unknown` row: the configured default decides
    expect(evaluateLicence("ISC", before).verdict).toBe("allow");
    expect((await cached()).verdicts.get("ISC")).toBe("allow");

    expect((await call("PUT", "/api/admin/licenses/ISC", "admin", { verdict: "deny" })).statusCode).toBe(200);
    expect((await call("POST", "/api/admin/licenses", "admin", { licence: "unknown", verdict: "deny" })).statusCode).toBe(201);
    expect((await call("POST", "/api/admin/licenses", "admin", { licence: "Zed", verdict: "allow" })).statusCode).toBe(201);

    const after = await loadLicencePolicy(t.db, "allow");
    expect(after.verdicts.get("ISC")).toBe("deny");
    expect(after.verdicts.get("Zed")).toBe("allow");
    expect(after.unknown).toBe("deny");
    expect(evaluateLicence("ISC", after).verdict).toBe("deny");
    expect(evaluateLicence("Zed", after).verdict).toBe("allow");
    expect(evaluateLicence("SEE LICENSE IN LICENSE.txt", after).verdict).toBe("deny");

    await new Promise((resolve) => setTimeout(resolve, 80));
    expect((await cached()).verdicts.get("ISC")).toBe("deny");
  });
});
