/** Every route is documented: a summary and response schemas, and an entry in the OpenAPI document at /docs. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../api/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { TEST_JWT_SECRET, testConfig } from "./support/app.ts";

let t: TestDatabase;
let app: FastifyInstance;

beforeAll(async () => {
  t = await createTestDatabase();
  app = await buildApp({ config: testConfig(), db: t.db, jwtSecret: TEST_JWT_SECRET, logger: false });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await t?.drop();
});

/** Fastify's `:param` (optionally regex-constrained) and `*` → OpenAPI's `{param}` and `{*}`. */
function openapiPath(url: string): string {
  return url.replace(/:(\w+)(\([^)]*\))?/g, "{$1}").replace(/\*$/, "{*}");
}

describe("OpenAPI document", () => {
  it("documents every route with a summary and response schemas", async () => {
    const res = await app.inject({ method: "GET", url: "/docs/json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as { paths: Record<string, Record<string, { summary?: string; responses?: Record<string, unknown> }>> };
    const routes = app.routeTable.filter((r) => r.method !== "HEAD" && !r.url.startsWith("/docs") && !r.schema?.hide);
    expect(routes.length).toBeGreaterThan(15);
    const problems: string[] = [];
    for (const r of routes) {
      const name = `${r.method} ${r.url}`;
      if (!r.schema?.summary) problems.push(`${name}: no summary`);
      if (!r.schema?.response || Object.keys(r.schema.response).length === 0) problems.push(`${name}: no response schema`);
      const op = doc.paths[openapiPath(r.url)]?.[r.method.toLowerCase()];
      if (!op) problems.push(`${name}: missing from /docs/json`);
    }
    expect(problems).toEqual([]);
  });
});
