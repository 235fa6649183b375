/**
 * Hostile input through the real API: a corpus of malformed and adversarial lockfiles and tokens.
 * Every refusal is a 4xx in the error shape and writes nothing (request, package, package_event and
 * request_package counts unchanged); nothing pollutes Object.prototype; a 100k-entry lockfile is
 * accepted in bulk, and the API keeps answering /health while that upload is in flight.
 */
import { createHmac, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rowCounts, uploadMultipart, uploadRaw, type Json, type RowCounts } from "../support/api-helpers.ts";
import { buildTestApp, TEST_JWT_SECRET, type TestApp } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { waitFor } from "../support/worker.ts";

let t: TestDatabase;
let ta: TestApp;
const MAX_UPLOAD_BYTES = 24 * 1024 * 1024;

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db, { MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES) });
});
afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

type Res = { statusCode: number; body: string; json(): unknown };

function errorOf(res: Res): { code: string; message: string; hint: string } {
  const body = res.json() as { error: { code: string; message: string; hint: string } };
  expect(body.error).toMatchObject({ code: expect.any(String), message: expect.any(String), hint: expect.any(String) });
  return body.error;
}

const v3 = (packages: Json, extra: Json = {}) =>
  JSON.stringify({ name: "app", version: "1.0.0", lockfileVersion: 3, requires: true, ...extra, packages: { "": { name: "app", version: "1.0.0" }, ...packages } });
const v1 = (dependencies: Json) => JSON.stringify({ name: "app", version: "1.0.0", lockfileVersion: 1, requires: true, dependencies });

/** `length` random lowercase letters: incompressible, so PostgreSQL cannot squeeze it under the btree row limit. */
function randomName(length: number): string {
  return Array.from(randomBytes(length), (b) => String.fromCharCode(97 + (b % 26))).join("");
}

function deepV1(depth: number): string {
  return `{"lockfileVersion":1,"dependencies":${'{"deep-a":{"version":"1.0.0","dependencies":'.repeat(depth)}{}${"}}".repeat(depth)}}`;
}

interface Case {
  label: string;
  body: string | Buffer;
  /** An exact status, or "4xx" for any client error. */
  status: number | "4xx";
  code?: string;
  contentType?: string;
}

const refusals: Case[] = [
  { label: "binary garbage", body: randomBytes(64 * 1024), status: 400, code: "not_json" },
  { label: "binary garbage as octet-stream", body: randomBytes(4096), status: 400, code: "not_json", contentType: "application/octet-stream" },
  { label: "a gzipped lockfile", body: gzipSync(v3({ "node_modules/gz": { version: "1.0.0" } })), status: 400, code: "not_json" },
  { label: "NUL bytes", body: Buffer.alloc(1024), status: 400, code: "not_json" },
  {
    label: "invalid UTF-8 (overlong encoding of '/')",
    body: Buffer.concat([Buffer.from('{"lockfileVersion":3,"packages":{"node_modules/a'), Buffer.from([0xc0, 0xaf]), Buffer.from('b":{"version":"1.0.0"}}}')]),
    status: 400,
    code: "not_json",
  },
  {
    label: "invalid UTF-8 (lone surrogate, CESU-8)",
    body: Buffer.concat([Buffer.from('{"lockfileVersion":3,"x":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('","packages":{"node_modules/a":{"version":"1.0.0"}}}')]),
    status: 400,
    code: "not_json",
  },
  { label: "UTF-16LE text", body: Buffer.from(v3({ "node_modules/u16": { version: "1.0.0" } }), "utf16le"), status: 400, code: "not_json" },
  { label: "JSON null", body: "null", status: 400, code: "not_json" },
  { label: "a JSON string", body: '"package-lock.json"', status: 400, code: "not_json" },
  { label: "a JSON number", body: "3", status: 400, code: "not_json" },
  { label: "a 5,000-level deep v1 tree", body: deepV1(5_000), status: "4xx", code: "lockfile_invalid" },
  { label: "a 100,000-level deep v1 tree", body: deepV1(100_000), status: "4xx", code: "lockfile_invalid" },
  { label: "deeply nested arrays (1M levels)", body: `{"lockfileVersion":3,"packages":${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}}`, status: 400, code: "lockfile_invalid" },
  { label: "unbalanced deep nesting", body: `{"lockfileVersion":3,"packages":${"[".repeat(200_000)}`, status: 400, code: "not_json" },
  // prototype pollution attempts
  {
    label: "__proto__ as a package key",
    body: '{"lockfileVersion":3,"packages":{"node_modules/ok-a":{"version":"1.0.0"},"node_modules/__proto__":{"version":"1.0.0","polluted":"yes"}}}',
    status: 400,
    code: "invalid_package_name",
  },
  {
    label: "__proto__ as an alias name",
    body: '{"lockfileVersion":3,"packages":{"node_modules/a":{"name":"__proto__","version":"1.0.0","polluted":"yes"}}}',
    status: 400,
    code: "invalid_package_name",
  },
  {
    label: "__proto__ in a v1 tree",
    body: '{"lockfileVersion":1,"dependencies":{"__proto__":{"version":"1.0.0","polluted":"yes","dependencies":{"x":{"version":"1.0.0"}}}}}',
    status: 400,
    code: "invalid_package_name",
  },
  {
    label: "__proto__ and constructor.prototype at the top with no packages",
    body: '{"lockfileVersion":3,"__proto__":{"polluted":"root"},"constructor":{"prototype":{"polluted":"ctor"}},"packages":{"__proto__":{"polluted":"key"}}}',
    status: 400,
    code: "lockfile_empty",
  },
  {
    label: "__proto__ as the lockfileVersion holder",
    body: '{"__proto__":{"lockfileVersion":3},"packages":{"node_modules/a":{"version":"1.0.0"}}}',
    status: 400,
    code: "lockfile_version_unsupported",
  },
  // path traversal
  { label: "../ in a v3 key", body: v3({ "node_modules/../../etc/passwd": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "../ nested after a real package", body: v3({ "node_modules/a/node_modules/../../../x": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "an absolute path as an alias name", body: v3({ "node_modules/a": { name: "/etc/passwd", version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a backslash traversal", body: v3({ "node_modules/..\\..\\windows": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "percent-encoded traversal", body: v3({ "node_modules/%2e%2e%2f%2e%2e%2fx": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "../ in a v1 key", body: v1({ "../../x": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a scoped traversal", body: v3({ "node_modules/@scope/../../x": { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  // numbers and nulls
  { label: "a number as a version", body: v3({ "node_modules/num": { version: 1 } }), status: 400, code: "lockfile_invalid" },
  { label: "a float as a version", body: v3({ "node_modules/num": { version: 1.5 } }), status: 400, code: "lockfile_invalid" },
  { label: "a number as a v1 version", body: v1({ num: { version: 100 } }), status: 400, code: "lockfile_invalid" },
  { label: "lockfileVersion null", body: JSON.stringify({ lockfileVersion: null, packages: { "node_modules/a": { version: "1.0.0" } } }), status: 400, code: "lockfile_version_unsupported" },
  { label: "packages null", body: JSON.stringify({ lockfileVersion: 3, packages: null }), status: 400, code: "lockfile_invalid" },
  { label: "an entry null", body: v3({ "node_modules/a": null }), status: 400, code: "lockfile_invalid" },
  { label: "version null", body: v3({ "node_modules/a": { version: null } }), status: 400, code: "lockfile_invalid" },
  { label: "resolved and integrity null", body: v3({ "node_modules/a": { version: "1.0.0", resolved: null, integrity: null } }), status: 400, code: "lockfile_invalid" },
  { label: "name null", body: v3({ "node_modules/a": { name: null, version: "1.0.0" } }), status: 400, code: "lockfile_invalid" },
  { label: "dependencies null in v1", body: JSON.stringify({ lockfileVersion: 1, dependencies: null }), status: 400, code: "lockfile_invalid" },
  { label: "a v1 child null", body: v1({ a: null }), status: 400, code: "lockfile_invalid" },
  { label: "an array as the packages map", body: JSON.stringify({ lockfileVersion: 3, packages: [{ version: "1.0.0" }] }), status: 400, code: "lockfile_invalid" },
  // very long names
  { label: "a 215-character name", body: v3({ [`node_modules/${"a".repeat(215)}`]: { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a 3,000-character name (over a btree index row)", body: v3({ [`node_modules/${randomName(3_000)}`]: { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a 10,000-character alias name", body: v3({ "node_modules/a": { name: randomName(10_000), version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a 215-character scoped name", body: v3({ [`node_modules/@s/${"d".repeat(212)}`]: { version: "1.0.0" } }), status: 400, code: "invalid_package_name" },
  { label: "a very long version", body: v3({ "node_modules/a": { version: `1.0.0-${"x".repeat(5_000)}` } }), status: 400, code: "invalid_version" },
];

describe("a corpus of malformed and adversarial lockfiles", () => {
  let baseline: RowCounts;
  beforeAll(async () => {
    baseline = await rowCounts(t.db);
  });

  it.each(refusals)("$label → refused with $code, nothing written", async (c) => {
    for (const res of [
      await uploadRaw(ta.app, ta.auth("user"), c.body, c.contentType ? { "content-type": c.contentType } : {}),
      await uploadMultipart(ta.app, ta.auth("user"), c.body),
    ]) {
      if (c.status === "4xx") {
        expect(res.statusCode, res.body.slice(0, 500)).toBeGreaterThanOrEqual(400);
        expect(res.statusCode, res.body.slice(0, 500)).toBeLessThan(500);
      } else {
        expect(res.statusCode, res.body.slice(0, 500)).toBe(c.status);
      }
      const error = errorOf(res);
      if (c.code) expect(error.code).toBe(c.code);
      // Messages stay short and printable whatever the input was.
      expect(error.message.length).toBeLessThan(1_000);
      // eslint-disable-next-line no-control-regex
      expect(error.message).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
    }
    expect(await rowCounts(t.db)).toEqual(baseline);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses a body over MAX_UPLOAD_BYTES with 413 (raw, octet-stream and multipart), writing nothing", async () => {
    const before = await rowCounts(t.db);
    const huge = Buffer.alloc(MAX_UPLOAD_BYTES + 1024, 0x20);
    huge.write('{"lockfileVersion":3,"packages":{');
    for (const res of [
      await uploadRaw(ta.app, ta.auth("user"), huge),
      await uploadRaw(ta.app, ta.auth("user"), huge, { "content-type": "application/octet-stream" }),
      await uploadMultipart(ta.app, ta.auth("user"), huge),
    ]) {
      expect(res.statusCode, res.body.slice(0, 300)).toBe(413);
      expect(errorOf(res).code).toBe("payload_too_large");
    }
    expect(await rowCounts(t.db)).toEqual(before);
  });

  it("JSON with duplicate keys: the last one wins, as in npm's own JSON.parse", async () => {
    const before = await rowCounts(t.db);
    const text =
      '{"lockfileVersion":1,"lockfileVersion":3,"packages":{"":{},' +
      '"node_modules/dup-key":{"version":"1.0.0"},"node_modules/dup-key":{"version":"2.0.0","version":"3.0.0"}}}';
    const res = await uploadRaw(ta.app, ta.auth("user"), text);
    expect(res.statusCode, res.body).toBe(202);
    const rows = await t.db.package.findMany({ where: { name: "dup-key" } });
    expect(rows.map((r) => r.version)).toEqual(["3.0.0"]);
    const after = await rowCounts(t.db);
    expect(after.package - before.package).toBe(1);
    expect(after.request - before.request).toBe(1);
  });

  it("`constructor`, `prototype`, `hasOwnProperty` and `toString` are ordinary package names", async () => {
    const names = ["constructor", "prototype", "hasownproperty", "tostring", "valueof"];
    const res = await uploadRaw(ta.app, ta.auth("user"), v3(Object.fromEntries(names.map((n) => [`node_modules/${n}`, { version: "1.0.0" }]))));
    expect(res.statusCode, res.body).toBe(202);
    const rows = await t.db.package.findMany({ where: { name: { in: names } }, orderBy: { name: "asc" } });
    expect(rows.map((r) => r.name)).toEqual([...names].sort());
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(typeof ({} as { constructor: unknown }).constructor).toBe("function");
  });

  it("a name of exactly 214 characters is accepted (npm's limit)", async () => {
    const name = "e".repeat(214);
    const res = await uploadRaw(ta.app, ta.auth("user"), v3({ [`node_modules/${name}`]: { version: "1.0.0" } }));
    expect(res.statusCode, res.body).toBe(202);
    expect(await t.db.package.count({ where: { name } })).toBe(1);
  });

  it("escapes control and bidi characters of a hostile key in the error message", async () => {
    const res = await uploadRaw(ta.app, ta.auth("user"), v3({ "node_modules/evil\u202e\u0000\n\u001b[31mred": { version: "1.0.0" } }));
    expect(res.statusCode).toBe(400);
    const error = errorOf(res);
    expect(error.code).toBe("invalid_package_name");
    // eslint-disable-next-line no-control-regex
    expect(error.message).not.toMatch(/[\u0000-\u001f\u202e]/);
    expect(error.message).toContain("\\u202e");
  });
});

describe("a 100k-entry lockfile", () => {
  it("is accepted (202) with every row written in bulk, while /health keeps answering", { timeout: 120_000 }, async () => {
    const count = 100_000;
    const packages: Json = {};
    for (let i = 0; i < count; i++) {
      const name = i % 4 === 0 ? `@bulk${i % 30}/pkg-${i}` : `bulk-pkg-${i}`;
      packages[`node_modules/${name}`] = { version: `${i % 5}.${i % 7}.${i % 11}` };
    }
    const text = v3(packages);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_UPLOAD_BYTES);
    const before = await rowCounts(t.db);

    let uploadDone = false;
    const upload = uploadRaw(ta.app, ta.auth("user"), text).finally(() => {
      uploadDone = true;
    });
    // Once the upload's bulk INSERT runs on the server, the API must still answer other requests.
    const admin = new pg.Client({ connectionString: t.url });
    await admin.connect();
    try {
      await waitFor(
        async () => {
          if (uploadDone) return true;
          const { rows } = await admin.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query ILIKE '%INSERT INTO package%'",
          );
          return rows[0]!.n > 0;
        },
        60_000,
        "the bulk insert to start",
      );
    } finally {
      await admin.end();
    }
    const health = await ta.app.inject({ method: "GET", url: "/health" });
    expect(health.statusCode).toBe(200);
    expect(uploadDone, "the upload finished before /health could be checked meanwhile").toBe(false);

    const res = await upload;
    expect(res.statusCode, res.body.slice(0, 500)).toBe(202);
    const body = res.json() as { request_id: number; packages: { total: number; new: number; existing: number } };
    expect(body.packages).toEqual({ total: count, new: count, existing: 0 });
    const after = await rowCounts(t.db);
    expect(after.request - before.request).toBe(1);
    expect(after.package - before.package).toBe(count);
    expect(after.package_event - before.package_event).toBe(count);
    expect(after.request_package - before.request_package).toBe(count);
  });
});

describe("hostile tokens", () => {
  const b64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");
  const now = () => Math.floor(Date.now() / 1000);
  function sign(payload: Json, secret = TEST_JWT_SECRET, header: Json = { alg: "HS256", typ: "JWT" }, hash = "sha256"): string {
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
    return `${input}.${createHmac(hash, secret).update(input).digest("base64url")}`;
  }

  const claims = async (role: "user" | "admin") => {
    const user = await t.db.user.findUniqueOrThrow({ where: { username: `${role}1` } });
    return { sub: String(user.id), name: user.username, role };
  };

  const uploadBody = v3({ "node_modules/token-probe": { version: "1.0.0" } });

  it("refuses expired, unsigned, foreign-key, forged, HS512 and garbage tokens with 401 and writes nothing", async () => {
    const admin = await claims("admin");
    const user = await claims("user");
    const [h, p, s] = ta.tokens.user.split(".") as [string, string, string];
    const forgedPayload = { ...(JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Json), role: "admin" };
    const tokens: Record<string, string> = {
      expired: sign({ ...user, iat: now() - 7200, exp: now() - 60 }),
      "alg none": `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify({ ...admin, iat: now(), exp: now() + 600 }))}.`,
      "alg None with a signature": `${b64url(JSON.stringify({ alg: "None" }))}.${b64url(JSON.stringify({ ...admin, exp: now() + 600 }))}.${s}`,
      "another key": sign({ ...admin, iat: now(), exp: now() + 600 }, "some-other-secret-0123456789-0123456789"),
      "forged role": `${h}.${b64url(JSON.stringify(forgedPayload))}.${s}`,
      "HS512 with the right secret": sign({ ...admin, iat: now(), exp: now() + 600 }, TEST_JWT_SECRET, { alg: "HS512", typ: "JWT" }, "sha512"),
      "HS384 with the right secret": sign({ ...admin, iat: now(), exp: now() + 600 }, TEST_JWT_SECRET, { alg: "HS384", typ: "JWT" }, "sha384"),
      "RS256 header over an HMAC": sign({ ...admin, iat: now(), exp: now() + 600 }, TEST_JWT_SECRET, { alg: "RS256", typ: "JWT" }),
      garbage: randomBytes(48).toString("base64"),
      "three dots": "...",
      "binary junk": "\u00ff\u00fe.\u0001.\u0002",
      "huge token": `${"a".repeat(20_000)}.${"b".repeat(20_000)}.${"c".repeat(20_000)}`,
      "JSON header not an object": `${b64url("[]")}.${b64url("{}")}.x`,
    };
    const before = await rowCounts(t.db);
    for (const [label, token] of Object.entries(tokens)) {
      for (const req of [
        { method: "POST" as const, url: "/api/packages/upload", payload: uploadBody, headers: { "content-type": "application/json" } },
        { method: "GET" as const, url: "/api/admin/licenses" },
        { method: "GET" as const, url: "/api/approver/packages/validated" },
        { method: "GET" as const, url: "/api/auth/me" },
      ]) {
        const res = await ta.app.inject({ ...req, headers: { ...(req.headers ?? {}), authorization: `Bearer ${token}` } });
        expect(res.statusCode, `${label}: ${req.method} ${req.url}: ${res.body.slice(0, 200)}`).toBe(401);
        expect(["unauthorized", "token_expired"]).toContain(errorOf(res).code);
      }
    }
    expect(await rowCounts(t.db)).toEqual(before);
    expect(({} as Record<string, unknown>).role).toBeUndefined();
  });

  it("a valid user token gets 403 on every approver and admin route", async () => {
    const routes: { method: "GET" | "POST" | "PUT" | "DELETE"; url: string; payload?: Json }[] = [
      { method: "GET", url: "/api/approver/packages/validated" },
      { method: "POST", url: "/api/approver/packages/batch-approve", payload: { package_ids: [1] } },
      { method: "POST", url: "/api/approver/packages/batch-reject", payload: { package_ids: [1] } },
      { method: "GET", url: "/api/admin/licenses" },
      { method: "POST", url: "/api/admin/licenses", payload: { licence: "MIT", verdict: "deny" } },
      { method: "PUT", url: "/api/admin/licenses/MIT", payload: { verdict: "deny" } },
      { method: "DELETE", url: "/api/admin/licenses/MIT" },
    ];
    const policyBefore = await t.db.licencePolicy.findMany({ orderBy: { licence: "asc" } });
    for (const r of routes) {
      const res = await ta.app.inject({ method: r.method, url: r.url, headers: ta.auth("user"), ...(r.payload ? { payload: r.payload } : {}) });
      expect(res.statusCode, `${r.method} ${r.url}: ${res.body.slice(0, 200)}`).toBe(403);
      expect(errorOf(res).code).toBe("forbidden");
    }
    // approver routes are not admin routes: an approver still gets 403 on the admin ones
    for (const r of routes.filter((x) => x.url.startsWith("/api/admin/"))) {
      const res = await ta.app.inject({ method: r.method, url: r.url, headers: ta.auth("approver"), ...(r.payload ? { payload: r.payload } : {}) });
      expect(res.statusCode, `${r.method} ${r.url}`).toBe(403);
    }
    expect(await t.db.licencePolicy.findMany({ orderBy: { licence: "asc" } })).toEqual(policyBefore);
  });
});
