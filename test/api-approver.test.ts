import type { FastifyInstance } from "fastify";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PackageStatus } from "../src/queue/states.ts";
import { REGISTRY_CHANNEL } from "../src/queue/sql.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;
let app: FastifyInstance;
let listener: pg.Client;
const notifications: string[] = [];

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
  app = ta.app;
  listener = new pg.Client({ connectionString: t.url });
  await listener.connect();
  listener.on("notification", (msg) => {
    if (msg.channel === REGISTRY_CHANNEL) notifications.push(msg.payload ?? "");
  });
  await listener.query(`LISTEN ${REGISTRY_CHANNEL}`);
});
afterAll(async () => {
  await listener?.end();
  await app?.close();
  await t?.drop();
});

type Role = "user" | "approver" | "admin";
type Json = Record<string, unknown>;

function expectError(res: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(res.statusCode, JSON.stringify(res.json())).toBe(status);
  const body = res.json() as { error: { code: string; message: string; hint: string } };
  expect(body.error).toMatchObject({ code, message: expect.any(String), hint: expect.any(String) });
  return body.error;
}

async function newRequest(): Promise<number> {
  const r = await t.db.request.create({
    data: { uploadedByName: "user1", fileName: "package-lock.json", lockfileSha256: "x", lockfileVersion: 3, total: 0, newCount: 0, existingCount: 0 },
  });
  return r.id;
}

const licenceReview = {
  declared: "MPL-2.0",
  expression: "MPL-2.0",
  verdict: "review",
  unknown: false,
  chosen: ["MPL-2.0"],
  reason: "MPL-2.0 requires review by policy",
};
const installFinding = { rule: "install_script", severity: "high", file: "package.json", message: "postinstall runs node setup.js" };
const highAdvisory = {
  id: "GHSA-xxxx-yyyy-zzzz",
  aliases: ["CVE-2026-0001"],
  summary: "prototype pollution",
  severity: "high",
  malicious: false,
  fixedVersions: ["1.0.1"],
  url: "https://github.com/advisories/GHSA-xxxx-yyyy-zzzz",
};

let seq = 0;

/** A package in `status` with realistic results, linked to the given requests, with the events that led there. */
async function seedPackage(
  status: PackageStatus,
  opts: { requests?: number[]; name?: string; reasonCode?: string | null; reasonMessage?: string | null; results?: Json } = {},
): Promise<{ id: number; name: string }> {
  const name = opts.name ?? `pkg-${status}-${++seq}`;
  const reasons = ["licence needs review: MPL-2.0 requires review by policy", "install scripts", `vulnerability ${highAdvisory.id}`];
  const results: Json = opts.results ?? {
    licence: licenceReview,
    upstream: { tarball: `https://registry.npmjs.org/${name}/-/${name}-1.0.0.tgz`, integrity: "sha512-abc", shasum: "0123", publishedAt: "2026-01-02T03:04:05.000Z", deprecated: null },
    manifest: { name, version: "1.0.0", license: "MPL-2.0", dependencies: { dep: "^1.0.0" } },
    download: { storageKey: `sha512/ab/${name}`, size: 1234, integrity: "sha512-abc", shasum: "0123", verifiedAgainst: ["lockfile", "upstream"], weakIntegrity: false, reused: false },
    scan: { findings: [installFinding], advisories: [highAdvisory], verdict: "review", files: 3, unpackedBytes: 4567, installScripts: { postinstall: "node setup.js" } },
    review: status === "pending_approval" ? { reasons } : null,
  };
  const reasonCode = opts.reasonCode !== undefined ? opts.reasonCode : status === "pending_approval" ? "needs_review" : null;
  const reasonMessage = opts.reasonMessage !== undefined ? opts.reasonMessage : status === "pending_approval" ? reasons.join("; ") : null;
  const p = await t.db.package.create({
    data: { name, version: "1.0.0", status, results: results as object, reasonCode, reasonMessage },
  });
  for (const requestId of opts.requests ?? []) {
    await t.db.requestPackage.create({ data: { requestId, packageId: p.id, integrity: "sha512-abc", resolved: "https://registry.npmjs.org/x.tgz" } });
  }
  await t.db.packageEvent.create({ data: { packageId: p.id, fromStatus: null, toStatus: "requested", actor: "user1", reason: "uploaded" } });
  if (status !== "requested") {
    await t.db.packageEvent.create({ data: { packageId: p.id, fromStatus: "scanning", toStatus: status, actor: "worker-1", reason: `seeded ${status}` } });
  }
  return { id: p.id, name };
}

function post(path: string, role: Role | null, body: unknown) {
  return app.inject({ method: "POST", url: path, headers: role ? ta.auth(role) : {}, payload: body as Json });
}
const approve = (role: Role | null, body: unknown) => post("/api/approver/packages/batch-approve", role, body);
const reject = (role: Role | null, body: unknown) => post("/api/approver/packages/batch-reject", role, body);
const get = (url: string, role: Role | null = "approver") => app.inject({ method: "GET", url, headers: role ? ta.auth(role) : {} });

async function row(id: number) {
  return t.db.package.findUniqueOrThrow({ where: { id } });
}
async function lastEvent(id: number) {
  return t.db.packageEvent.findFirstOrThrow({ where: { packageId: id }, orderBy: { id: "desc" } });
}

async function waitFor(predicate: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!predicate() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
}

describe("GET /api/approver/packages/validated", () => {
  it("lists packages awaiting approval with reasons, licence, findings, advisories, requests and when they started waiting", async () => {
    const r1 = await newRequest();
    const r2 = await newRequest();
    const a = await seedPackage("pending_approval", { requests: [r1, r2] });
    const b = await seedPackage("pending_approval", { requests: [r2] });
    await seedPackage("approved", { requests: [r1] });
    await seedPackage("scanning", { requests: [r1] });

    const res = await get("/api/approver/packages/validated");
    expect(res.statusCode).toBe(200);
    const body = res.json() as { items: Json[]; total: number; page: number; per_page: number };
    const ids = body.items.map((i) => i.id);
    expect(ids).toContain(a.id);
    expect(ids).toContain(b.id);
    expect(body.items.every((i) => typeof i.id === "number")).toBe(true);
    const item = body.items.find((i) => i.id === a.id)!;
    expect(item).toMatchObject({
      name: a.name,
      version: "1.0.0",
      review_reasons: ["licence needs review: MPL-2.0 requires review by policy", "install scripts", `vulnerability ${highAdvisory.id}`],
      licence: { expression: "MPL-2.0", verdict: "review", reason: "MPL-2.0 requires review by policy" },
      findings: [installFinding],
      advisories: [highAdvisory],
      published_at: "2026-01-02T03:04:05.000Z",
      request_ids: [r1, r2],
    });
    const pendingEvent = await t.db.packageEvent.findFirstOrThrow({ where: { packageId: a.id, toStatus: "pending_approval" } });
    expect(item.pending_since).toBe(pendingEvent.at.toISOString());

    // only pending_approval rows
    const statuses = await t.db.package.findMany({ where: { id: { in: ids as number[] } }, select: { status: true } });
    expect(statuses.every((s) => s.status === "pending_approval")).toBe(true);

    // filter by request, and paginate
    const only = (await get(`/api/approver/packages/validated?request_id=${r1}`)).json() as { items: Json[]; total: number };
    expect(only.items.map((i) => i.id)).toEqual([a.id]);
    expect(only.total).toBe(1);
    const page1 = (await get(`/api/approver/packages/validated?request_id=${r2}&per_page=1&page=1`)).json() as { items: Json[]; total: number };
    const page2 = (await get(`/api/approver/packages/validated?request_id=${r2}&per_page=1&page=2`)).json() as { items: Json[]; total: number };
    expect(page1.total).toBe(2);
    expect([...page1.items, ...page2.items].map((i) => i.id)).toEqual([a.id, b.id]);
  });

  it("answers 404 for an unknown request, 403 for a user, 401 without a token; admins may read it", async () => {
    expectError(await get("/api/approver/packages/validated?request_id=999999"), 404, "request_not_found");
    expectError(await get("/api/approver/packages/validated", "user"), 403, "forbidden");
    expectError(await get("/api/approver/packages/validated", null), 401, "unauthorized");
    expect((await get("/api/approver/packages/validated", "admin")).statusCode).toBe(200);
  });
});

describe("POST /api/approver/packages/batch-approve", () => {
  it("approves pending packages by id, records who and why, and skips rows in other states", async () => {
    const p1 = await seedPackage("pending_approval");
    const p2 = await seedPackage("pending_approval");
    const done = await seedPackage("approved");
    const rej = await seedPackage("rejected", { reasonCode: "licence_denied", reasonMessage: "licence GPL-3.0-only is denied by policy" });
    const busy = await seedPackage("downloading");
    const failed = await seedPackage("failed");
    notifications.length = 0;

    const res = await approve("approver", {
      package_ids: [p1.id, p2.id, p1.id, done.id, rej.id, busy.id, failed.id, 999999],
      comment: "  reviewed the install script  ",
    });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as { approved: number; skipped: { id: number; status: string | null; reason: string }[] };
    expect(body.approved).toBe(2);
    expect(body.skipped.map((s) => [s.id, s.status])).toEqual([
      [done.id, "approved"],
      [rej.id, "rejected"],
      [busy.id, "downloading"],
      [failed.id, "failed"],
      [999999, null],
    ]);
    expect(body.skipped.find((s) => s.id === rej.id)!.reason).toMatch(/licence_denied.*admin.*override/);

    for (const p of [p1, p2]) {
      const r = await row(p.id);
      expect(r.status).toBe("approved");
      expect(r.reasonCode).toBeNull();
      expect(r.reasonMessage).toBeNull();
      const approval = (r.results as Json).approval as Json;
      expect(approval).toMatchObject({ by: "user:approver1", comment: "reviewed the install script", from: "pending_approval", overrode: null });
      expect(Date.parse(approval.at as string)).toBeGreaterThan(Date.now() - 60_000);
      const ev = await lastEvent(p.id);
      expect(ev).toMatchObject({
        fromStatus: "pending_approval",
        toStatus: "approved",
        actor: "user:approver1",
        reason: "approved by reviewer: reviewed the install script",
        details: { comment: "reviewed the install script" },
      });
    }
    // untouched rows
    expect((await row(rej.id)).status).toBe("rejected");
    expect((await row(busy.id)).status).toBe("downloading");
    expect(await t.db.packageEvent.count({ where: { packageId: { in: [done.id, rej.id, busy.id, failed.id] }, actor: "user:approver1" } })).toBe(0);

    // registry caches hear about every approved name
    await waitFor(() => notifications.includes(p1.name) && notifications.includes(p2.name));
    expect(notifications).toContain(p1.name);
    expect(notifications).toContain(p2.name);
    expect(notifications).not.toContain(rej.name);
  });

  it("approves every pending package of a request", async () => {
    const r = await newRequest();
    const other = await newRequest();
    const a = await seedPackage("pending_approval", { requests: [r] });
    const b = await seedPackage("pending_approval", { requests: [r, other] });
    const c = await seedPackage("rejected", { requests: [r], reasonCode: "malicious", reasonMessage: "reported malicious" });
    const outside = await seedPackage("pending_approval", { requests: [other] });
    notifications.length = 0;

    const res = await approve("admin", { request_id: r });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ approved: 2, skipped: [{ id: c.id, status: "rejected" }] });
    expect((await row(a.id)).status).toBe("approved");
    expect((await row(b.id)).status).toBe("approved");
    expect((await row(c.id)).status).toBe("rejected");
    expect((await row(outside.id)).status).toBe("pending_approval");
    const ev = await lastEvent(a.id);
    expect(ev).toMatchObject({ actor: "user:admin1", reason: "approved by reviewer", details: { comment: null } });
    await waitFor(() => notifications.includes(b.name));
    expect(notifications).toEqual(expect.arrayContaining([a.name, b.name]));
  });

  it("validates the body: exactly one of package_ids / request_id, comment length, unknown request", async () => {
    const p = await seedPackage("pending_approval");
    expectError(await approve("approver", {}), 400, "validation_failed");
    expectError(await approve("approver", { package_ids: [p.id], request_id: 1 }), 400, "validation_failed");
    expectError(await approve("approver", { package_ids: [] }), 400, "validation_failed");
    expectError(await approve("approver", { package_ids: ["x"] }), 400, "validation_failed");
    expectError(await approve("approver", { package_ids: [p.id], comment: "x".repeat(2001) }), 400, "validation_failed");
    expectError(await approve("approver", { package_ids: [p.id], extra: true }), 400, "validation_failed");
    expectError(await approve("approver", { request_id: 999999 }), 404, "request_not_found");
    expect((await approve("approver", { package_ids: [p.id], comment: "x".repeat(2000) })).statusCode).toBe(200);
  });

  it("refuses users (403) and anonymous callers (401), touching nothing", async () => {
    const p = await seedPackage("pending_approval");
    expectError(await approve("user", { package_ids: [p.id] }), 403, "forbidden");
    expectError(await reject("user", { package_ids: [p.id] }), 403, "forbidden");
    expectError(await approve(null, { package_ids: [p.id] }), 401, "unauthorized");
    expect((await row(p.id)).status).toBe("pending_approval");
  });

  it("does not let an approver override a rejection", async () => {
    const rej = await seedPackage("rejected", { reasonCode: "licence_denied", reasonMessage: "licence GPL-3.0-only is denied by policy" });
    expectError(await approve("approver", { package_ids: [rej.id], override: true, comment: "we need it" }), 403, "forbidden");
    const plain = await approve("approver", { package_ids: [rej.id], comment: "we need it" });
    expect(plain.json()).toMatchObject({ approved: 0, skipped: [{ id: rej.id, status: "rejected" }] });
    expect((await row(rej.id)).status).toBe("rejected");
  });

  it("lets an admin override a policy rejection only explicitly and with a comment", async () => {
    const rej = await seedPackage("rejected", { reasonCode: "critical_vulnerability", reasonMessage: "GHSA-1 (critical)" });
    const pending = await seedPackage("pending_approval");
    // without override: skipped, even for an admin
    expect((await approve("admin", { package_ids: [rej.id], comment: "accepted risk" })).json()).toMatchObject({
      approved: 0,
      skipped: [{ id: rej.id, status: "rejected" }],
    });
    // override without a (non-blank) comment
    expectError(await approve("admin", { package_ids: [rej.id], override: true }), 400, "comment_required");
    expectError(await approve("admin", { package_ids: [rej.id], override: true, comment: "   " }), 400, "comment_required");
    expect((await row(rej.id)).status).toBe("rejected");

    notifications.length = 0;
    const res = await approve("admin", { package_ids: [rej.id, pending.id], override: true, comment: "not reachable in our usage; ticket SEC-42" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ approved: 2, resumed: 0, skipped: [] });
    const r = await row(rej.id);
    expect(r.status).toBe("approved");
    expect(r.reasonCode).toBeNull();
    expect((r.results as Json).approval).toMatchObject({
      by: "user:admin1",
      comment: "not reachable in our usage; ticket SEC-42",
      from: "rejected",
      overrode: { code: "critical_vulnerability", message: "GHSA-1 (critical)" },
    });
    expect(await lastEvent(rej.id)).toMatchObject({
      fromStatus: "rejected",
      toStatus: "approved",
      actor: "user:admin1",
      reason: "rejection overridden (critical_vulnerability): not reachable in our usage; ticket SEC-42",
      details: { comment: "not reachable in our usage; ticket SEC-42", overrode: "critical_vulnerability" },
    });
    await waitFor(() => notifications.includes(rej.name));
    expect(notifications).toContain(rej.name);
  });
});

describe("POST /api/approver/packages/batch-reject", () => {
  it("rejects pending packages with the reviewer's reason and comment", async () => {
    const p = await seedPackage("pending_approval");
    const busy = await seedPackage("scanning");
    const already = await seedPackage("rejected", { reasonCode: "malicious", reasonMessage: "malware" });
    notifications.length = 0;
    const res = await reject("approver", { package_ids: [p.id, busy.id, already.id], comment: "unmaintained fork" });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as { rejected: number; skipped: { id: number; status: string; reason: string }[] };
    expect(body.rejected).toBe(1);
    expect(body.skipped).toEqual([
      { id: busy.id, status: "scanning", reason: expect.any(String) },
      { id: already.id, status: "rejected", reason: "already rejected" },
    ]);
    const r = await row(p.id);
    expect(r).toMatchObject({ status: "rejected", reasonCode: "rejected_by_reviewer", reasonMessage: "unmaintained fork" });
    expect((r.results as Json).rejection).toMatchObject({ by: "user:approver1", comment: "unmaintained fork", from: "pending_approval" });
    expect(await lastEvent(p.id)).toMatchObject({
      fromStatus: "pending_approval",
      toStatus: "rejected",
      actor: "user:approver1",
      reason: "rejected by reviewer: unmaintained fork",
      details: { comment: "unmaintained fork" },
    });
    expect((await row(already.id)).reasonCode).toBe("malicious");
    // the registry's refusal of this version now gives the reviewer's reason: its caches hear of it
    await waitFor(() => notifications.includes(p.name));
    expect(notifications).not.toContain(already.name);
  });

  it("revokes an approved package (and tells the registry), without a comment too", async () => {
    const p = await seedPackage("pending_approval");
    expect((await approve("approver", { package_ids: [p.id], comment: "ok" })).json()).toMatchObject({ approved: 1 });
    notifications.length = 0;
    const res = await reject("approver", { package_ids: [p.id] });
    expect(res.json()).toEqual({ rejected: 1, skipped: [] });
    const r = await row(p.id);
    expect(r).toMatchObject({ status: "rejected", reasonCode: "rejected_by_reviewer", reasonMessage: "rejected by approver1" });
    const results = r.results as Json;
    expect(results.approval).toBeUndefined();
    expect(results.rejection).toMatchObject({ from: "approved", comment: null, revokedApproval: { by: "user:approver1", comment: "ok" } });
    expect(await lastEvent(p.id)).toMatchObject({ fromStatus: "approved", toStatus: "rejected", actor: "user:approver1", reason: "approval revoked" });
    await waitFor(() => notifications.includes(p.name));
    expect(notifications).toContain(p.name);
  });

  it("rejects by request and refuses `override`", async () => {
    const r = await newRequest();
    const a = await seedPackage("pending_approval", { requests: [r] });
    const b = await seedPackage("approved", { requests: [r] });
    expectError(await reject("approver", { request_id: r, override: true }), 400, "validation_failed");
    expect((await reject("approver", { request_id: r, comment: "project cancelled" })).json()).toEqual({ rejected: 2, skipped: [] });
    expect((await row(a.id)).status).toBe("rejected");
    expect((await row(b.id)).status).toBe("rejected");
    expectError(await reject("approver", { request_id: 999999 }), 404, "request_not_found");
  });
});

describe("GET /api/packages/:id", () => {
  it("shows everything known about a package, with its full history in order", async () => {
    const r = await newRequest();
    const p = await seedPackage("pending_approval", { requests: [r] });
    await approve("approver", { package_ids: [p.id], comment: "fine" });
    await reject("admin", { package_ids: [p.id], comment: "changed our mind" });

    const res = await get(`/api/packages/${p.id}`, "user");
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as Json & { events: Json[]; requests: Json[] };
    expect(body).toMatchObject({
      id: p.id,
      name: p.name,
      version: "1.0.0",
      status: "rejected",
      attempts: 0,
      last_error: null,
      reason: { code: "rejected_by_reviewer", message: "changed our mind" },
      licence: licenceReview,
      download: { storageKey: `sha512/ab/${p.name}`, size: 1234, integrity: "sha512-abc", shasum: "0123" },
      upstream: { publishedAt: "2026-01-02T03:04:05.000Z" },
      scan: { verdict: "review", files: 3, unpacked_bytes: 4567, install_scripts: { postinstall: "node setup.js" } },
      findings: [installFinding],
      advisories: [highAdvisory],
      review_reasons: expect.arrayContaining(["install scripts"]),
      approval: null,
      rejection: { by: "user:admin1", comment: "changed our mind", from: "approved", revokedApproval: { by: "user:approver1", comment: "fine" } },
      manifest: { name: p.name, version: "1.0.0", license: "MPL-2.0", dependencies: { dep: "^1.0.0" } },
      requests: [{ id: r, uploaded_by: "user1", file_name: "package-lock.json", integrity: "sha512-abc", resolved: "https://registry.npmjs.org/x.tgz" }],
    });
    expect(body.events.map((e) => [e.from, e.to, e.actor])).toEqual([
      [null, "requested", "user1"],
      ["scanning", "pending_approval", "worker-1"],
      ["pending_approval", "approved", "user:approver1"],
      ["approved", "rejected", "user:admin1"],
    ]);
    expect(body.events[2]).toMatchObject({ reason: "approved by reviewer: fine", details: { comment: "fine" }, at: expect.any(String) });
    expect(body.events[3]).toMatchObject({ reason: "approval revoked: changed our mind", details: { comment: "changed our mind" } });
    const ats = body.events.map((e) => Date.parse(e.at as string));
    expect([...ats].sort((x, y) => x - y)).toEqual(ats);
  });

  it("answers 404 package_not_found for an unknown id, and does not shadow the other /api/packages routes", async () => {
    expectError(await get("/api/packages/999999", "user"), 404, "package_not_found");
    expectError(await get("/api/packages/123", null), 401, "unauthorized");
    expectError(await get("/api/packages/not-a-number", "user"), 404, "not_found");
    expect((await get("/api/packages/requests", "user")).statusCode).toBe(200);
    expect((await get("/api/packages/processing/status", "user")).statusCode).toBe(200);
  });
});
