/** GET /api/packages/requests/:id/sbom: CycloneDX 1.5 JSON of a request's packages and their vetting outcome. */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { npmPurl, splitScope, type CycloneDxBom } from "../src/audit/sbom.ts";
import { lockV3, uploadRaw, type UploadResponse } from "./support/api-helpers.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;
let requestId: number;

const tarballBytes = (name: string) => Buffer.from(`tarball of ${name}`);
const sha512Hex = (name: string) => createHash("sha512").update(tarballBytes(name)).digest("hex");
const sha1Hex = (name: string) => createHash("sha1").update(tarballBytes(name)).digest("hex");
const integrityOf = (name: string) => `sha512-${createHash("sha512").update(tarballBytes(name)).digest("base64")}`;

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
  const lockfile = lockV3([
    { name: "@acme/widget", version: "1.2.3" },
    { name: "left-pad", version: "1.3.0" },
    { name: "@acme/gpl-thing", version: "2.0.0-beta.1" },
    { name: "pending-pkg", version: "0.1.0" },
  ]);
  const res = await uploadRaw(ta.app, ta.auth("user"), lockfile, { "x-file-name": "package-lock.json" });
  expect(res.statusCode, res.body).toBe(202);
  requestId = (res.json() as UploadResponse).request_id;

  const pkg = (name: string) => t.db.package.findFirstOrThrow({ where: { name } });
  const download = (name: string) => ({ storageKey: sha512Hex(name), size: 10, integrity: integrityOf(name), shasum: sha1Hex(name) });
  await t.db.package.update({
    where: { id: (await pkg("@acme/widget")).id },
    data: {
      status: "approved",
      results: {
        licence: { declared: "MIT", expression: "MIT", verdict: "allow", reason: "MIT is allowed" },
        download: download("@acme/widget"),
        approval: { by: "alice", at: "2026-01-01T00:00:00.000Z", comment: "looks fine", from: "pending_approval" },
      },
    },
  });
  await t.db.package.update({
    where: { id: (await pkg("left-pad")).id },
    data: {
      status: "approved",
      results: {
        licence: { declared: "(MIT OR Apache-2.0)", expression: "MIT OR Apache-2.0", verdict: "allow", reason: "allowed" },
        download: download("left-pad"),
        approval: { by: "policy", at: "2026-01-01T00:00:00.000Z" },
      },
    },
  });
  await t.db.package.update({
    where: { id: (await pkg("@acme/gpl-thing")).id },
    data: {
      status: "rejected",
      reasonCode: "licence_denied",
      reasonMessage: "licence GPL-3.0-only is denied by policy",
      results: { licence: { declared: "GPL-3.0-only", expression: "GPL-3.0-only", verdict: "deny", reason: "GPL-3.0-only is denied by policy" } },
    },
  });
});

afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

async function sbom(id: number, role: "user" | "approver" | "admin" = "user"): Promise<CycloneDxBom> {
  const res = await ta.app.inject({ method: "GET", url: `/api/packages/requests/${id}/sbom`, headers: ta.auth(role) });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^application\/vnd\.cyclonedx\+json/);
  return res.json() as CycloneDxBom;
}

const prop = (c: { properties?: { name: string; value: string }[] }, name: string) => c.properties?.find((p) => p.name === name)?.value;

describe("SBOM", () => {
  it("is a CycloneDX 1.5 document describing the request", async () => {
    const before = Date.now();
    const bom = await sbom(requestId);
    expect(bom).toMatchObject({ bomFormat: "CycloneDX", specVersion: "1.5", version: 1 });
    expect(bom.serialNumber).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Date.parse(bom.metadata.timestamp)).toBeGreaterThanOrEqual(before - 1000);
    expect(bom.metadata.tools.components).toEqual([{ type: "application", name: "secure-package-manager", version: expect.any(String) as string }]);
    const request = await t.db.request.findUniqueOrThrow({ where: { id: requestId } });
    expect(bom.metadata.component).toMatchObject({ type: "application", name: "package-lock.json", "bom-ref": `spm:request:${requestId}` });
    expect(prop(bom.metadata.component, "spm:lockfile_sha256")).toBe(request.lockfileSha256);
    expect(prop(bom.metadata.component, "spm:request_id")).toBe(String(requestId));
    expect(bom.components).toHaveLength(4);
    // bom-refs are unique; every component is a library with a purl
    expect(new Set(bom.components.map((c) => c["bom-ref"])).size).toBe(4);
    for (const c of bom.components) {
      expect(c.type).toBe("library");
      expect(c["bom-ref"]).toBe(c.purl);
    }
    // a fresh serial number each time
    expect((await sbom(requestId, "admin")).serialNumber).not.toBe(bom.serialNumber);
  });

  it("splits scopes into group and name and percent-encodes the scope's @ in the purl", async () => {
    const bom = await sbom(requestId);
    const widget = bom.components.find((c) => c.name === "widget")!;
    expect(widget).toMatchObject({ group: "@acme", name: "widget", version: "1.2.3", purl: "pkg:npm/%40acme/widget@1.2.3" });
    const leftPad = bom.components.find((c) => c.name === "left-pad")!;
    expect(leftPad.group).toBeUndefined();
    expect(leftPad.purl).toBe("pkg:npm/left-pad@1.3.0");
    expect(bom.components.find((c) => c.name === "gpl-thing")!.purl).toBe("pkg:npm/%40acme/gpl-thing@2.0.0-beta.1");
    expect(npmPurl("@types/node", "20.1.0+build.5")).toBe("pkg:npm/%40types/node@20.1.0%2Bbuild.5");
    expect(splitScope("@types/node")).toEqual({ group: "@types", name: "node" });
    expect(splitScope("lodash")).toEqual({ name: "lodash" });
  });

  it("states licences and the downloaded tarball's hashes (SHA-512 from the integrity, SHA-1 from the shasum)", async () => {
    const bom = await sbom(requestId);
    const widget = bom.components.find((c) => c.name === "widget")!;
    expect(widget.licenses).toEqual([{ expression: "MIT" }]);
    expect(widget.hashes).toEqual([
      { alg: "SHA-512", content: sha512Hex("@acme/widget") },
      { alg: "SHA-1", content: sha1Hex("@acme/widget") },
    ]);
    expect(widget.hashes![0]!.content).toMatch(/^[0-9a-f]{128}$/);
    const leftPad = bom.components.find((c) => c.name === "left-pad")!;
    expect(leftPad.licenses).toEqual([{ expression: "MIT OR Apache-2.0" }]);
    // nothing downloaded: no hashes are claimed (the lockfile's integrity is not a verified fact)
    const gpl = bom.components.find((c) => c.name === "gpl-thing")!;
    expect(gpl.hashes).toBeUndefined();
    expect(gpl.licenses).toEqual([{ expression: "GPL-3.0-only" }]);
    const pending = bom.components.find((c) => c.name === "pending-pkg")!;
    expect(pending.licenses).toBeUndefined();
    expect(pending.hashes).toBeUndefined();
  });

  it("carries the vetting outcome as spm:* properties", async () => {
    const bom = await sbom(requestId);
    const by = (name: string) => bom.components.find((c) => c.name === name)!;
    expect(prop(by("widget"), "spm:status")).toBe("approved");
    expect(prop(by("widget"), "spm:approved_by")).toBe("alice");
    expect(prop(by("left-pad"), "spm:approved_by")).toBe("policy");
    expect(prop(by("gpl-thing"), "spm:status")).toBe("rejected");
    expect(prop(by("gpl-thing"), "spm:reason_code")).toBe("licence_denied");
    expect(prop(by("gpl-thing"), "spm:reason")).toBe("licence GPL-3.0-only is denied by policy");
    expect(prop(by("gpl-thing"), "spm:approved_by")).toBeUndefined();
    expect(prop(by("pending-pkg"), "spm:status")).toBe("requested");
    expect(prop(by("pending-pkg"), "spm:reason_code")).toBeUndefined();
  });

  it("answers 404 for an unknown request and 401 without a token; any role may read it", async () => {
    const missing = await ta.app.inject({ method: "GET", url: "/api/packages/requests/999999/sbom", headers: ta.auth("user") });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: { code: "request_not_found", message: "no request 999999", hint: expect.any(String) as string } });
    const anonymous = await ta.app.inject({ method: "GET", url: `/api/packages/requests/${requestId}/sbom` });
    expect(anonymous.statusCode).toBe(401);
    expect((await sbom(requestId, "approver")).components).toHaveLength(4);
  });
});
