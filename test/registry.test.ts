/**
 * The npm read protocol under /npm/ (api/routes/registry.ts) against a real database and a real
 * content store: only approved versions are listed and served, everything else is refused with its
 * reason, on the packument and on the tarball.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import type { FastifyInstance } from "fastify";
import ssri from "ssri";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../src/advisories/store.ts";
import type { OsvSourceRecord } from "../src/advisories/read-sources.ts";
import type { Db } from "../src/db/client.ts";
import type { PackageStatus } from "../src/queue/states.ts";
import { vulnerableVersions } from "../src/registry/audit.ts";
import { NameCache } from "../src/registry/cache.ts";
import { parseRegistryPath } from "../src/registry/paths.ts";
import { TarballCache, TarballIntegrityError, verifyingStream } from "../src/registry/tarball-cache.ts";
import { ContentStore } from "../src/store/content-store.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { packageTarball } from "./support/tar-builder.ts";

type Json = Record<string, unknown>;

let t: TestDatabase;
let storageDir: string;
let store: ContentStore;
let ta: TestApp;
let app: FastifyInstance;
const tarballs = new Map<string, Buffer>();

const ABBREVIATED = "application/vnd.npm.install-v1+json";
const BASE = "http://localhost:80";

interface SeedOptions {
  manifest?: Json;
  files?: Record<string, string>;
  reasonCode?: string;
  reasonMessage?: string;
  lastErrorCode?: string;
  lastErrorMessage?: string;
  reviewReasons?: string[];
  installScripts?: Record<string, string>;
  publishedAt?: string;
}

/** A package row in `status`; approved rows get a real tarball in the store and results.download. */
async function seed(db: Db, name: string, version: string, status: PackageStatus, o: SeedOptions = {}): Promise<number> {
  const manifest = { name, version, license: "MIT", ...(o.manifest ?? {}) };
  const results: Json = { manifest, upstream: { publishedAt: o.publishedAt ?? "2024-01-02T03:04:05.000Z" } };
  if (status === "approved" || status === "pending_approval" || status === "scanning" || status === "rejected") {
    const bytes = packageTarball(manifest, o.files ?? { "index.js": `module.exports = ${JSON.stringify(`${name}@${version}`)};\n` });
    const { blob } = await store.write(Readable.from([bytes]), 10 * 1024 * 1024);
    tarballs.set(`${name}@${version}`, bytes);
    results.download = { storageKey: blob.key, size: blob.size, integrity: blob.integrity, shasum: blob.sha1 };
  }
  if (o.installScripts) results.scan = { installScripts: { scripts: o.installScripts, implicitGyp: false }, findings: [] };
  if (o.reviewReasons) results.review = { reasons: o.reviewReasons };
  const [row] = await db.$queryRaw<{ id: number }[]>`
    INSERT INTO package (name, version, status, results, reason_code, reason_message, last_error_code, last_error_message)
    VALUES (${name}, ${version}, ${status}::package_status, ${JSON.stringify(results)}::jsonb, ${o.reasonCode ?? null},
            ${o.reasonMessage ?? null}, ${o.lastErrorCode ?? null}, ${o.lastErrorMessage ?? null})
    RETURNING id`;
  return row!.id;
}

const sri512 = (b: Buffer) => ssri.fromData(b, { algorithms: ["sha512"] }).toString();
const sha1 = (b: Buffer) => createHash("sha1").update(b).digest("hex");

function get(url: string, headers: Record<string, string> = {}, target: FastifyInstance = app) {
  return target.inject({ method: "GET", url, headers: { ...ta.auth("user"), ...headers } });
}

beforeAll(async () => {
  t = await createTestDatabase();
  storageDir = mkdtempSync(join(tmpdir(), "spm-registry-store-"));
  store = new ContentStore(storageDir);
  ta = await buildTestApp(t.db, { DATABASE_URL: t.url, STORAGE_DIR: storageDir });
  app = ta.app;
  const db = t.db;

  await seed(db, "left-pad", "1.0.0", "approved", { publishedAt: "2023-01-01T00:00:00.000Z" });
  await seed(db, "left-pad", "1.1.0", "approved", {
    manifest: { dependencies: { "is-number": "^7.0.0" }, engines: { node: ">=14" }, bin: { lp: "bin/lp.js" }, description: "pads left" },
    installScripts: { postinstall: "node setup.js" },
    publishedAt: "2023-06-01T00:00:00.000Z",
  });
  await seed(db, "left-pad", "2.0.0-beta.1", "approved", { publishedAt: "2023-07-01T00:00:00.000Z" });
  await seed(db, "left-pad", "1.3.0", "pending_approval", {
    reviewReasons: ["install scripts"],
    reasonCode: "needs_review",
    reasonMessage: "install scripts",
  });
  await seed(db, "left-pad", "0.9.0", "rejected", {
    reasonCode: "licence_denied",
    reasonMessage: "licence GPL-3.0-only is denied by policy",
  });
  await seed(db, "left-pad", "0.8.0", "failed", {
    lastErrorCode: "upstream_unavailable",
    lastErrorMessage: "registry.npmjs.org answered 503 five times",
  });
  await seed(db, "left-pad", "0.7.0", "downloading");

  await seed(db, "lodash", "4.17.21", "approved");
  await seed(db, "lodash", "4.17.15", "rejected", {
    reasonCode: "critical_vulnerability",
    reasonMessage: "lodash@4.17.15: GHSA-p6mc-m468-83gw (critical) Prototype Pollution in lodash, fixed in 4.17.19",
  });

  await seed(db, "@acme/widget", "1.0.0", "approved");
  await seed(db, "@acme/widget", "1.1.0", "approved");
  await seed(db, "@acme/widget", "1.2.0-rc.1", "approved");
  await db.$executeRaw`INSERT INTO dist_tag_pin (name, tag, version, pinned_by) VALUES
    ('@acme/widget', 'latest', '1.0.0', 'admin1'), ('@acme/widget', 'next', '1.2.0-rc.1', 'admin1'),
    ('@acme/widget', 'gone', '9.9.9', 'admin1')`;

  await seed(db, "only-pending", "1.0.0", "pending_approval", { reviewReasons: ["install scripts", "published 3 h ago; minimum release age is 72 h"] });
  await seed(db, "only-refused", "1.0.0", "rejected", {
    reasonCode: "malicious",
    reasonMessage: "only-refused@1.0.0 is reported malicious: MAL-2024-1 (critical) Malicious code in only-refused",
  });
  await seed(db, "only-refused", "1.1.0", "scanning");
});

afterAll(async () => {
  await app?.close();
  await t?.drop();
  rmSync(storageDir, { recursive: true, force: true });
});

describe("packument", () => {
  it("lists only approved versions, with tarball URLs pointing back and dist of the stored bytes", async () => {
    const res = await get("/npm/left-pad");
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    const doc = res.json() as Json;
    expect(doc.name).toBe("left-pad");
    expect(doc._id).toBe("left-pad");
    const versions = doc.versions as Record<string, Json>;
    expect(Object.keys(versions)).toEqual(["1.0.0", "1.1.0", "2.0.0-beta.1"]);
    for (const v of Object.keys(versions)) {
      const bytes = tarballs.get(`left-pad@${v}`)!;
      const dist = versions[v]!.dist as Json;
      expect(dist.tarball).toBe(`${BASE}/npm/left-pad/-/left-pad-${v}.tgz`);
      expect(dist.integrity).toBe(sri512(bytes));
      expect(dist.shasum).toBe(sha1(bytes));
      expect(versions[v]!._id).toBe(`left-pad@${v}`);
    }
    expect(versions["1.1.0"]).toMatchObject({
      dependencies: { "is-number": "^7.0.0" },
      engines: { node: ">=14" },
      bin: { lp: "bin/lp.js" },
      hasInstallScript: true,
      license: "MIT",
    });
    expect(versions["1.0.0"]!.hasInstallScript).toBeUndefined();
    expect(doc["dist-tags"]).toEqual({ latest: "1.1.0" });
    const time = doc.time as Record<string, string>;
    expect(Object.keys(time).sort()).toEqual(["1.0.0", "1.1.0", "2.0.0-beta.1", "created", "modified"]);
    expect(time["1.0.0"]).toBe("2023-01-01T00:00:00.000Z");
    expect(time.created).toBe("2023-01-01T00:00:00.000Z");
    expect(Date.parse(time.modified!)).toBeGreaterThanOrEqual(Date.parse("2023-07-01T00:00:00.000Z"));
    expect(res.headers.etag).toMatch(/^W\/".+"$/);
  });

  it("names the versions it will not serve in policyRestrictions, with their reasons (npm prints them)", async () => {
    const doc = (await get("/npm/left-pad")).json() as Json;
    const pr = doc.policyRestrictions as { message: string; versions: Record<string, Json> };
    expect(Object.keys(pr.versions).sort()).toEqual(["0.7.0", "0.8.0", "0.9.0", "1.3.0"]);
    expect(pr.versions["1.3.0"]).toEqual({ name: "left-pad", version: "1.3.0" });
    expect(pr.message.split("\n")).toEqual([
      "left-pad@1.3.0 is awaiting approval (install scripts)",
      "left-pad@0.9.0 is rejected: licence GPL-3.0-only is denied by policy",
      "left-pad@0.8.0 failed vetting: registry.npmjs.org answered 503 five times; an admin can retry it",
      "left-pad@0.7.0 is being vetted (downloading); try again shortly",
    ]);
  });

  it("serves the abbreviated form for Accept: application/vnd.npm.install-v1+json", async () => {
    const res = await get("/npm/left-pad", { accept: `${ABBREVIATED}; q=1.0, application/json; q=0.8, */*` });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe(ABBREVIATED);
    const doc = res.json() as Json;
    expect(Object.keys(doc).sort()).toEqual(["dist-tags", "modified", "name", "policyRestrictions", "versions"]);
    const v = (doc.versions as Record<string, Json>)["1.1.0"]!;
    expect(Object.keys(v).sort()).toEqual(["bin", "dependencies", "dist", "engines", "hasInstallScript", "name", "version"]);
    expect((v.dist as Json).integrity).toBe(sri512(tarballs.get("left-pad@1.1.0")!));
    expect(res.headers.etag).not.toBe((await get("/npm/left-pad")).headers.etag);
  });

  it("answers 304 to a matching If-None-Match and gzips when accepted", async () => {
    const first = await get("/npm/left-pad");
    const etag = first.headers.etag as string;
    const again = await get("/npm/left-pad", { "if-none-match": etag });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe("");
    expect(again.headers.etag).toBe(etag);
    expect((await get("/npm/left-pad", { "if-none-match": 'W/"other"' })).statusCode).toBe(200);

    const gz = await get("/npm/left-pad", { "accept-encoding": "gzip, deflate, br" });
    expect(gz.statusCode).toBe(200);
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.headers.vary).toMatch(/accept-encoding/);
    expect(gunzipSync(gz.rawPayload).toString("utf8")).toBe(first.body);
    expect((await get("/npm/left-pad", { "accept-encoding": "gzip;q=0" })).headers["content-encoding"]).toBeUndefined();
  });

  it("uses pinned dist-tags when the pinned version is approved, and ignores pins to anything else", async () => {
    const doc = (await get("/npm/@acme%2fwidget")).json() as Json;
    expect(doc["dist-tags"]).toEqual({ latest: "1.0.0", next: "1.2.0-rc.1" });
    expect(Object.keys(doc.versions as Json)).toEqual(["1.0.0", "1.1.0", "1.2.0-rc.1"]);
  });

  it("serves scoped packages under both URL forms, with scoped tarball URLs", async () => {
    const forms = ["/npm/@acme%2fwidget", "/npm/@acme%2Fwidget", "/npm/%40acme%2fwidget", "/npm/@acme/widget"];
    const bodies = await Promise.all(forms.map((u) => get(u)));
    for (const res of bodies) {
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe(bodies[0]!.body);
    }
    const doc = bodies[0]!.json() as { versions: Record<string, { dist: { tarball: string } }> };
    expect(doc.versions["1.0.0"]!.dist.tarball).toBe(`${BASE}/npm/@acme/widget/-/widget-1.0.0.tgz`);
  });

  it("serves one version document by version or by dist-tag", async () => {
    const byVersion = await get("/npm/left-pad/1.0.0");
    expect(byVersion.statusCode).toBe(200);
    expect(byVersion.json()).toMatchObject({ name: "left-pad", version: "1.0.0", dist: { tarball: `${BASE}/npm/left-pad/-/left-pad-1.0.0.tgz` } });
    expect((await get("/npm/left-pad/latest")).json()).toMatchObject({ version: "1.1.0" });
    expect((await get("/npm/@acme/widget/next")).json()).toMatchObject({ version: "1.2.0-rc.1" });
    const refused = await get("/npm/left-pad/0.9.0");
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toEqual({ error: "left-pad@0.9.0 is rejected: licence GPL-3.0-only is denied by policy" });
    expect((await get("/npm/left-pad/5.0.0")).statusCode).toBe(404);
  });

  it("refuses a name with no approved version: 403 listing the states, 404 when never requested", async () => {
    const pending = await get("/npm/only-pending");
    expect(pending.statusCode).toBe(403);
    expect(pending.json()).toEqual({
      error:
        "only-pending has no approved version (1 awaiting approval): only-pending@1.0.0 is awaiting approval " +
        "(install scripts; published 3 h ago; minimum release age is 72 h)",
    });
    const refused = await get("/npm/only-refused", { accept: ABBREVIATED });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toEqual({
      error:
        "only-refused has no approved version (1 being vetted, 1 rejected): only-refused@1.1.0 is being vetted (scanning); try again shortly; " +
        "only-refused@1.0.0 is rejected: reported malicious: MAL-2024-1 (critical) Malicious code in only-refused",
    });
    const never = await get("/npm/never-heard-of");
    expect(never.statusCode).toBe(404);
    expect(never.json()).toEqual({ error: "never-heard-of is not requested: upload a lockfile that contains it" });
    const invalid = await get("/npm/..%2fetc");
    expect(invalid.statusCode).toBe(404);
    expect((invalid.json() as { error: string }).error).toMatch(/not a valid package name|not a package path/);
  });
});

describe("tarballs", () => {
  it("streams the stored bytes of an approved version", async () => {
    const res = await get("/npm/left-pad/-/left-pad-1.1.0.tgz");
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    const bytes = tarballs.get("left-pad@1.1.0")!;
    expect(Number(res.headers["content-length"])).toBe(bytes.length);
    expect(res.rawPayload.equals(bytes)).toBe(true);
    const doc = (await get("/npm/left-pad")).json() as { versions: Record<string, { dist: { integrity: string } }> };
    expect(sri512(res.rawPayload)).toBe(doc.versions["1.1.0"]!.dist.integrity);
  });

  it("serves scoped tarballs under both URL forms", async () => {
    for (const url of ["/npm/@acme/widget/-/widget-1.1.0.tgz", "/npm/@acme%2fwidget/-/widget-1.1.0.tgz"]) {
      const res = await get(url);
      expect(res.statusCode).toBe(200);
      expect(res.rawPayload.equals(tarballs.get("@acme/widget@1.1.0")!)).toBe(true);
    }
  });

  it.each([
    ["left-pad-1.3.0.tgz", 403, "left-pad@1.3.0 is awaiting approval (install scripts)"],
    ["left-pad-0.9.0.tgz", 403, "left-pad@0.9.0 is rejected: licence GPL-3.0-only is denied by policy"],
    ["left-pad-0.8.0.tgz", 403, "left-pad@0.8.0 failed vetting: registry.npmjs.org answered 503 five times; an admin can retry it"],
    ["left-pad-0.7.0.tgz", 403, "left-pad@0.7.0 is being vetted (downloading); try again shortly"],
    ["left-pad-3.0.0.tgz", 404, "left-pad@3.0.0 is not requested: upload a lockfile that contains it"],
  ])("refuses %s with %i and the reason", async (file, status, error) => {
    const res = await get(`/npm/left-pad/-/${file}`);
    expect(res.statusCode).toBe(status);
    expect(res.json()).toEqual({ error });
  });

  it("refuses a rejected version with the advisory that rejected it", async () => {
    const res = await get("/npm/lodash/-/lodash-4.17.15.tgz");
    expect(res.statusCode).toBe(403);
    expect(res.json()).toEqual({
      error: "lodash@4.17.15 is rejected: GHSA-p6mc-m468-83gw (critical) Prototype Pollution in lodash, fixed in 4.17.19",
    });
  });

  it("answers 404 for a file that is not a tarball of the package", async () => {
    expect((await get("/npm/left-pad/-/right-pad-1.0.0.tgz")).statusCode).toBe(404);
    expect((await get("/npm/left-pad/-/left-pad-latest.tgz")).statusCode).toBe(404);
  });

  it("answers 500 (and says so) when an approved version's tarball is missing from the store (and not in its cache)", async () => {
    const [row] = await t.db.$queryRaw<{ key: string }[]>`
      SELECT results->'download'->>'storageKey' AS key FROM package WHERE name = 'lodash' AND version = '4.17.21'`;
    const path = store.path(row!.key);
    const bytes = tarballs.get("lodash@4.17.21")!;
    unlinkSync(path);
    try {
      const res = await get("/npm/lodash/-/lodash-4.17.21.tgz");
      expect(res.statusCode).toBe(500);
      expect((res.json() as { error: string }).error).toMatch(/lodash@4\.17\.21 is approved but its tarball is missing/);
    } finally {
      await store.write(Readable.from([bytes]), 10 * 1024 * 1024);
    }
    expect((await get("/npm/lodash/-/lodash-4.17.21.tgz")).statusCode).toBe(200);
  });
});

describe("tarball cache", () => {
  /** An approved version whose "tarball" is `bytes` (any bytes: the route does not unpack them). */
  async function seedBytes(name: string, version: string, bytes: Buffer): Promise<{ id: number; path: string }> {
    const { blob } = await store.write(Readable.from([bytes]), 10 * 1024 * 1024);
    const download = { storageKey: blob.key, size: blob.size, integrity: blob.integrity, shasum: blob.sha1 };
    const results = JSON.stringify({ manifest: { name, version, license: "MIT" }, download });
    const [row] = await t.db.$queryRaw<{ id: number }[]>`
      INSERT INTO package (name, version, status, results) VALUES (${name}, ${version}, 'approved', ${results}::jsonb) RETURNING id`;
    return { id: row!.id, path: store.path(blob.key) };
  }
  const restore = (bytes: Buffer) => store.write(Readable.from([bytes]), 10 * 1024 * 1024);
  /** The same bytes with one byte changed (same length). */
  const corrupted = (bytes: Buffer) => {
    const bad = Buffer.from(bytes);
    bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0xff;
    return bad;
  };

  it("serves a cached tarball with identical bytes and headers without reading the store again; 304 for its ETag", async () => {
    const bytes = randomBytes(20_000);
    const { path } = await seedBytes("cached-pkg", "1.0.0", bytes);
    const url = "/npm/cached-pkg/-/cached-pkg-1.0.0.tgz";
    const first = await get(url);
    expect(first.statusCode).toBe(200);
    expect(first.rawPayload.equals(bytes)).toBe(true);
    unlinkSync(path); // from now on only the cache has the bytes
    try {
      const again = await get(url);
      expect(again.statusCode).toBe(200);
      expect(again.rawPayload.equals(bytes)).toBe(true);
      for (const h of ["content-type", "content-length", "etag", "cache-control"]) expect(again.headers[h], h).toBe(first.headers[h]);
      expect(again.headers["content-type"]).toBe("application/octet-stream");
      expect(again.headers["content-length"]).toBe(String(bytes.length));
      expect(again.headers["cache-control"]).toBe("private, no-cache");
      const etag = again.headers.etag as string;
      expect(etag).toMatch(/^"[0-9a-f]{40}"$/);

      const notModified = await get(url, { "if-none-match": etag });
      expect(notModified.statusCode).toBe(304);
      expect(notModified.rawPayload.length).toBe(0);
      expect(notModified.headers.etag).toBe(etag);
      expect((await get(url, { "if-none-match": '"0000"' })).statusCode).toBe(200);
    } finally {
      await restore(bytes);
    }
  });

  it("stops serving a tarball soon after its approval is revoked (the revocation's NOTIFY), and never serves it again", async () => {
    const bytes = randomBytes(10_000);
    const { id } = await seedBytes("revoked-pkg", "1.0.0", bytes);
    const url = "/npm/revoked-pkg/-/revoked-pkg-1.0.0.tgz";
    for (let i = 0; i < 3; i++) expect((await get(url)).statusCode).toBe(200); // lookup and bytes cached
    const etag = (await get(url)).headers.etag as string;

    const revoke = await app.inject({
      method: "POST",
      url: "/api/approver/packages/batch-reject",
      headers: ta.auth("approver"),
      payload: { package_ids: [id], comment: "revoked in a test" },
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expect(revoke.json()).toMatchObject({ rejected: 1 });
    const revokedAt = performance.now();
    let res = await get(url);
    while (res.statusCode === 200 && performance.now() - revokedAt < 2_000) {
      await new Promise((r) => setTimeout(r, 10));
      res = await get(url);
    }
    // the documented bound: until the NOTIFY arrives (milliseconds on a live LISTEN connection)
    expect(performance.now() - revokedAt).toBeLessThan(2_000);
    expect(res.statusCode).toBe(403);
    expect(res.json()).toEqual({ error: "revoked-pkg@1.0.0 is rejected: revoked in a test" });
    for (let i = 0; i < 10; i++) expect((await get(url)).statusCode).toBe(403);
    const conditional = await get(url, { "if-none-match": etag });
    expect(conditional.statusCode).toBe(403);
  });

  it("refuses a corrupted store file with 500 and a clear message, and does not cache it", async () => {
    const bytes = randomBytes(30_000);
    const { path } = await seedBytes("corrupt-pkg", "1.0.0", bytes);
    const url = "/npm/corrupt-pkg/-/corrupt-pkg-1.0.0.tgz";
    writeFileSync(path, corrupted(bytes));
    for (let i = 0; i < 2; i++) {
      const res = await get(url);
      expect(res.statusCode).toBe(500);
      expect(res.json()).toEqual({
        error:
          "corrupt-pkg@1.0.0 is approved but its stored tarball does not match its recorded integrity (the gate's store is corrupted); not served; tell an admin",
      });
    }
    writeFileSync(path, bytes); // repaired: served, with the right bytes (nothing bad was kept)
    const res = await get(url);
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.equals(bytes)).toBe(true);
 
    // a row whose integrity names other bytes than its store key is refused the same way
    await t.db.$executeRaw`UPDATE package SET results = jsonb_set(results, '{download,integrity}', to_jsonb(${sri512(randomBytes(8))}::text))
      WHERE name = 'corrupt-pkg' AND version = '1.0.0'`;
    await t.db.$executeRaw`SELECT pg_notify('spm_registry', 'corrupt-pkg')`;
    let status = 200;
    for (let i = 0; i < 50 && status === 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      status = (await get(url)).statusCode;
    }
    expect(status).toBe(500);
    expect(((await get(url)).json() as { error: string }).error).toMatch(/^corrupt-pkg@1\.0\.0 is approved but its stored tarball does not match its recorded integrity/);
  });

  it("keeps at most REGISTRY_TARBALL_CACHE_MB of tarballs, evicting the least recently used", async () => {
    // 32,086 bytes: room for 8 tarballs of 4,000 bytes (each at most an eighth of the cache)
    const small = await buildTestApp(t.db, { DATABASE_URL: t.url, STORAGE_DIR: storageDir, REGISTRY_TARBALL_CACHE_MB: "0.0306" });
    const blobs: { bytes: Buffer; path: string }[] = [];
    try {
      for (let v = 1; v <= 10; v++) {
        const bytes = randomBytes(4_000);
        blobs.push({ bytes, ...(await seedBytes("lru-pkg", `1.0.${v}`, bytes)) });
      }
      const fetch = (v: number) => get(`/npm/lru-pkg/-/lru-pkg-1.0.${v}.tgz`, {}, small.app);
      for (let v = 1; v <= 8; v++) expect((await fetch(v)).statusCode).toBe(200);
      expect((await fetch(1)).statusCode).toBe(200); // 1 becomes the most recently used
      expect((await fetch(9)).statusCode).toBe(200); // evicts 2
      expect((await fetch(10)).statusCode).toBe(200); // evicts 3
      for (const v of [1, 2, 3, 10]) unlinkSync(blobs[v - 1]!.path);
      for (const v of [1, 10]) {
        const res = await fetch(v);
        expect(res.statusCode, `1.0.${v}`).toBe(200);
        expect(res.rawPayload.equals(blobs[v - 1]!.bytes)).toBe(true);
      }
      for (const v of [2, 3]) {
        const res = await fetch(v);
        expect(res.statusCode, `1.0.${v}`).toBe(500);
        expect((res.json() as { error: string }).error).toMatch(/tarball is missing from the gate's store/);
      }
    } finally {
      await small.app.close();
      for (const b of blobs) await restore(b.bytes);
    }
  });

  it("streams tarballs it does not cache, and cuts a corrupted one short instead of sending it whole", async () => {
    const off = await buildTestApp(t.db, { DATABASE_URL: t.url, STORAGE_DIR: storageDir, REGISTRY_TARBALL_CACHE_MB: "0" });
    const bytes = randomBytes(200_000);
    const { path } = await seedBytes("streamed-pkg", "1.0.0", bytes);
    const url = "/npm/streamed-pkg/-/streamed-pkg-1.0.0.tgz";
    try {
      const res = await get(url, {}, off.app);
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-length"]).toBe(String(bytes.length));
      expect(res.rawPayload.equals(bytes)).toBe(true);
      writeFileSync(path, corrupted(bytes));
      // the status line and the first chunks are out before the last chunk is hashed: the response
      // is destroyed, so the client sees a body shorter than its content-length
      await expect(get(url, {}, off.app)).rejects.toThrow(/response destroyed before completion/);
    } finally {
      await off.app.close();
      await restore(bytes);
    }
  });
});

describe("TarballCache", () => {
  const blob = (n: number) => {
    const bytes = randomBytes(n);
    const integrity = sri512(bytes);
    return { bytes, integrity, key: ContentStore.keyOf(integrity)! };
  };

  it("holds at most maxBytes, evicts the least recently used, and keeps nothing larger than maxEntryBytes", async () => {
    const cache = new TarballCache({ maxBytes: 1_000, maxEntryBytes: 400 });
    const [a, b, c, d, big] = [blob(300), blob(300), blob(300), blob(300), blob(401)];
    for (const x of [a, b, c]) expect((await cache.load(x!.key, x!.integrity, async () => x!.bytes)).equals(x!.bytes)).toBe(true);
    expect(cache.bytes).toBe(900);
    expect(cache.get(a!.key)?.equals(a!.bytes)).toBe(true); // a is now the most recent
    await cache.load(d!.key, d!.integrity, async () => d!.bytes);
    expect(cache.bytes).toBeLessThanOrEqual(1_000);
    expect([a, b, c, d].map((x) => cache.has(x!.key))).toEqual([true, false, true, true]);
    expect(cache.evictions).toBe(1);
    expect(cache.fits(big!.bytes.length)).toBe(false);
    expect((await cache.load(big!.key, big!.integrity, async () => big!.bytes)).equals(big!.bytes)).toBe(true);
    expect(cache.has(big!.key)).toBe(false);
    expect(new TarballCache({ maxBytes: 0 }).fits(1)).toBe(false);
  });

  it("verifies bytes before keeping them, and shares one read between concurrent loads", async () => {
    const cache = new TarballCache({ maxBytes: 10_000 });
    const x = blob(500);
    await expect(cache.load(x.key, x.integrity, async () => Buffer.concat([x.bytes.subarray(1), Buffer.from([0])]))).rejects.toBeInstanceOf(
      TarballIntegrityError,
    );
    expect(cache.has(x.key)).toBe(false);
    const other = blob(10);
    await expect(cache.load(x.key, other.integrity, async () => x.bytes)).rejects.toThrow(/does not name this store key/);
    let reads = 0;
    const read = async () => {
      reads++;
      await new Promise((r) => setTimeout(r, 10));
      return x.bytes;
    };
    const loaded = await Promise.all([cache.load(x.key, x.integrity, read), cache.load(x.key, x.integrity, read)]);
    expect(reads).toBe(1);
    expect(loaded.every((b) => b.equals(x.bytes))).toBe(true);
    expect(cache.get(x.key)?.equals(x.bytes)).toBe(true);
  });

  it("streams through verifyingStream only bytes that hash right", async () => {
    const x = blob(100_000);
    const chunks = (b: Buffer) => Readable.from([b.subarray(0, 30_000), b.subarray(30_000, 60_000), b.subarray(60_000)]);
    const passed: Buffer[] = [];
    for await (const c of chunks(x.bytes).pipe(verifyingStream(x.key, () => undefined))) passed.push(c as Buffer);
    expect(Buffer.concat(passed).equals(x.bytes)).toBe(true);
    const bad = Buffer.from(x.bytes);
    bad[10] = bad[10]! ^ 1;
    const got: Buffer[] = [];
    const mismatches: Error[] = [];
    const run = async () => {
      for await (const c of chunks(bad).pipe(verifyingStream(x.key, (e) => mismatches.push(e)))) got.push(c as Buffer);
    };
    await expect(run()).rejects.toBeInstanceOf(TarballIntegrityError);
    expect(mismatches).toHaveLength(1);
    expect(Buffer.concat(got).length).toBeLessThan(bad.length);
  });
});

describe("version lookups in NameCache", () => {
  it("forgets every key of a group when the group's name is invalidated", async () => {
    const cache = new NameCache<number>();
    const load = (value: number) => async () => ({ value, ttlMs: 60_000 });
    expect(await cache.get("a@1.0.0", load(1), "a")).toBe(1);
    expect(await cache.get("a@2.0.0", load(2), "a")).toBe(2);
    expect(await cache.get("ab@1.0.0", load(3), "ab")).toBe(3);
    expect(await cache.get("a@1.0.0", load(9), "a")).toBe(1);
    cache.invalidate("a");
    expect(await cache.get("a@1.0.0", load(4), "a")).toBe(4);
    expect(await cache.get("a@2.0.0", load(5), "a")).toBe(5);
    expect(await cache.get("ab@1.0.0", load(9), "ab")).toBe(3);
    // a load in flight when its group is invalidated is not kept
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pending = cache.get("b@1.0.0", async () => (await gate, { value: 6, ttlMs: 60_000 }), "b");
    cache.invalidate("b");
    release();
    expect(await pending).toBe(6);
    expect(await cache.get("b@1.0.0", load(7), "b")).toBe(7);
  });
});

describe("auth", () => {
  it("requires a token on every route but ping (REGISTRY_AUTH=required)", async () => {
    for (const url of ["/npm/left-pad", "/npm/left-pad/-/left-pad-1.0.0.tgz", "/npm/-/whoami"]) {
      const res = await app.inject({ method: "GET", url });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({
        error: "authentication required: npm login is not supported; set //localhost/npm/:_authToken=<token from spm login>",
      });
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="spm"');
    }
    const bad = await app.inject({ method: "GET", url: "/npm/left-pad", headers: { authorization: "Bearer nope" } });
    expect(bad.statusCode).toBe(401);
    expect((bad.json() as { error: string }).error).toMatch(/^the token is not valid here/);
    const audit = await app.inject({ method: "POST", url: "/npm/-/npm/v1/security/advisories/bulk", payload: {} });
    expect(audit.statusCode).toBe(401);
    const ping = await app.inject({ method: "GET", url: "/npm/-/ping?write=true" });
    expect(ping.statusCode).toBe(200);
    expect(ping.json()).toEqual({});
  });

  it("leaves WWW-Authenticate out for the npm CLI, which would otherwise hide the message", async () => {
    const res = await app.inject({ method: "GET", url: "/npm/left-pad", headers: { "user-agent": "npm/11.6.0 node/v20.19.0 linux x64 workspaces/false" } });
    expect(res.statusCode).toBe(401);
    expect(res.headers["www-authenticate"]).toBeUndefined();
  });

  it("whoami names the token's user", async () => {
    const res = await get("/npm/-/whoami");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ username: "user1" });
  });

  it("REGISTRY_AUTH=none opens the read routes (whoami still needs a token); PUBLIC_URL sets tarball URLs", async () => {
    const open = await buildTestApp(t.db, { STORAGE_DIR: storageDir, REGISTRY_AUTH: "none", PUBLIC_URL: "https://gate.example.com/spm/" });
    try {
      const res = await open.app.inject({ method: "GET", url: "/npm/@acme/widget" });
      expect(res.statusCode).toBe(200);
      const doc = res.json() as { versions: Record<string, { dist: { tarball: string } }> };
      expect(doc.versions["1.0.0"]!.dist.tarball).toBe("https://gate.example.com/spm/npm/@acme/widget/-/widget-1.0.0.tgz");
      const tgz = await open.app.inject({ method: "GET", url: "/npm/@acme/widget/-/widget-1.0.0.tgz" });
      expect(tgz.statusCode).toBe(200);
      const who = await open.app.inject({ method: "GET", url: "/npm/-/whoami" });
      expect(who.statusCode).toBe(401);
      expect((who.json() as { error: string }).error).toContain("//gate.example.com/spm/npm/:_authToken=");
      expect((await open.app.inject({ method: "GET", url: "/npm/-/whoami", headers: open.auth("admin") })).json()).toEqual({ username: "admin1" });
    } finally {
      await open.app.close();
    }
  });

  it("stops accepting a token that verified before once it expires (the verified-token memo ends at exp)", async () => {
    const token = app.jwt.sign({ sub: "1", name: "user1", role: "user" }, { expiresIn: "2s" });
    const exp = (app.jwt.decode(token) as { exp: number }).exp;
    const headers = { authorization: `Bearer ${token}` };
    for (let i = 0; i < 2; i++) expect((await app.inject({ method: "GET", url: "/npm/-/whoami", headers })).json()).toEqual({ username: "user1" });
    expect((await app.inject({ method: "GET", url: "/npm/left-pad", headers })).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 20));
    for (const url of ["/npm/left-pad", "/npm/-/whoami"]) {
      const res = await app.inject({ method: "GET", url, headers });
      expect(res.statusCode).toBe(401);
      expect((res.json() as { error: string }).error).toMatch(/^the token has expired/);
    }
  });

  it("reports an expired token as expired", async () => {
    const expired = app.jwt.sign({ sub: "1", name: "user1", role: "user" }, { expiresIn: -10 });
    const res = await app.inject({ method: "GET", url: "/npm/left-pad", headers: { authorization: `Bearer ${expired}` } });
    expect(res.statusCode).toBe(401);
    expect((res.json() as { error: string }).error).toMatch(/^the token has expired/);
  });
});

describe("cache invalidation", () => {
  it("serves from the cache until NOTIFY spm_registry names the package, then rebuilds", async () => {
    // lodash's only refused version is rejected (a stable state): its entry lives for the full TTL
    const versionsOf = async () => Object.keys(((await get("/npm/lodash")).json() as { versions: Json }).versions);
    const eventually = async (wanted: string[]) => {
      let versions: string[] = [];
      for (let i = 0; i < 50; i++) {
        versions = await versionsOf();
        if (versions.join() === wanted.join()) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return versions;
    };
    const tarballStatus = async () => (await get("/npm/lodash/-/lodash-4.17.15.tgz")).statusCode;
    const eventuallyStatus = async (wanted: number) => {
      let status = 0;
      for (let i = 0; i < 50; i++) {
        status = await tarballStatus();
        if (status === wanted) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return status;
    };
    expect(await versionsOf()).toEqual(["4.17.21"]);
    expect(await tarballStatus()).toBe(403);
    // an admin override behind the cache's back (no NOTIFY): the packument and the tarball's lookup
    // are still served from the cache …
    await t.db.$executeRaw`UPDATE package SET status = 'approved', reason_code = NULL, reason_message = NULL, updated_at = now()
      WHERE name = 'lodash' AND version = '4.17.15'`;
    expect(await versionsOf()).toEqual(["4.17.21"]);
    expect(await tarballStatus()).toBe(403);
    // … until the NOTIFY that every approval and revocation sends
    await t.db.$executeRaw`SELECT pg_notify('spm_registry', 'lodash')`;
    expect(await eventually(["4.17.15", "4.17.21"])).toEqual(["4.17.15", "4.17.21"]);
    expect(((await get("/npm/lodash")).json() as Json)["dist-tags"]).toEqual({ latest: "4.17.21" });
    expect(await eventuallyStatus(200)).toBe(200);

    // revocation: the tarball is refused once the NOTIFY arrives (the real revocation sends it in its
    // own transaction; see "tarball cache" below)
    await t.db.$executeRaw`UPDATE package SET status = 'rejected', reason_code = 'rejected_by_reviewer',
      reason_message = 'approval revoked: see GHSA-p6mc-m468-83gw', updated_at = now() WHERE name = 'lodash' AND version = '4.17.15'`;
    expect(await tarballStatus()).toBe(200); // cached: no NOTIFY yet
    await t.db.$executeRaw`SELECT pg_notify('spm_registry', 'lodash')`;
    expect(await eventuallyStatus(403)).toBe(403);
    const tgz = await get("/npm/lodash/-/lodash-4.17.15.tgz");
    expect(tgz.json()).toEqual({ error: "lodash@4.17.15 is rejected: approval revoked: see GHSA-p6mc-m468-83gw" });
    expect(await eventually(["4.17.21"])).toEqual(["4.17.21"]);
  });

  it("drops the whole cache when the LISTEN connection is lost (notifications may have been missed), then caches again", async () => {
    const versionsOf = async () => Object.keys(((await get("/npm/@acme/widget")).json() as { versions: Json }).versions);
    const tarballStatus = async () => (await get("/npm/@acme/widget/-/widget-1.1.0.tgz")).statusCode;
    expect(await versionsOf()).toEqual(["1.0.0", "1.1.0", "1.2.0-rc.1"]);
    expect(await tarballStatus()).toBe(200);
    await t.db.$executeRaw`UPDATE package SET status = 'rejected', reason_code = 'rejected_by_reviewer', reason_message = 'revoked'
      WHERE name = '@acme/widget' AND version = '1.1.0'`;
    expect(await versionsOf()).toEqual(["1.0.0", "1.1.0", "1.2.0-rc.1"]); // cached, and no NOTIFY was sent
    expect(await tarballStatus()).toBe(200);
    const killed = await t.db.$queryRaw<{ pid: number }[]>`
      SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN "spm_registry"'`;
    expect(killed).toHaveLength(1);
    await t.db.$queryRaw`SELECT pg_terminate_backend(${killed[0]!.pid}::int)`;
    let versions: string[] = [];
    for (let i = 0; i < 100; i++) {
      versions = await versionsOf();
      if (!versions.includes("1.1.0")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(versions).toEqual(["1.0.0", "1.2.0-rc.1"]);
    expect(await tarballStatus()).toBe(403); // the tarball's lookup was dropped with the rest
    // reconnected: a new LISTEN session, and NOTIFY works again
    let sessions: { pid: number }[] = [];
    for (let i = 0; i < 100 && sessions.length === 0; i++) {
      sessions = await t.db.$queryRaw<{ pid: number }[]>`
        SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN "spm_registry"'`;
      if (sessions.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.pid).not.toBe(killed[0]!.pid);
    await t.db.$executeRaw`UPDATE package SET status = 'approved', reason_code = NULL, reason_message = NULL
      WHERE name = '@acme/widget' AND version = '1.1.0'`;
    await t.db.$executeRaw`SELECT pg_notify('spm_registry', '@acme/widget')`;
    for (let i = 0; i < 50; i++) {
      versions = await versionsOf();
      if (versions.includes("1.1.0")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(versions).toEqual(["1.0.0", "1.1.0", "1.2.0-rc.1"]);
  });

  it("does not store a load that was in flight when its name was invalidated; clear() drops everything", async () => {
    const cache = new NameCache<number>();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pending = cache.get("a", async () => {
      await gate;
      return { value: 1, ttlMs: 60_000 };
    });
    const joined = cache.get("a", async () => ({ value: 99, ttlMs: 60_000 }));
    cache.invalidate("a");
    release();
    expect(await pending).toBe(1);
    expect(await joined).toBe(1);
    expect(await cache.get("a", async () => ({ value: 2, ttlMs: 60_000 }))).toBe(2);
    expect(await cache.get("a", async () => ({ value: 3, ttlMs: 60_000 }))).toBe(2);
    cache.clear();
    expect(await cache.get("a", async () => ({ value: 4, ttlMs: 60_000 }))).toBe(4);
    cache.enabled = false;
    cache.clear();
    expect(await cache.get("a", async () => ({ value: 5, ttlMs: 60_000 }))).toBe(5);
    expect(await cache.get("a", async () => ({ value: 6, ttlMs: 60_000 }))).toBe(6);
  });

  it("expires entries after their TTL", async () => {
    let now = 0;
    const cache = new NameCache<number>({ now: () => now });
    expect(await cache.get("a", async () => ({ value: 1, ttlMs: 1000 }))).toBe(1);
    now = 999;
    expect(await cache.get("a", async () => ({ value: 2, ttlMs: 1000 }))).toBe(1);
    now = 1000;
    expect(await cache.get("a", async () => ({ value: 3, ttlMs: 1000 }))).toBe(3);
  });
});

describe("advisories bulk (npm audit)", () => {
  async function* records(...docs: Json[]): AsyncGenerator<OsvSourceRecord> {
    for (const [i, doc] of docs.entries()) yield { source: `fixture-${i}.json`, doc };
  }

  beforeAll(async () => {
    const result = await importAdvisories(
      t.db,
      records(
        {
          id: "GHSA-p6mc-m468-83gw",
          modified: "2024-01-31T21:46:35Z",
          aliases: ["CVE-2020-8203"],
          summary: "Prototype Pollution in lodash",
          severity: [{ type: "CVSS_V3", score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" }],
          affected: [{ package: { ecosystem: "npm", name: "lodash" }, ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "4.17.19" }] }] }],
          references: [{ type: "ADVISORY", url: "https://nvd.nist.gov/vuln/detail/CVE-2020-8203" }],
          database_specific: { cwe_ids: ["CWE-1321"], severity: "CRITICAL" },
        },
        {
          id: "MAL-2024-1",
          modified: "2024-05-01T00:00:00Z",
          summary: "Malicious code in evil-pkg (npm)",
          affected: [{ package: { ecosystem: "npm", name: "evil-pkg" }, ranges: [{ type: "SEMVER", events: [{ introduced: "0" }] }] }],
        },
        {
          id: "OSV-LP-1",
          modified: "2024-05-01T00:00:00Z",
          summary: "left-pad pads wrongly",
          affected: [
            {
              package: { ecosystem: "npm", name: "left-pad" },
              ranges: [{ type: "SEMVER", events: [{ introduced: "1.0.0" }, { fixed: "1.2.3" }, { introduced: "2.0.0-0" }, { last_affected: "2.0.0-beta.1" }] }],
              versions: ["0.0.1"],
            },
          ],
        },
        {
          id: "GHSA-xxxx-gone",
          modified: "2024-05-01T00:00:00Z",
          withdrawn: "2024-06-01T00:00:00Z",
          affected: [{ package: { ecosystem: "npm", name: "left-pad" }, versions: ["1.0.0"] }],
        },
      ),
      "test",
    );
    expect(result.failed).toBe(0);
  });

  const bulk = (payload: string | Buffer, headers: Record<string, string> = {}) =>
    app.inject({
      method: "POST",
      url: "/npm/-/npm/v1/security/advisories/bulk",
      headers: { ...ta.auth("user"), "content-type": "application/json", ...headers },
      payload,
    });

  it("answers npm's bulk shape for the affected versions only (gzip-encoded body, as npm sends it)", async () => {
    const body = { lodash: ["4.17.15", "4.17.21"], "left-pad": ["1.1.0"], "evil-pkg": ["9.9.9"], "is-number": ["7.0.0"] };
    const res = await bulk(gzipSync(JSON.stringify(body)), { "content-encoding": "gzip" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      "evil-pkg": [
        {
          id: "MAL-2024-1",
          url: "https://osv.dev/vulnerability/MAL-2024-1",
          title: "Malicious code in evil-pkg (npm)",
          severity: "critical",
          vulnerable_versions: ">=0.0.0",
          cwe: [],
          cvss: { score: 0, vectorString: null },
        },
      ],
      "left-pad": [
        {
          id: "OSV-LP-1",
          url: "https://osv.dev/vulnerability/OSV-LP-1",
          title: "left-pad pads wrongly",
          severity: "high",
          vulnerable_versions: ">=1.0.0 <1.2.3 || >=2.0.0-0 <=2.0.0-beta.1 || 0.0.1",
          cwe: [],
          cvss: { score: 0, vectorString: null },
        },
      ],
      lodash: [
        {
          id: "GHSA-p6mc-m468-83gw",
          url: "https://github.com/advisories/GHSA-p6mc-m468-83gw",
          title: "Prototype Pollution in lodash",
          severity: "critical",
          vulnerable_versions: "<4.17.19",
          cwe: ["CWE-1321"],
          cvss: { score: 9.8, vectorString: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" },
        },
      ],
    });
  });

  it("accepts a plain JSON body and returns {} when nothing is affected", async () => {
    const res = await bulk(JSON.stringify({ lodash: ["4.17.21"], "left-pad": ["1.2.3"] }));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({});
  });

  it("refuses malformed bodies in npm's error shape", async () => {
    const bad = await bulk(JSON.stringify({ lodash: "4.17.21" }));
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: "lodash: expected an array of version strings" });
    const notGzip = await bulk("{}", { "content-encoding": "gzip" });
    expect(notGzip.statusCode).toBe(400);
    expect((notGzip.json() as { error: string }).error).toMatch(/not valid gzip/);
  });

  it("builds semver ranges from OSV events", () => {
    const r = (events: Record<string, string>[], versions: string[] = []) =>
      vulnerableVersions("x", { affected: [{ packageName: "x", ranges: [{ type: "SEMVER", events }], versions }] });
    expect(r([{ introduced: "0" }, { fixed: "4.17.19" }])).toBe("<4.17.19");
    expect(r([{ introduced: "1.0.0" }, { fixed: "1.2.3" }])).toBe(">=1.0.0 <1.2.3");
    expect(r([{ introduced: "0" }])).toBe(">=0.0.0");
    expect(r([{ introduced: "1.0.0" }, { last_affected: "1.4.0" }])).toBe(">=1.0.0 <=1.4.0");
    expect(r([{ introduced: "1.0.0" }, { limit: "2.0.0" }])).toBe(">=1.0.0 <2.0.0");
    expect(r([{ introduced: "v1.0.0" }, { fixed: "not-a-version" }])).toBe("*");
    expect(vulnerableVersions("x", { affected: [{ packageName: "x", ranges: [{ type: "GIT", events: [{ introduced: "abc" }] }], versions: [] }] })).toBeNull();
  });

  it("answers 404 (npm's error shape) to the pre-npm-7 quick audit", async () => {
    const res = await app.inject({ method: "POST", url: "/npm/-/npm/v1/security/audits/quick", headers: { ...ta.auth("user") }, payload: {} });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: "quick audits are not supported: use npm 7 or later (bulk advisories)" });
  });
});

describe("paths", () => {
  it("parses packument, version and tarball paths, scoped in every form", () => {
    expect(parseRegistryPath("left-pad")).toEqual({ kind: "packument", name: "left-pad" });
    expect(parseRegistryPath("@s%2fn")).toEqual({ kind: "packument", name: "@s/n" });
    expect(parseRegistryPath("%40s%2Fn")).toEqual({ kind: "packument", name: "@s/n" });
    expect(parseRegistryPath("@s/n")).toEqual({ kind: "packument", name: "@s/n" });
    expect(parseRegistryPath("@s/n/1.0.0")).toEqual({ kind: "version", name: "@s/n", spec: "1.0.0" });
    expect(parseRegistryPath("@s/n/-/n-1.0.0-rc.1.tgz")).toEqual({ kind: "tarball", name: "@s/n", version: "1.0.0-rc.1" });
    expect(parseRegistryPath("@s%2fn/-/n-1.0.0.tgz")).toEqual({ kind: "tarball", name: "@s/n", version: "1.0.0" });
    expect(parseRegistryPath("a-b/-/a-b-2.0.0.tgz")).toEqual({ kind: "tarball", name: "a-b", version: "2.0.0" });
    expect(parseRegistryPath("a/-/b-1.0.0.tgz").kind).toBe("invalid");
    expect(parseRegistryPath("a/-/a-1.0.tgz").kind).toBe("invalid");
    expect(parseRegistryPath("%zz").kind).toBe("invalid");
    expect(parseRegistryPath("@s").kind).toBe("invalid");
    expect(parseRegistryPath("a/b/c").kind).toBe("invalid");
  });
});
