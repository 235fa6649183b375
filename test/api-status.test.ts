import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockV3, pkgs, uploadRaw, type UploadResponse } from "./support/api-helpers.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;

interface RequestItem {
  id: number;
  uploaded_by: string;
  file_name: string | null;
  lockfile_sha256: string;
  lockfile_version: number;
  packages: { total: number; new: number; existing: number };
  skipped_count: number;
  created_at: string;
  done: boolean;
  percent_complete: number;
}

interface PackageView {
  id: number;
  name: string;
  version: string;
  status: string;
  attempts: number;
  last_error: { code: string; message: string | null } | null;
  reason: { code: string; message: string | null } | null;
  updated_at: string;
}

interface ProcessingStatus {
  request_id: number;
  counts: Record<string, number>;
  total: number;
  settled: number;
  percent_complete: number;
  done: boolean;
  packages: PackageView[];
}

const ALL = ["requested", "checking_licence", "licence_checked", "downloading", "downloaded", "scanning", "pending_approval", "approved", "rejected", "failed"];

/** Counts with every status present (zero when not given). */
function counts(nonZero: Record<string, number>): Record<string, number> {
  return Object.fromEntries(ALL.map((s) => [s, nonZero[s] ?? 0]));
}

async function get<T>(url: string, role: "user" | "approver" | "admin" = "user"): Promise<T> {
  const res = await ta.app.inject({ method: "GET", url, headers: ta.auth(role) });
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.json() as T;
}

async function upload(text: string, headers: Record<string, string> = {}, role: "user" | "approver" | "admin" = "user"): Promise<UploadResponse> {
  const res = await uploadRaw(ta.app, ta.auth(role), text, headers);
  expect(res.statusCode, res.body).toBe(202);
  return res.json() as UploadResponse;
}

/** Put the named packages in a status (and optional columns) directly. */
async function setStatus(names: string[], status: string, extra: { errorCode?: string; errorMessage?: string; reasonCode?: string; reasonMessage?: string; attempts?: number } = {}) {
  await t.db.$executeRaw`
    UPDATE package SET status = ${status}::package_status,
      last_error_code = ${extra.errorCode ?? null}, last_error_message = ${extra.errorMessage ?? null},
      reason_code = ${extra.reasonCode ?? null}, reason_message = ${extra.reasonMessage ?? null},
      attempts = ${extra.attempts ?? 0}, updated_at = now()
    WHERE name = ANY(${names}::text[])`;
}

// Three requests: A (10 packages a-0..a-9), B (a-0..a-4 shared with A, plus b-0..b-4), C (one package, later made approved).
let reqA: UploadResponse;
let reqB: UploadResponse;
let reqC: UploadResponse;

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
  reqA = await upload(lockV3(pkgs("a", 10)), { "x-file-name": "a-lock.json" });
  reqB = await upload(
    lockV3([...pkgs("a", 5), ...pkgs("b", 5)], {
      "node_modules/b-git": { version: "1.0.0", resolved: "git+https://github.com/u/b-git.git" },
      "node_modules/b-file": { version: "1.0.0", resolved: "file:../b-file" },
    }),
    {},
    "approver",
  );
  reqC = await upload(lockV3([{ name: "c-only", version: "2.0.0" }]), {}, "admin");
});
afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

describe("GET /api/packages/requests", () => {
  it("lists requests newest first with total and summary fields", async () => {
    const body = await get<{ items: RequestItem[]; page: number; per_page: number; total: number }>("/api/packages/requests");
    expect(body).toMatchObject({ page: 1, per_page: 20, total: 3 });
    expect(body.items.map((i) => i.id)).toEqual([reqC.request_id, reqB.request_id, reqA.request_id]);
    const [c, b, a] = body.items as [RequestItem, RequestItem, RequestItem];
    expect(a).toMatchObject({
      uploaded_by: "user1",
      file_name: "a-lock.json",
      lockfile_version: 3,
      packages: { total: 10, new: 10, existing: 0 },
      skipped_count: 0,
      done: false,
      percent_complete: 0,
    });
    expect(a.lockfile_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Number.isNaN(Date.parse(a.created_at))).toBe(false);
    expect(b).toMatchObject({ uploaded_by: "approver1", file_name: null, packages: { total: 10, new: 5, existing: 5 }, skipped_count: 2 });
    expect(c).toMatchObject({ uploaded_by: "admin1", packages: { total: 1, new: 1, existing: 0 } });
  });

  it("paginates with page and per_page", async () => {
    const p1 = await get<{ items: RequestItem[]; page: number; per_page: number; total: number }>("/api/packages/requests?page=1&per_page=2");
    expect(p1).toMatchObject({ page: 1, per_page: 2, total: 3 });
    expect(p1.items.map((i) => i.id)).toEqual([reqC.request_id, reqB.request_id]);
    const p2 = await get<{ items: RequestItem[]; page: number; total: number }>("/api/packages/requests?page=2&per_page=2");
    expect(p2).toMatchObject({ page: 2, total: 3 });
    expect(p2.items.map((i) => i.id)).toEqual([reqA.request_id]);
    const p3 = await get<{ items: RequestItem[]; total: number }>("/api/packages/requests?page=3&per_page=2");
    expect(p3.items).toEqual([]);
    expect(p3.total).toBe(3);
  });

  it.each(["page=0", "per_page=0", "per_page=201", "page=abc", "per_page=-1", "sort=id"])("refuses ?%s with 400", async (query) => {
    const res = await ta.app.inject({ method: "GET", url: `/api/packages/requests?${query}`, headers: ta.auth("user") });
    expect(res.statusCode).toBe(400);
    expect((res.json() as { error: { code: string } }).error.code).toBe("validation_failed");
  });
});

describe("GET /api/packages/requests/:id", () => {
  it("shows one request with its counts per status and skipped entries", async () => {
    const body = await get<RequestItem & { counts: Record<string, number>; skipped: { path: string; reason: string }[] }>(
      `/api/packages/requests/${reqB.request_id}`,
    );
    expect(body).toMatchObject({
      id: reqB.request_id,
      uploaded_by: "approver1",
      packages: { total: 10, new: 5, existing: 5 },
      skipped_count: 2,
      done: false,
      percent_complete: 0,
    });
    expect(body.counts).toEqual(counts({ requested: 10 }));
    expect(body.skipped.map((s) => s.path).sort()).toEqual(["node_modules/b-file", "node_modules/b-git"]);
    for (const s of body.skipped) expect(s.reason).toEqual(expect.any(String));
  });

  it("answers 404 request_not_found for an unknown id", async () => {
    const res = await ta.app.inject({ method: "GET", url: "/api/packages/requests/999999", headers: ta.auth("user") });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: "request_not_found", message: expect.stringContaining("999999"), hint: expect.any(String) } });
  });

  it.each(["abc", "0", "-1", "1.5", "99999999999"])("answers 400 for id %s", async (id) => {
    for (const url of [`/api/packages/requests/${id}`, `/api/packages/requests/${id}/processing-status`]) {
      const res = await ta.app.inject({ method: "GET", url, headers: ta.auth("user") });
      expect(res.statusCode, url).toBe(400);
      expect((res.json() as { error: { code: string } }).error.code).toBe("validation_failed");
    }
  });
});

describe("GET /api/packages/requests/:id/processing-status", () => {
  beforeAll(async () => {
    // A: a-0..a-2 approved, a-3 rejected (reason), a-4 failed (last error), a-5 pending_approval, a-6 downloading, rest requested.
    await setStatus(["a-0", "a-1", "a-2"], "approved");
    await setStatus(["a-3"], "rejected", { reasonCode: "licence_denied", reasonMessage: "GPL-3.0 is denied" });
    await setStatus(["a-4"], "failed", { errorCode: "upstream_unavailable", errorMessage: "registry answered 503", attempts: 5 });
    await setStatus(["a-5"], "pending_approval");
    await setStatus(["a-6"], "downloading", { attempts: 1 });
    await setStatus(["c-only"], "approved");
  });

  it("gives counts, percent complete, done, and every package with its status, attempts, error and reason", async () => {
    const body = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status`);
    expect(body.request_id).toBe(reqA.request_id);
    expect(body.counts).toEqual(counts({ approved: 3, rejected: 1, failed: 1, pending_approval: 1, downloading: 1, requested: 3 }));
    expect(body).toMatchObject({ total: 10, settled: 6, percent_complete: 60, done: false });
    expect(body.packages.map((p) => p.name)).toEqual(pkgs("a", 10).map((p) => p.name).sort());
    const byName = new Map(body.packages.map((p) => [p.name, p]));
    expect(byName.get("a-0")).toMatchObject({ version: "1.0.0", status: "approved", attempts: 0, last_error: null, reason: null });
    expect(byName.get("a-3")).toMatchObject({ status: "rejected", reason: { code: "licence_denied", message: "GPL-3.0 is denied" }, last_error: null });
    expect(byName.get("a-4")).toMatchObject({ status: "failed", attempts: 5, last_error: { code: "upstream_unavailable", message: "registry answered 503" } });
    expect(byName.get("a-6")).toMatchObject({ status: "downloading", attempts: 1 });
    for (const p of body.packages) {
      expect(p.id).toEqual(expect.any(Number));
      expect(Number.isNaN(Date.parse(p.updated_at))).toBe(false);
    }
  });

  it("shares package state between requests (B sees a-0..a-4 as A left them)", async () => {
    const body = await get<ProcessingStatus>(`/api/packages/requests/${reqB.request_id}/processing-status`);
    expect(body.counts).toEqual(counts({ approved: 3, rejected: 1, failed: 1, requested: 5 }));
    expect(body).toMatchObject({ total: 10, settled: 5, percent_complete: 50, done: false });
  });

  it("is done at 100 % when every package is settled", async () => {
    const body = await get<ProcessingStatus>(`/api/packages/requests/${reqC.request_id}/processing-status`);
    expect(body).toMatchObject({ total: 1, settled: 1, percent_complete: 100, done: true, counts: counts({ approved: 1 }) });
    const detail = await get<RequestItem>(`/api/packages/requests/${reqC.request_id}`);
    expect(detail).toMatchObject({ done: true, percent_complete: 100 });
    const list = await get<{ items: RequestItem[] }>("/api/packages/requests");
    const byId = new Map(list.items.map((i) => [i.id, i]));
    expect(byId.get(reqC.request_id)).toMatchObject({ done: true, percent_complete: 100 });
    expect(byId.get(reqA.request_id)).toMatchObject({ done: false, percent_complete: 60 });
    expect(byId.get(reqB.request_id)).toMatchObject({ done: false, percent_complete: 50 });
  });

  it("rounds percent_complete down to one decimal", async () => {
    // 1 of 3 settled → 33.3
    const r = await upload(lockV3(pkgs("third", 3)));
    await setStatus(["third-0"], "failed", { errorCode: "tarball_corrupt" });
    const body = await get<ProcessingStatus>(`/api/packages/requests/${r.request_id}/processing-status`);
    expect(body.percent_complete).toBe(33.3);
    await setStatus(["third-1"], "approved");
    expect((await get<ProcessingStatus>(`/api/packages/requests/${r.request_id}/processing-status`)).percent_complete).toBe(66.6);
  });

  it("filters by ?status=", async () => {
    const failed = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?status=failed`);
    expect(failed.packages.map((p) => p.name)).toEqual(["a-4"]);
    // counts stay those of the whole request
    expect(failed.counts.requested).toBe(3);
    const approved = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?status=approved`);
    expect(approved.packages.map((p) => p.name)).toEqual(["a-0", "a-1", "a-2"]);
    const none = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?status=scanning`);
    expect(none.packages).toEqual([]);
  });

  it("pages with limit and offset (ordered by name, version)", async () => {
    const all = (await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status`)).packages.map((p) => p.name);
    const first = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?limit=4`);
    expect(first.packages.map((p) => p.name)).toEqual(all.slice(0, 4));
    const second = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?limit=4&offset=4`);
    expect(second.packages.map((p) => p.name)).toEqual(all.slice(4, 8));
    const last = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?limit=4&offset=8`);
    expect(last.packages.map((p) => p.name)).toEqual(all.slice(8));
    const past = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?offset=100`);
    expect(past.packages).toEqual([]);
    const filtered = await get<ProcessingStatus>(`/api/packages/requests/${reqA.request_id}/processing-status?status=approved&limit=1&offset=1`);
    expect(filtered.packages.map((p) => p.name)).toEqual(["a-1"]);
  });

  it.each(["status=bogus", "limit=0", "limit=10001", "offset=-1", "limit=x", "extra=1"])("refuses ?%s with 400", async (query) => {
    const res = await ta.app.inject({
      method: "GET",
      url: `/api/packages/requests/${reqA.request_id}/processing-status?${query}`,
      headers: ta.auth("user"),
    });
    expect(res.statusCode).toBe(400);
    expect((res.json() as { error: { code: string } }).error.code).toBe("validation_failed");
  });

  it("answers 404 request_not_found for an unknown id", async () => {
    const res = await ta.app.inject({ method: "GET", url: "/api/packages/requests/424242/processing-status", headers: ta.auth("user") });
    expect(res.statusCode).toBe(404);
    expect((res.json() as { error: { code: string } }).error.code).toBe("request_not_found");
  });
});

interface Overview {
  counts: Record<string, number>;
  total: number;
  stages: { stage: string; queued_status: string; queued: number; ready: number; in_progress: number; oldest_queued_seconds: number | null }[];
  stuck: number;
  stuck_after_minutes: number;
  workers: { id: string; hostname: string; pid: number; started_at: string; last_seen_at: string; in_flight: number | null; circuit: { state?: string } | null }[];
  upstream_circuit: string;
  recent_transitions: { package_id: number; package: string; from: string | null; to: string; actor: string; reason: string | null; at: string }[];
}

describe("GET /api/packages/processing/status", () => {
  let ids: Map<string, number>;
  beforeAll(async () => {
    ids = new Map((await t.db.package.findMany({ select: { id: true, name: true } })).map((p) => [p.name, p.id]));
  });

  it("counts every package by status and shows recent transitions, newest first", async () => {
    const body = await get<Overview>("/api/packages/processing/status");
    const fromDb = await t.db.package.groupBy({ by: ["status"], _count: { _all: true } });
    const expected = counts(Object.fromEntries(fromDb.map((g) => [g.status, g._count._all])));
    expect(body.counts).toEqual(expected);
    expect(body.total).toBe(await t.db.package.count());
    expect(body.stuck_after_minutes).toBe(30);
    expect(body.recent_transitions.length).toBeGreaterThan(0);
    expect(body.recent_transitions.length).toBeLessThanOrEqual(20);
    // the newest events are the creation events of the last upload (third-0..2)
    const newest = body.recent_transitions.slice(0, 3);
    expect(newest.map((e) => e.package).sort()).toEqual(["third-0@1.0.0", "third-1@1.0.0", "third-2@1.0.0"]);
    for (const e of newest) {
      expect(e).toMatchObject({ package_id: ids.get(e.package.split("@")[0]!), from: null, to: "requested", actor: "user1", reason: "uploaded" });
      expect(Number.isNaN(Date.parse(e.at))).toBe(false);
    }
  });

  it("shows each stage's queue: queued, ready, in progress and the oldest waiting age", async () => {
    // Start from a known state: everything approved, then place a few rows.
    await t.db.$executeRaw`UPDATE package SET status = 'approved', next_attempt_at = now(), heartbeat_at = NULL`;
    await t.db.$executeRaw`UPDATE package SET status = 'requested', next_attempt_at = now() - interval '600 seconds' WHERE name = 'a-0'`;
    await t.db.$executeRaw`UPDATE package SET status = 'requested', next_attempt_at = now() - interval '5 seconds' WHERE name = 'a-1'`;
    // waiting for a retry backoff: queued but not ready
    await t.db.$executeRaw`UPDATE package SET status = 'requested', next_attempt_at = now() + interval '1 hour' WHERE name = 'a-2'`;
    await t.db.$executeRaw`UPDATE package SET status = 'licence_checked', next_attempt_at = now() - interval '30 seconds' WHERE name = 'a-3'`;
    await t.db.$executeRaw`UPDATE package SET status = 'downloading', heartbeat_at = now() WHERE name IN ('a-4', 'a-5')`;
    await t.db.$executeRaw`UPDATE package SET status = 'scanning', heartbeat_at = now() WHERE name = 'a-6'`;

    const body = await get<Overview>("/api/packages/processing/status");
    expect(body.stages.map((s) => [s.stage, s.queued_status])).toEqual([
      ["licence", "requested"],
      ["download", "licence_checked"],
      ["scan", "downloaded"],
    ]);
    const [licence, download, scan] = body.stages as [Overview["stages"][0], Overview["stages"][0], Overview["stages"][0]];
    expect(licence).toMatchObject({ queued: 3, ready: 2, in_progress: 0 });
    expect(licence.oldest_queued_seconds).toBeGreaterThanOrEqual(600);
    expect(licence.oldest_queued_seconds).toBeLessThan(700);
    expect(download).toMatchObject({ queued: 1, ready: 1, in_progress: 2 });
    expect(download.oldest_queued_seconds).toBeGreaterThanOrEqual(30);
    expect(download.oldest_queued_seconds).toBeLessThan(130);
    expect(scan).toMatchObject({ queued: 0, ready: 0, in_progress: 1, oldest_queued_seconds: null });
    expect(body.stuck).toBe(0);
  });

  it("counts rows whose heartbeat is older than STUCK_AFTER_MINUTES as stuck", async () => {
    // as a claim leaves them: next_attempt_at is the claim time, the heartbeat no older
    await t.db.$executeRaw`UPDATE package SET status = 'checking_licence', heartbeat_at = now() - interval '1 hour', next_attempt_at = now() - interval '1 hour', lease_owner = 'w-dead' WHERE name = 'b-0'`;
    await t.db.$executeRaw`UPDATE package SET status = 'scanning', heartbeat_at = now() - interval '31 minutes', next_attempt_at = now() - interval '2 hours' WHERE name = 'b-1'`;
    // recent heartbeat: in progress, not stuck, however long ago it was claimed
    await t.db.$executeRaw`UPDATE package SET status = 'checking_licence', heartbeat_at = now() - interval '1 minute', next_attempt_at = now() - interval '3 hours' WHERE name = 'b-2'`;
    // an old heartbeat on a row that is not in progress does not count
    await t.db.$executeRaw`UPDATE package SET status = 'approved', heartbeat_at = now() - interval '2 hours' WHERE name = 'b-3'`;
    const body = await get<Overview>("/api/packages/processing/status");
    expect(body.stuck).toBe(2);
    expect(body.stages[0]).toMatchObject({ stage: "licence", in_progress: 2 });

    // a shorter threshold counts more
    const strict = await buildTestApp(t.db, { STUCK_AFTER_MINUTES: "0.5" });
    try {
      const res = await strict.app.inject({ method: "GET", url: "/api/packages/processing/status", headers: strict.auth("user") });
      const view = res.json() as Overview;
      expect(view.stuck_after_minutes).toBe(0.5);
      expect(view.stuck).toBe(3);
    } finally {
      await strict.app.close();
    }
  });

  it("lists workers seen in the last minute, with their in-flight count and circuit; the worst circuit is shown", async () => {
    let body = await get<Overview>("/api/packages/processing/status");
    expect(body.workers).toEqual([]);
    expect(body.upstream_circuit).toBe("closed");

    await t.db.$executeRaw`
      INSERT INTO worker (id, hostname, pid, started_at, last_seen_at, info) VALUES
        ('w-live-1', 'host-a', 101, now() - interval '10 minutes', now() - interval '5 seconds', '{"inFlight": 3, "circuit": {"state": "closed"}}'),
        ('w-live-2', 'host-b', 202, now() - interval '5 minutes', now(), '{"inFlight": 0, "circuit": {"state": "half_open", "failures": 4}}'),
        ('w-gone', 'host-c', 303, now() - interval '1 day', now() - interval '5 minutes', '{"inFlight": 8, "circuit": {"state": "open"}}'),
        ('w-bare', 'host-d', 404, now() - interval '1 minute', now(), '{}')`;
    body = await get<Overview>("/api/packages/processing/status");
    expect(body.workers.map((w) => w.id)).toEqual(["w-live-1", "w-live-2", "w-bare"]);
    expect(body.workers[0]).toMatchObject({ hostname: "host-a", pid: 101, in_flight: 3, circuit: { state: "closed" } });
    expect(body.workers[1]).toMatchObject({ in_flight: 0, circuit: { state: "half_open", failures: 4 } });
    expect(body.workers[2]).toMatchObject({ in_flight: null, circuit: null });
    for (const w of body.workers) {
      expect(Number.isNaN(Date.parse(w.started_at))).toBe(false);
      expect(Date.now() - Date.parse(w.last_seen_at)).toBeLessThan(60_000);
    }
    // w-gone's open circuit is not counted: it has not been seen for five minutes
    expect(body.upstream_circuit).toBe("half_open");

    await t.db.$executeRaw`UPDATE worker SET last_seen_at = now(), info = '{"inFlight": 1, "circuit": {"state": "open"}}' WHERE id = 'w-gone'`;
    body = await get<Overview>("/api/packages/processing/status");
    expect(body.workers).toHaveLength(4);
    expect(body.upstream_circuit).toBe("open");
  });

  it("shows the latest transitions with actor, reason and package", async () => {
    const id = ids.get("a-0")!;
    await t.db.$executeRaw`
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
      VALUES (${id}::int, 'requested', 'checking_licence', 'w-live-1', 'claimed'),
             (${id}::int, 'checking_licence', 'failed', 'w-live-1', 'licence lookup failed')`;
    const body = await get<Overview>("/api/packages/processing/status");
    expect(body.recent_transitions.slice(0, 2)).toEqual([
      { package_id: id, package: "a-0@1.0.0", from: "checking_licence", to: "failed", actor: "w-live-1", reason: "licence lookup failed", at: expect.any(String) },
      { package_id: id, package: "a-0@1.0.0", from: "requested", to: "checking_licence", actor: "w-live-1", reason: "claimed", at: expect.any(String) },
    ]);
    expect(body.recent_transitions).toHaveLength(20);
  });
});
