import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  entry,
  lockV3,
  multipart,
  pkgs,
  rowCounts,
  sri,
  tarball,
  uploadMultipart,
  uploadRaw,
  type Json,
  type RowCounts,
  type UploadResponse,
} from "./support/api-helpers.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
});
afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

type Res = { statusCode: number; json(): unknown; body: string };

function accepted(res: Res): UploadResponse {
  expect(res.statusCode, res.body).toBe(202);
  const body = res.json() as UploadResponse;
  expect(Object.keys(body).sort()).toEqual(["packages", "request_id", "skipped"]);
  expect(body.request_id).toEqual(expect.any(Number));
  return body;
}

function refused(res: Res, status: number, code: string): { code: string; message: string; hint: string } {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json() as { error: { code: string; message: string; hint: string } };
  expect(body.error).toMatchObject({ code, message: expect.any(String), hint: expect.any(String) });
  return body.error;
}

async function links(requestId: number) {
  return t.db.requestPackage.findMany({
    where: { requestId },
    include: { package: true },
    orderBy: [{ package: { name: "asc" } }, { package: { version: "asc" } }],
  });
}

describe("accepted uploads", () => {
  it("takes a raw application/json body: 202, request row, packages, links with integrity, creation events", async () => {
    const before = await rowCounts(t.db);
    const list = pkgs("raw", 5);
    const text = lockV3(list);
    const body = accepted(await uploadRaw(ta.app, ta.auth("user"), text, { "x-file-name": "raw-lock.json" }));
    expect(body.packages).toEqual({ total: 5, new: 5, existing: 0 });
    expect(body.skipped).toEqual([]);

    const after = await rowCounts(t.db);
    expect(after).toEqual({
      request: before.request + 1,
      package: before.package + 5,
      package_event: before.package_event + 5,
      request_package: before.request_package + 5,
    });

    const user = await t.db.user.findUniqueOrThrow({ where: { username: "user1" } });
    const request = await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } });
    expect(request).toMatchObject({
      uploadedById: user.id,
      uploadedByName: "user1",
      fileName: "raw-lock.json",
      lockfileVersion: 3,
      total: 5,
      newCount: 5,
      existingCount: 0,
      lockfileSha256: createHash("sha256").update(text).digest("hex"),
      skipped: [],
    });

    const linked = await links(body.request_id);
    expect(linked.map((l) => `${l.package.name}@${l.package.version}`)).toEqual(list.map((p) => `${p.name}@${p.version}`));
    for (const l of linked) {
      expect(l.integrity).toBe(sri(l.package.name, l.package.version));
      expect(l.resolved).toBe(tarball(l.package.name, l.package.version));
      expect(l.package).toMatchObject({ status: "requested", attempts: 0, lastErrorCode: null, leaseOwner: null });
    }

    const events = await t.db.packageEvent.findMany({ where: { packageId: { in: linked.map((l) => l.packageId) } } });
    expect(events).toHaveLength(5);
    for (const e of events) {
      expect(e).toMatchObject({ fromStatus: null, toStatus: "requested", actor: "user1", reason: "uploaded" });
      expect(e.details).toEqual({ request_id: body.request_id });
    }
  });

  it("takes a multipart upload (field `file`), keeping the file name", async () => {
    const body = accepted(await uploadMultipart(ta.app, ta.auth("approver"), lockV3(pkgs("multi", 3)), "my-lock.json"));
    expect(body.packages).toEqual({ total: 3, new: 3, existing: 0 });
    const request = await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } });
    expect(request).toMatchObject({ fileName: "my-lock.json", uploadedByName: "approver1", total: 3 });
    expect(await t.db.requestPackage.count({ where: { requestId: body.request_id } })).toBe(3);
  });

  it("ignores other multipart fields before and after `file` (up to 10 of them)", async () => {
    const { payload, headers } = multipart([
      { name: "comment", content: "hello" },
      { name: "project", content: "web" },
      { name: "file", filename: "package-lock.json", contentType: "application/json", content: lockV3(pkgs("fields", 2)) },
    ]);
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...headers }, payload });
    expect(accepted(res).packages).toEqual({ total: 2, new: 2, existing: 0 });

    const ten = multipart([
      ...Array.from({ length: 4 }, (_, i) => ({ name: `before${i}`, content: "x" })),
      { name: "file", filename: "package-lock.json", contentType: "application/json", content: lockV3(pkgs("fields10", 2)) },
      ...Array.from({ length: 6 }, (_, i) => ({ name: `after${i}`, content: "x" })),
    ]);
    const tenRes = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...ten.headers }, payload: ten.payload });
    expect(accepted(tenRes).packages).toEqual({ total: 2, new: 2, existing: 0 });

    // a large text field is cut to its first KiB by the parser (it is ignored anyway): not buffered whole
    const big = multipart([
      { name: "notes", content: "n".repeat(2 * 1024 * 1024) },
      { name: "file", filename: "package-lock.json", contentType: "application/json", content: lockV3(pkgs("fieldbig", 2)) },
    ]);
    const bigRes = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...big.headers }, payload: big.payload });
    expect(accepted(bigRes).packages).toEqual({ total: 2, new: 2, existing: 0 });
  });

  it("links existing rows for an overlapping lockfile instead of duplicating them", async () => {
    const first = pkgs("overlap", 6);
    const r1 = accepted(await uploadRaw(ta.app, ta.auth("user"), lockV3(first)));
    expect(r1.packages).toEqual({ total: 6, new: 6, existing: 0 });
    const before = await rowCounts(t.db);

    const second = [...first.slice(2), { name: "overlap-new-a", version: "1.0.0" }];
    const r2 = accepted(await uploadMultipart(ta.app, ta.auth("admin"), lockV3(second)));
    expect(r2.packages).toEqual({ total: 5, new: 1, existing: 4 });
    const after = await rowCounts(t.db);
    expect(r2.packages.total).toBe(r2.packages.new + r2.packages.existing);
    expect(r2.packages.existing).toBe(4);
    expect(after.package - before.package).toBe(r2.packages.new);
    expect(after.package_event - before.package_event).toBe(r2.packages.new);
    expect(after.request_package - before.request_package).toBe(r2.packages.total);

    // a nested second version of a known name is a new row; the known version is linked
    const nested = lockV3([{ name: "overlap-1", version: "1.0.0" }], {
      "node_modules/overlap-1/node_modules/overlap-0": entry({ name: "overlap-0", version: "2.0.0" }),
    });
    const r3 = accepted(await uploadRaw(ta.app, ta.auth("user"), nested));
    expect(r3.packages).toEqual({ total: 2, new: 1, existing: 1 });

    const dupes = await t.db.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM (SELECT name, version FROM package GROUP BY name, version HAVING count(*) > 1) d`;
    expect(dupes[0]!.n).toBe(0);
    expect(await t.db.package.count({ where: { name: { startsWith: "overlap-" } } })).toBe(8);
    const r3Links = await links(r3.request_id);
    expect(r3Links.map((l) => `${l.package.name}@${l.package.version}`)).toEqual(["overlap-0@2.0.0", "overlap-1@1.0.0"]);
  });

  it("uploading the same lockfile again creates a request with every package existing and no new events", async () => {
    const text = lockV3(pkgs("again", 4));
    const r1 = accepted(await uploadRaw(ta.app, ta.auth("user"), text));
    const before = await rowCounts(t.db);
    const r2 = accepted(await uploadRaw(ta.app, ta.auth("user"), text));
    expect(r2.request_id).toBeGreaterThan(r1.request_id);
    expect(r2.packages).toEqual({ total: 4, new: 0, existing: 4 });
    const after = await rowCounts(t.db);
    expect(after).toEqual({ ...before, request: before.request + 1, request_package: before.request_package + 4 });
  });

  it("reads lockfileVersion 1 (nested dependencies tree)", async () => {
    const v1 = JSON.stringify({
      name: "app",
      version: "1.0.0",
      lockfileVersion: 1,
      requires: true,
      dependencies: {
        "v1-a": {
          version: "1.0.0",
          resolved: tarball("v1-a", "1.0.0"),
          integrity: sri("v1-a", "1.0.0"),
          dependencies: { "v1-b": { version: "2.0.0", resolved: tarball("v1-b", "2.0.0"), integrity: sri("v1-b", "2.0.0") } },
        },
        "v1-b": { version: "1.0.0", resolved: tarball("v1-b", "1.0.0"), integrity: sri("v1-b", "1.0.0") },
        "@v1/scoped": { version: "3.1.4", resolved: tarball("@v1/scoped", "3.1.4"), integrity: sri("@v1/scoped", "3.1.4") },
        "v1-git": { version: "git+https://github.com/u/v1-git.git#0123456789abcdef0123456789abcdef01234567" },
      },
    });
    const body = accepted(await uploadRaw(ta.app, ta.auth("user"), v1));
    expect(body.packages).toEqual({ total: 4, new: 4, existing: 0 });
    expect(body.skipped).toEqual([{ path: "node_modules/v1-git", reason: expect.stringContaining("git") }]);
    const request = await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } });
    expect(request.lockfileVersion).toBe(1);
    expect((await links(body.request_id)).map((l) => `${l.package.name}@${l.package.version}`)).toEqual([
      "@v1/scoped@3.1.4",
      "v1-a@1.0.0",
      "v1-b@1.0.0",
      "v1-b@2.0.0",
    ]);
  });

  it("reads lockfileVersion 2 from its `packages` map (not the v1 tree it also carries)", async () => {
    const v2 = JSON.stringify({
      name: "app",
      version: "1.0.0",
      lockfileVersion: 2,
      requires: true,
      packages: {
        "": { name: "app", version: "1.0.0" },
        "node_modules/v2-a": entry({ name: "v2-a", version: "1.2.3" }),
        "node_modules/v2-a/node_modules/v2-b": entry({ name: "v2-b", version: "0.1.0" }),
      },
      dependencies: {
        "v2-a": { version: "1.2.3", dependencies: { "v2-b": { version: "0.1.0" } } },
        "v2-only-in-tree": { version: "9.9.9" },
      },
    });
    const body = accepted(await uploadRaw(ta.app, ta.auth("user"), v2));
    expect(body.packages).toEqual({ total: 2, new: 2, existing: 0 });
    expect((await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } })).lockfileVersion).toBe(2);
    expect(await t.db.package.count({ where: { name: "v2-only-in-tree" } })).toBe(0);
  });

  it("accepts a lockfile that starts with a UTF-8 BOM (raw and multipart), hashing the bytes as sent", async () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lockV3(pkgs("bom", 2)))]);
    const raw = accepted(await uploadRaw(ta.app, ta.auth("user"), bytes));
    expect(raw.packages).toEqual({ total: 2, new: 2, existing: 0 });
    const request = await t.db.request.findUniqueOrThrow({ where: { id: raw.request_id } });
    expect(request.lockfileSha256).toBe(createHash("sha256").update(bytes).digest("hex"));
    const multi = accepted(await uploadMultipart(ta.app, ta.auth("user"), bytes));
    expect(multi.packages).toEqual({ total: 2, new: 0, existing: 2 });
  });

  it("lists skipped entries (git, file:, link, workspace folder, bundled, remote tarball) and stores them on the request", async () => {
    const text = lockV3([{ name: "skip-parent", version: "1.0.0" }], {
      "node_modules/skip-git": { version: "1.0.0", resolved: "git+ssh://git@github.com/u/skip-git.git#0123456789abcdef0123456789abcdef01234567" },
      "node_modules/skip-file": { version: "1.0.0", resolved: "file:../skip-file" },
      "node_modules/skip-link": { resolved: "packages/skip-link", link: true },
      "packages/skip-link": { name: "skip-link", version: "1.0.0" },
      "node_modules/skip-parent/node_modules/skip-bundled": { version: "1.0.0", inBundle: true },
      "node_modules/skip-remote": { version: "1.0.0", resolved: "https://example.com/downloads/skip-remote.tgz" },
    });
    const body = accepted(await uploadRaw(ta.app, ta.auth("user"), text));
    expect(body.packages).toEqual({ total: 1, new: 1, existing: 0 });
    const byPath = new Map(body.skipped.map((s) => [s.path, s.reason]));
    expect([...byPath.keys()].sort()).toEqual(
      [
        "node_modules/skip-git",
        "node_modules/skip-file",
        "node_modules/skip-link",
        "packages/skip-link",
        "node_modules/skip-parent/node_modules/skip-bundled",
        "node_modules/skip-remote",
      ].sort(),
    );
    expect(byPath.get("node_modules/skip-git")).toMatch(/git/);
    expect(byPath.get("node_modules/skip-file")).toMatch(/file/);
    expect(byPath.get("node_modules/skip-link")).toMatch(/link/);
    expect(byPath.get("node_modules/skip-parent/node_modules/skip-bundled")).toMatch(/bundled/);
    expect(byPath.get("node_modules/skip-remote")).toMatch(/remote tarball/);
    const request = await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } });
    expect(request.skipped).toEqual(body.skipped);
    expect(await t.db.package.count({ where: { name: { startsWith: "skip-" } } })).toBe(1);
  });

  it("uploads a generated 20,000-package v3 lockfile in one request", { timeout: 180_000 }, async () => {
    const packages: Json = { "": { name: "big", version: "1.0.0" } };
    const expected = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const name = i % 3 === 0 ? `@big${i % 40}/pkg-${i}` : `big-pkg-${i}`;
      const version = `${i % 7}.${i % 11}.${i % 13}`;
      const key = i % 5 === 0 ? `node_modules/big-parent-${i % 100}/node_modules/${name}` : `node_modules/${name}`;
      packages[key] = entry({ name, version });
      expected.add(`${name}@${version}`);
    }
    const text = JSON.stringify({ name: "big", version: "1.0.0", lockfileVersion: 3, requires: true, packages });
    const before = await rowCounts(t.db);
    const body = accepted(await uploadRaw(ta.app, ta.auth("user"), text));
    expect(body.packages).toEqual({ total: 20_000, new: 20_000, existing: 0 });
    const after = await rowCounts(t.db);
    expect(after.package - before.package).toBe(20_000);
    expect(after.package_event - before.package_event).toBe(20_000);
    expect(after.request_package - before.request_package).toBe(20_000);
    expect(await t.db.requestPackage.count({ where: { requestId: body.request_id, integrity: { not: null } } })).toBe(20_000);
  });
});

describe("concurrent uploads", () => {
  it("two uploads sharing 500 packages create one row per name@version and link both requests to all of theirs", async () => {
    for (let round = 0; round < 3; round++) {
      const shared = pkgs(`conc${round}-shared`, 500);
      const onlyA = pkgs(`conc${round}-a`, 50);
      const onlyB = pkgs(`conc${round}-b`, 70);
      const before = await rowCounts(t.db);
      const [resA, resB] = await Promise.all([
        uploadRaw(ta.app, ta.auth("user"), lockV3([...shared, ...onlyA])),
        uploadMultipart(ta.app, ta.auth("approver"), lockV3([...onlyB, ...shared].reverse())),
      ]);
      const a = accepted(resA);
      const b = accepted(resB);
      expect(a.packages.total).toBe(550);
      expect(b.packages.total).toBe(570);
      // every shared package was created by exactly one of the two
      expect(a.packages.new + b.packages.new).toBe(620);
      expect(a.packages.existing + b.packages.existing).toBe(500);

      const after = await rowCounts(t.db);
      expect(after.package - before.package).toBe(620);
      expect(after.package_event - before.package_event).toBe(620);
      expect(after.request_package - before.request_package).toBe(1120);
      const dupes = await t.db.$queryRaw<{ n: number }[]>`
        SELECT count(*)::int AS n FROM (SELECT name, version FROM package GROUP BY name, version HAVING count(*) > 1) d`;
      expect(dupes[0]!.n).toBe(0);
      const creations = await t.db.$queryRaw<{ n: number }[]>`
        SELECT count(*)::int AS n FROM package_event e JOIN package p ON p.id = e.package_id
        WHERE p.name LIKE ${`conc${round}-shared-%`} AND e.from_status IS NULL`;
      expect(creations[0]!.n).toBe(500);

      const namesOf = async (id: number) => (await links(id)).map((l) => l.package.name).sort();
      expect(await namesOf(a.request_id)).toEqual([...shared, ...onlyA].map((p) => p.name).sort());
      expect(await namesOf(b.request_id)).toEqual([...shared, ...onlyB].map((p) => p.name).sort());
    }
  });
});

describe("refused uploads write nothing", () => {
  const v3 = (packages: Json) => JSON.stringify({ lockfileVersion: 3, packages: { "": { name: "x", version: "1.0.0" }, ...packages } });
  const invalidUtf8 = Buffer.concat([
    Buffer.from('{"lockfileVersion":3,"packages":{"node_modules/bad-utf8":{"version":"1.0.0","description":"'),
    Buffer.from([0xc3, 0x28, 0xff]),
    Buffer.from('"}}}'),
  ]);

  const table: [string, string | Buffer, number, string][] = [
    ["not JSON", "{this is not json", 400, "not_json"],
    ["truncated JSON", lockV3(pkgs("trunc", 3)).slice(0, -5), 400, "not_json"],
    ["a JSON array", "[1,2,3]", 400, "not_json"],
    ["invalid UTF-8", invalidUtf8, 400, "not_json"],
    ["lockfileVersion 7", JSON.stringify({ lockfileVersion: 7, packages: { "node_modules/v7": entry({ name: "v7", version: "1.0.0" }) } }), 400, "lockfile_version_unsupported"],
    ["lockfileVersion as a string", JSON.stringify({ lockfileVersion: "3", packages: { "node_modules/v7": entry({ name: "v7", version: "1.0.0" }) } }), 400, "lockfile_version_unsupported"],
    ["missing lockfileVersion with no dependencies", JSON.stringify({ name: "x", version: "1.0.0", packages: { "": {} } }), 400, "lockfile_version_unsupported"],
    ["a package.json", JSON.stringify({ name: "x", version: "1.0.0", dependencies: { lodash: "^4.17.21" } }), 400, "lockfile_version_unsupported"],
    ["an empty object", "{}", 400, "lockfile_version_unsupported"],
    ["a lockfile with no packages", v3({}), 400, "lockfile_empty"],
    ["a lockfile with only skipped entries", v3({ "node_modules/g": { version: "1.0.0", resolved: "git+https://github.com/u/g.git" } }), 400, "lockfile_empty"],
    ["path traversal in a key", v3({ "node_modules/ok-a": entry({ name: "ok-a", version: "1.0.0" }), "node_modules/../../x": { version: "1.0.0" } }), 400, "invalid_package_name"],
    ["path traversal in an alias name", v3({ "node_modules/ok-a": { ...entry({ name: "ok-a", version: "1.0.0" }), name: "../../etc" } }), 400, "invalid_package_name"],
    ["a version range", v3({ "node_modules/ok-a": entry({ name: "ok-a", version: "1.0.0" }), "node_modules/ok-b": { version: "^1.0.0" } }), 400, "invalid_version"],
    ["a v-prefixed version", v3({ "node_modules/ok-b": { version: "v1.0.0" } }), 400, "invalid_version"],
    ["__proto__ as a package name", '{"lockfileVersion":3,"packages":{"node_modules/ok-a":{"version":"1.0.0"},"node_modules/__proto__":{"version":"1.0.0"}}}', 400, "invalid_package_name"],
    ["__proto__ in a v1 tree", '{"lockfileVersion":1,"dependencies":{"ok-a":{"version":"1.0.0"},"__proto__":{"version":"1.0.0"}}}', 400, "invalid_package_name"],
    ["a resolved URL of another package", v3({ "node_modules/ok-a": { version: "1.0.0", resolved: tarball("evil", "1.0.0") } }), 400, "lockfile_invalid"],
    ["a malformed integrity", v3({ "node_modules/ok-a": { version: "1.0.0", integrity: "md5-abc" } }), 400, "lockfile_invalid"],
    ["conflicting integrity for one name@version", v3({
      "node_modules/ok-a": entry({ name: "ok-a", version: "1.0.0" }),
      "node_modules/p/node_modules/ok-a": { ...entry({ name: "ok-a", version: "1.0.0" }), integrity: sri("other", "1") },
      "node_modules/p": entry({ name: "p", version: "1.0.0" }),
    }), 400, "lockfile_invalid"],
    ["lockfileVersion 1 with a packages map", JSON.stringify({ lockfileVersion: 1, packages: { "node_modules/ok-a": { version: "1.0.0" } } }), 400, "lockfile_invalid"],
    ["an entry that is not an object", v3({ "node_modules/ok-a": "1.0.0" }), 400, "lockfile_invalid"],
  ];

  const cases = table.map(([label, body, status, code]) => ({ label, body, status, code }));

  let baseline: RowCounts;
  beforeAll(async () => {
    baseline = await rowCounts(t.db);
  });

  it.each(cases)("$label (raw body) → $status $code", async ({ body, status, code }) => {
    refused(await uploadRaw(ta.app, ta.auth("user"), body), status, code);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it.each(cases)("$label (multipart) → $status $code", async ({ body, status, code }) => {
    refused(await uploadMultipart(ta.app, ta.auth("user"), body), status, code);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("an empty body → 400 no_file", async () => {
    refused(await uploadRaw(ta.app, ta.auth("user"), ""), 400, "no_file");
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("an empty multipart file → 400", async () => {
    const res = await uploadMultipart(ta.app, ta.auth("user"), "");
    expect(res.statusCode).toBe(400);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("multipart without a `file` field → 400 no_file", async () => {
    const { payload, headers } = multipart([
      { name: "lockfile", filename: "package-lock.json", contentType: "application/json", content: lockV3(pkgs("nofile", 1)) },
      { name: "comment", content: "hello" },
    ]);
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...headers }, payload });
    // the one file part has an unexpected field name: the message names it, the hint names the expected one
    const wrongName = refused(res, 400, "no_file");
    expect(wrongName.message).toContain("`lockfile`");
    expect(wrongName.hint).toContain("`file`");
    const empty = multipart([]);
    refused(await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...empty.headers }, payload: empty.payload }), 400, "no_file");
    const fieldsOnly = multipart([{ name: "comment", content: "hello" }]);
    const noFilePart = refused(
      await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...fieldsOnly.headers }, payload: fieldsOnly.payload }),
      400,
      "no_file",
    );
    expect(noFilePart.message).toMatch(/no file part named `file`/);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  const lockPart = (name: string, prefix: string) => ({ name, filename: "package-lock.json", contentType: "application/json", content: lockV3(pkgs(prefix, 2)) });
  const textFilePart = { name: "other", filename: "x.txt", contentType: "text/plain", content: "not a lockfile" };

  it.each([
    { label: "another file part before `file`", parts: [textFilePart, lockPart("file", "two-a")] },
    { label: "another file part after `file`", parts: [lockPart("file", "two-b"), textFilePart] },
    { label: "`file` twice", parts: [lockPart("file", "two-c"), lockPart("file", "two-d")] },
    { label: "three file parts", parts: [lockPart("file", "two-e"), lockPart("file", "two-f"), lockPart("lockfile", "two-g")] },
    { label: "two file parts, neither named `file`", parts: [lockPart("a", "two-h"), lockPart("b", "two-i")] },
    { label: "a second file part after fields", parts: [{ name: "comment", content: "x" }, lockPart("file", "two-j"), { name: "project", content: "y" }, textFilePart] },
  ])("more than one file part ($label) → 400 multiple_files", async ({ parts }) => {
    const { payload, headers } = multipart(parts);
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...headers }, payload });
    const error = refused(res, 400, "multiple_files");
    expect(error.message).toMatch(/more than one file part/);
    expect(error.hint).toMatch(/one lockfile per upload/i);
    expect(error.hint).toContain("`file`");
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  const fields = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, content: "x" }));

  it.each([
    { label: "and no file", parts: fields("f", 15) },
    { label: "before `file`", parts: [...fields("f", 11), lockPart("file", "fields-b")] },
    { label: "after `file`", parts: [lockPart("file", "fields-a"), ...fields("f", 11)] },
    { label: "around `file`", parts: [...fields("b", 6), lockPart("file", "fields-c"), ...fields("a", 5)] },
  ])("more than 10 multipart fields ($label) → 400 too_many_fields", async ({ parts }) => {
    const { payload, headers } = multipart(parts);
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...headers }, payload });
    const error = refused(res, 400, "too_many_fields");
    expect(error.message).toMatch(/more than 10 form fields/);
    // not a size problem: no MAX_UPLOAD_BYTES hint
    expect(error.hint).not.toMatch(/MAX_UPLOAD_BYTES/);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("a `file` text field (not a file part) → 400 no_file", async () => {
    const { payload, headers } = multipart([{ name: "file", content: lockV3(pkgs("textfield", 1)) }]);
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), ...headers }, payload });
    expect(refused(res, 400, "no_file").message).toMatch(/text field, not a file part/);
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("a wrong content type → 415 unsupported_media_type", async () => {
    const body = lockV3(pkgs("ctype", 1));
    for (const contentType of ["text/plain", "text/plain; charset=utf-8", "application/xml", "application/x-www-form-urlencoded"]) {
      const res = await ta.app.inject({
        method: "POST",
        url: "/api/packages/upload",
        headers: { ...ta.auth("user"), "content-type": contentType },
        payload: body,
      });
      refused(res, 415, "unsupported_media_type");
    }
    // no content type at all
    const none = await ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: ta.auth("user"), payload: body });
    refused(none, 415, "unsupported_media_type");
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("a malformed multipart body → 400 bad_request", async () => {
    const upload = (contentType: string, payload: string) =>
      ta.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...ta.auth("user"), "content-type": contentType }, payload });
    const truncated = '--abc\r\nContent-Disposition: form-data; name="file"; filename="x.json"\r\n\r\n{"lockfileVersion":3';
    refused(await upload("multipart/form-data; boundary=abc", truncated), 400, "bad_request");
    refused(await upload("multipart/form-data", "no boundary given"), 400, "bad_request");
    refused(await upload("multipart/form-data; boundary=abc", "garbage"), 400, "bad_request");
    expect(await rowCounts(t.db)).toEqual(baseline);
  });

  it("without a token → 401 before reading the body", async () => {
    const res = await ta.app.inject({
      method: "POST",
      url: "/api/packages/upload",
      headers: { "content-type": "application/json" },
      payload: lockV3(pkgs("notoken", 1)),
    });
    refused(res, 401, "unauthorized");
    expect(await rowCounts(t.db)).toEqual(baseline);
  });
});

describe("MAX_UPLOAD_BYTES", () => {
  let small: TestApp;
  beforeAll(async () => {
    small = await buildTestApp(t.db, { MAX_UPLOAD_BYTES: "2048" });
  });
  afterAll(async () => small?.app.close());

  const under = () => lockV3(pkgs("limit-ok", 3));
  const over = () => lockV3(pkgs("limit-over", 30));

  it("accepts an upload under the limit (raw and multipart)", async () => {
    expect(Buffer.byteLength(under())).toBeLessThan(1500);
    expect(accepted(await uploadRaw(small.app, small.auth("user"), under())).packages.total).toBe(3);
    expect(accepted(await uploadMultipart(small.app, small.auth("user"), under())).packages.total).toBe(3);
  });

  it("refuses a raw body over the limit → 413 payload_too_large, nothing written", async () => {
    const before = await rowCounts(t.db);
    expect(Buffer.byteLength(over())).toBeGreaterThan(2048);
    const error = refused(await uploadRaw(small.app, small.auth("user"), over()), 413, "payload_too_large");
    expect(error.hint).toMatch(/MAX_UPLOAD_BYTES/);
    expect(await rowCounts(t.db)).toEqual(before);
  });

  it("refuses a multipart file over the limit → 413 payload_too_large, nothing written", async () => {
    const before = await rowCounts(t.db);
    refused(await uploadMultipart(small.app, small.auth("user"), over()), 413, "payload_too_large");
    // much larger too
    refused(await uploadMultipart(small.app, small.auth("user"), lockV3(pkgs("limit-huge", 2000))), 413, "payload_too_large");
    expect(await rowCounts(t.db)).toEqual(before);
  });

  it("a multipart file over the limit stays 413 payload_too_large with fields or a second file after it, or under another name", async () => {
    const before = await rowCounts(t.db);
    const big = (name: string) => ({ name, filename: "package-lock.json", contentType: "application/json", content: over() });
    for (const parts of [
      [{ name: "comment", content: "x" }, big("file"), { name: "project", content: "y" }],
      [big("file"), { name: "second", filename: "x.json", contentType: "application/json", content: under() }],
      [big("lockfile")],
    ]) {
      const { payload, headers } = multipart(parts);
      const res = await small.app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...small.auth("user"), ...headers }, payload });
      expect(refused(res, 413, "payload_too_large").hint).toMatch(/MAX_UPLOAD_BYTES/);
    }
    expect(await rowCounts(t.db)).toEqual(before);
  });

  it("refuses a raw body over the limit sent as application/octet-stream → 413", async () => {
    const before = await rowCounts(t.db);
    refused(await uploadRaw(small.app, small.auth("user"), over(), { "content-type": "application/octet-stream" }), 413, "payload_too_large");
    expect(await rowCounts(t.db)).toEqual(before);
  });
});

describe("multipart over a real socket (the body arrives in chunks)", () => {
  let live: TestApp;
  let url: string;
  beforeAll(async () => {
    live = await buildTestApp(t.db);
    url = `${await live.app.listen({ host: "127.0.0.1", port: 0 })}/api/packages/upload`;
  });
  afterAll(async () => live?.app.close());

  const post = async (form: FormData) => {
    const res = await fetch(url, { method: "POST", headers: live.auth("user"), body: form });
    const body = await res.text();
    return { statusCode: res.status, body, json: () => JSON.parse(body) as unknown };
  };
  const lockBlob = (prefix: string, n: number) => new Blob([lockV3(pkgs(prefix, n))], { type: "application/json" });

  it("one file part → 202; a second file part after a large `file` → 400 multiple_files; fields after it → 400 too_many_fields", async () => {
    const one = new FormData();
    one.append("comment", "hello");
    one.append("file", lockBlob("sock-one", 3), "package-lock.json");
    expect(accepted(await post(one)).packages.total).toBe(3);

    const before = await rowCounts(t.db);
    const two = new FormData();
    two.append("file", lockBlob("sock-big", 3000), "package-lock.json");
    two.append("other", new Blob(["not a lockfile"], { type: "text/plain" }), "x.txt");
    refused(await post(two), 400, "multiple_files");

    const many = new FormData();
    many.append("file", lockBlob("sock-fields", 3000), "package-lock.json");
    for (let i = 0; i < 11; i++) many.append(`f${i}`, "x");
    refused(await post(many), 400, "too_many_fields");
    expect(await rowCounts(t.db)).toEqual(before);
  });
});

const seedDir = path.resolve(import.meta.dirname, "../../shared/fixtures/seed-lockfiles");

describe.skipIf(!existsSync(seedDir))("seed lockfiles", () => {
  /** Outcome per file: 202 with the package total, or the error status and code. */
  const expected: Record<string, { total: number } | { total: "many" } | { status: number; code: string }> = {
    "simple_app.json": { total: 1 },
    "test-package-lock.json": { total: 2 }, // starts with a UTF-8 BOM
    "duplicate_packages.json": { total: 2 },
    "scoped_packages.json": { total: 3 },
    "nested_packages.json": { total: 6 },
    "adminportal.json": { total: "many" },
    "empty_packages.json": { status: 400, code: "lockfile_empty" },
    "invalid_version.json": { status: 400, code: "lockfile_invalid" },
    "missing_lockfile_version.json": { status: 400, code: "lockfile_version_unsupported" },
  };
  const files = existsSync(seedDir) ? readdirSync(seedDir).filter((f) => f.endsWith(".json")).sort() : [];

  it.each(files)("%s (multipart)", { timeout: 120_000 }, async (file) => {
    const bytes = readFileSync(path.join(seedDir, file));
    const before = await rowCounts(t.db);
    const res = await uploadMultipart(ta.app, ta.auth("user"), bytes, file);
    const want = expected[file];
    if (want === undefined) {
      // A fixture added later: accepted, or refused with a 4xx in the error shape; never a 5xx.
      if (res.statusCode !== 202) refused(res, res.statusCode, (res.json() as { error: { code: string } }).error.code);
      expect(res.statusCode).toBeLessThan(500);
      return;
    }
    if ("code" in want) {
      refused(res, want.status, want.code);
      expect(await rowCounts(t.db)).toEqual(before);
      return;
    }
    const body = accepted(res);
    if (want.total === "many") expect(body.packages.total).toBeGreaterThan(500);
    else expect(body.packages.total).toBe(want.total);
    expect(body.packages.new + body.packages.existing).toBe(body.packages.total);
    const request = await t.db.request.findUniqueOrThrow({ where: { id: body.request_id } });
    expect(request.fileName).toBe(file);
    expect(await t.db.requestPackage.count({ where: { requestId: body.request_id } })).toBe(body.packages.total);
  });

  it.each(files)("%s (raw body) gives the same answer as multipart", { timeout: 120_000 }, async (file) => {
    const bytes = readFileSync(path.join(seedDir, file));
    const res = await uploadRaw(ta.app, ta.auth("user"), bytes);
    const want = expected[file];
    if (want === undefined) {
      expect(res.statusCode).toBeLessThan(500);
    } else if (!("code" in want)) {
      const body = accepted(res);
      // uploaded once already (multipart above): every package now exists
      expect(body.packages.new).toBe(0);
      expect(body.packages.existing).toBe(body.packages.total);
    } else {
      refused(res, want.status, want.code);
    }
  });
});
