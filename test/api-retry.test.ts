import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { lockV3, pkgs, uploadRaw, type UploadResponse } from "./support/api-helpers.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

let t: TestDatabase;
let ta: TestApp;

async function upload(text: string): Promise<UploadResponse> {
  const res = await uploadRaw(ta.app, ta.auth("user"), text);
  expect(res.statusCode, res.body).toBe(202);
  return res.json() as UploadResponse;
}

function retry(body: unknown, role: "user" | "approver" | "admin" = "user") {
  return ta.app.inject({
    method: "POST",
    url: "/api/packages/processing/retry",
    headers: { ...ta.auth(role), "content-type": "application/json" },
    payload: JSON.stringify(body),
  });
}

async function retried(body: unknown, role: "user" | "approver" | "admin" = "user"): Promise<number> {
  const res = await retry(body, role);
  expect(res.statusCode, res.body).toBe(200);
  const json = res.json() as { retried: number };
  expect(Object.keys(json)).toEqual(["retried"]);
  return json.retried;
}

interface Row {
  id: number;
  name: string;
  status: string;
  attempts: number;
  last_error_code: string | null;
  last_error_message: string | null;
  next_attempt_at: Date;
}

async function rows(): Promise<Map<string, Row>> {
  const list = await t.db.$queryRaw<Row[]>`
    SELECT id, name, status::text AS status, attempts, last_error_code, last_error_message, next_attempt_at FROM package`;
  return new Map(list.map((r) => [r.name, r]));
}

// Request A: ra-0..ra-5 plus shared-0..shared-1; request B: rb-0..rb-3 plus shared-0..shared-1.
let reqA: UploadResponse;
let reqB: UploadResponse;

/** The state every test starts from: failed rows in both requests, and rows in other statuses. */
async function arrange() {
  await t.db.$executeRaw`
    UPDATE package SET status = 'approved', attempts = 0, last_error_code = NULL, last_error_message = NULL,
      next_attempt_at = now(), heartbeat_at = NULL, lease_owner = NULL, lease_token = NULL`;
  const fail = async (names: string[], code: string) => t.db.$executeRaw`
    UPDATE package SET status = 'failed', attempts = 5, last_error_code = ${code}, last_error_message = ${`${code} (test)`},
      next_attempt_at = now() + interval '1 hour'
    WHERE name = ANY(${names}::text[])`;
  await fail(["ra-0", "ra-1", "ra-2"], "upstream_unavailable");
  await fail(["rb-0", "rb-1"], "tarball_corrupt");
  await fail(["shared-0"], "lease_expired");
  // Not failed: must never move.
  await t.db.$executeRaw`UPDATE package SET status = 'rejected', last_error_code = 'licence_denied', attempts = 2 WHERE name = 'ra-3'`;
  await t.db.$executeRaw`
    UPDATE package SET status = 'downloading', attempts = 1, last_error_code = 'upstream_timeout', heartbeat_at = now(),
      lease_owner = 'w1', lease_token = gen_random_uuid()
    WHERE name = 'ra-4'`;
  await t.db.$executeRaw`UPDATE package SET status = 'requested', attempts = 3, last_error_code = 'upstream_error' WHERE name = 'rb-2'`;
  await t.db.$executeRaw`UPDATE package SET status = 'pending_approval' WHERE name = 'rb-3'`;
}

const FAILED = ["ra-0", "ra-1", "ra-2", "rb-0", "rb-1", "shared-0"];

beforeAll(async () => {
  t = await createTestDatabase();
  ta = await buildTestApp(t.db);
  reqA = await upload(lockV3([...pkgs("ra", 6), ...pkgs("shared", 2)]));
  reqB = await upload(lockV3([...pkgs("rb", 4), ...pkgs("shared", 2)]));
});
afterAll(async () => {
  await ta?.app.close();
  await t?.drop();
});

beforeEach(arrange);

/** Asserts the named rows were retried (requested, attempts 0, error cleared, ready now) and the rest kept as they were. */
async function expectRetried(names: string[], before: Map<string, Row>) {
  const after = await rows();
  for (const [name, row] of after) {
    const was = before.get(name)!;
    if (names.includes(name)) {
      expect(row, name).toMatchObject({ status: "requested", attempts: 0, last_error_code: null, last_error_message: null });
      expect(row.next_attempt_at.getTime(), name).toBeLessThanOrEqual(Date.now() + 1_000);
    } else {
      expect(row, name).toEqual(was);
    }
  }
}

async function retryEvents(names: string[]) {
  const ids = await t.db.package.findMany({ where: { name: { in: names } }, select: { id: true, name: true } });
  const nameOf = new Map(ids.map((p) => [p.id, p.name]));
  const events = await t.db.packageEvent.findMany({
    where: { reason: "retry requested", packageId: { in: ids.map((p) => p.id) } },
    orderBy: { id: "asc" },
  });
  return events.map((e) => ({ ...e, package: { name: nameOf.get(e.packageId)! } }));
}

describe("POST /api/packages/processing/retry", () => {
  it("{} retries every failed package and nothing else", async () => {
    const before = await rows();
    const eventsBefore = await t.db.packageEvent.count();
    expect(await retried({})).toBe(FAILED.length);
    await expectRetried(FAILED, before);
    expect(await t.db.packageEvent.count()).toBe(eventsBefore + FAILED.length);
    const events = await t.db.packageEvent.findMany({ orderBy: { id: "desc" }, take: FAILED.length });
    const names = await t.db.package.findMany({ where: { id: { in: events.map((e) => e.packageId) } }, select: { name: true } });
    expect(names.map((p) => p.name).sort()).toEqual([...FAILED].sort());
    for (const e of events) {
      expect(e).toMatchObject({ fromStatus: "failed", toStatus: "requested", actor: "user:user1", reason: "retry requested" });
    }
    // nothing failed any more: a second retry does nothing
    expect(await retried({})).toBe(0);
  });

  it("no body at all is the same as {}", async () => {
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/processing/retry", headers: ta.auth("admin") });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ retried: FAILED.length });
  });

  it("the actor names the user who asked", async () => {
    expect(await retried({ package_ids: [(await rows()).get("rb-0")!.id] }, "approver")).toBe(1);
    const [event] = await retryEvents(["rb-0"]).then((list) => list.slice(-1));
    expect(event).toMatchObject({ actor: "user:approver1", fromStatus: "failed", toStatus: "requested" });
  });

  it("{request_id} retries only that request's failed packages (shared ones included)", async () => {
    const before = await rows();
    const eventsBefore = await t.db.packageEvent.count();
    expect(await retried({ request_id: reqB.request_id })).toBe(3);
    await expectRetried(["rb-0", "rb-1", "shared-0"], before);
    expect(await t.db.packageEvent.count()).toBe(eventsBefore + 3);
    const after = await rows();
    for (const name of ["ra-0", "ra-1", "ra-2"]) expect(after.get(name)!.status).toBe("failed");
  });

  it("{package_ids} retries only those ids, skipping ids that are not failed or do not exist", async () => {
    const before = await rows();
    const ids = ["ra-1", "rb-1", "ra-3", "ra-4", "rb-3"].map((n) => before.get(n)!.id);
    expect(await retried({ package_ids: [...ids, 2_000_000] })).toBe(2);
    await expectRetried(["ra-1", "rb-1"], before);
  });

  it("{request_id, package_ids} needs both to match", async () => {
    const before = await rows();
    const ids = ["ra-0", "rb-0", "shared-0"].map((n) => before.get(n)!.id);
    expect(await retried({ request_id: reqA.request_id, package_ids: ids })).toBe(2);
    await expectRetried(["ra-0", "shared-0"], before);
  });

  it("a request with no failed packages retries nothing", async () => {
    await t.db.$executeRaw`UPDATE package SET status = 'approved' WHERE name LIKE 'rb-%' OR name LIKE 'shared-%'`;
    const before = await rows();
    expect(await retried({ request_id: reqB.request_id })).toBe(0);
    expect(await rows()).toEqual(before);
  });

  it("answers 404 request_not_found for an unknown request id, and retries nothing", async () => {
    const before = await rows();
    const res = await retry({ request_id: 987654 });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: "request_not_found", message: expect.stringContaining("987654"), hint: expect.any(String) } });
    expect(await rows()).toEqual(before);
  });

  it.each([
    ["package_ids as a string", { package_ids: "x" }],
    ["package_ids empty", { package_ids: [] }],
    ["package_ids with a non-integer", { package_ids: [1, "two"] }],
    ["package_ids with zero", { package_ids: [0] }],
    ["request_id as text", { request_id: "abc" }],
    ["request_id zero", { request_id: 0 }],
    ["request_id too large", { request_id: 2 ** 31 }],
    ["an extra field", { status: "failed" }],
    ["an extra field next to a valid one", { request_id: 1, all: true }],
    ["an array body", [1, 2]],
    ["a string body", "retry"],
  ])("answers 400 for %s, and retries nothing", async (_label, body) => {
    const before = await rows();
    const res = await retry(body);
    expect(res.statusCode, res.body).toBe(400);
    expect((res.json() as { error: { code: string } }).error.code).toBe("validation_failed");
    expect(await rows()).toEqual(before);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const res = await ta.app.inject({
      method: "POST",
      url: "/api/packages/processing/retry",
      headers: { ...ta.auth("user"), "content-type": "application/json" },
      payload: "{nope",
    });
    expect(res.statusCode).toBe(400);
    expect((res.json() as { error: { code: string } }).error).toMatchObject({ code: expect.any(String), hint: expect.any(String) });
  });

  it("needs a token", async () => {
    const before = await rows();
    const res = await ta.app.inject({ method: "POST", url: "/api/packages/processing/retry", payload: {} });
    expect(res.statusCode).toBe(401);
    expect(await rows()).toEqual(before);
  });
});

describe("retry wakes the workers", () => {
  let listener: pg.Client;
  const received: string[] = [];

  beforeAll(async () => {
    listener = new pg.Client({ connectionString: t.url });
    await listener.connect();
    listener.on("notification", (n) => received.push(n.channel));
    await listener.query("LISTEN spm_work");
  });
  afterAll(async () => listener?.end());

  function nextNotification(timeoutMs = 5_000): Promise<string> {
    const start = received.length;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        clearInterval(poll);
        reject(new Error("no NOTIFY on spm_work"));
      }, timeoutMs);
      const poll = setInterval(() => {
        if (received.length > start) {
          clearInterval(poll);
          clearTimeout(timer);
          resolve(received[start]!);
        }
      }, 10);
    });
  }

  it("sends NOTIFY spm_work when rows were retried", async () => {
    received.length = 0;
    const notified = nextNotification();
    expect(await retried({ request_id: reqA.request_id })).toBe(4);
    await expect(notified).resolves.toBe("spm_work");
  });

  it("sends no NOTIFY when nothing was retried", async () => {
    await t.db.$executeRaw`UPDATE package SET status = 'approved'`;
    received.length = 0;
    expect(await retried({})).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received).toEqual([]);
  });
});
