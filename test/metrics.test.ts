/**
 * Prometheus metrics: the API's `/metrics` (request histogram by route template, package counts per
 * status from the database, cached), a worker's counters and histograms after a real pipeline run
 * against the fixture upstream, and the worker's `/health` and `/metrics` endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../src/db/client.ts";
import { createLogger } from "../src/logger.ts";
import { createApiMetrics } from "../src/metrics/api.ts";
import { createMetricsRegistry, type Registry } from "../src/metrics/registry.ts";
import { classifyCompletion, composeEvents, createWorkerMetrics } from "../src/metrics/worker.ts";
import { parseLockfile } from "../src/lockfile/parse.ts";
import type { ClaimedRow, Completion } from "../src/queue/sql.ts";
import { createRequest } from "../src/requests/create-request.ts";
import { globalCounts } from "../src/status/queries.ts";
import { startWorkerHttp } from "../worker/http.ts";
import type { Worker } from "../worker/worker.ts";
import { lockV3, pkgs, uploadRaw, type UploadResponse } from "./support/api-helpers.ts";
import { buildTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "./support/fixture-registry.ts";
import { lockfileV3, type LockEntry } from "./support/lockfile.ts";
import { startWorker, waitFor, waitSettled, workerEnv } from "./support/worker.ts";

/** Label sets are matched exactly (order-insensitive); returns undefined when the sample is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[k!] = v!;
    const keys = Object.keys(got);
    if (keys.length === Object.keys(labels).length && keys.every((k) => got[k] === labels[k])) return Number(m[3]);
  }
  return undefined;
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  return sample(await registry.metrics(), name, labels) ?? Number.NaN;
}

const STAGES = ["licence", "download", "scan"] as const;

describe("API /metrics", () => {
  let t: TestDatabase;
  let api: TestApp;

  beforeAll(async () => {
    t = await createTestDatabase();
    api = await buildTestApp(t.db);
  });

  afterAll(async () => {
    await api?.app.close();
    await t?.drop();
  });

  it("serves the request histogram by route template and package counts matching the database", async () => {
    const up = await uploadRaw(api.app, api.auth("user"), lockV3(pkgs("metrics-api", 3)));
    expect(up.statusCode).toBe(202);
    const id = up.json<UploadResponse>().request_id;
    expect((await api.app.inject({ method: "GET", url: `/api/packages/requests/${id}`, headers: api.auth("user") })).statusCode).toBe(200);
    expect((await api.app.inject({ method: "GET", url: `/api/packages/requests/${id}?x=1`, headers: api.auth("user") })).statusCode).toBe(200);
    expect((await api.app.inject({ method: "GET", url: "/api/packages/requests/999999", headers: api.auth("user") })).statusCode).toBe(404);
    expect((await api.app.inject({ method: "GET", url: "/no/such/route/12345" })).statusCode).toBe(404);
    expect((await api.app.inject({ method: "GET", url: "/api/packages/requests" })).statusCode).toBe(401);

    const res = await api.app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.body;

    const h = "spm_http_request_duration_seconds_count";
    expect(sample(text, h, { method: "POST", route: "/api/packages/upload", status_code: "202" })).toBe(1);
    expect(sample(text, h, { method: "GET", route: "/api/packages/requests/:id", status_code: "200" })).toBe(2);
    expect(sample(text, h, { method: "GET", route: "/api/packages/requests/:id", status_code: "404" })).toBe(1);
    expect(sample(text, h, { method: "GET", route: "/api/packages/requests", status_code: "401" })).toBe(1);
    expect(sample(text, h, { method: "GET", route: "unmatched", status_code: "404" })).toBe(1);
    expect(sample(text, "spm_http_request_duration_seconds_bucket", { method: "POST", route: "/api/packages/upload", status_code: "202", le: "+Inf" })).toBe(1);
    // Raw URLs never become label values.
    expect(text).not.toContain(`/api/packages/requests/${id}"`);
    expect(text).not.toContain("12345");

    const counts = await globalCounts(t.db);
    expect(counts.requested).toBe(3);
    for (const [status, n] of Object.entries(counts)) expect(sample(text, "spm_packages", { status }), status).toBe(n);
    // Default process metrics are there too.
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it("caches the status counts for a few seconds and does not fail the scrape when the database does", async () => {
    let now = 1_000_000;
    let calls = 0;
    let down = false;
    const fakeDb = {
      $queryRaw: async () => {
        calls += 1;
        if (down) throw new Error("connect ECONNREFUSED");
        return [{ status: "approved", n: calls }];
      },
    } as unknown as Db;
    const registry = createMetricsRegistry({ defaults: false });
    createApiMetrics(registry, fakeDb, { countsCacheMs: 5_000, now: () => now });

    expect(await metricValue(registry, "spm_packages", { status: "approved" })).toBe(1);
    expect(await metricValue(registry, "spm_packages", { status: "failed" })).toBe(0);
    await Promise.all([registry.metrics(), registry.metrics(), registry.metrics()]);
    now += 4_000;
    expect(await metricValue(registry, "spm_packages", { status: "approved" })).toBe(1);
    expect(calls).toBe(1);
    now += 1_500;
    expect(await metricValue(registry, "spm_packages", { status: "approved" })).toBe(2);
    expect(calls).toBe(2);

    down = true;
    now += 6_000;
    const text = await registry.metrics();
    expect(sample(text, "spm_packages", { status: "approved" })).toBeUndefined();
    // A failure is not cached.
    down = false;
    expect(await metricValue(registry, "spm_packages", { status: "approved" })).toBe(4);
  });

  it("gives each app its own registry", async () => {
    const other = await buildTestApp(t.db);
    try {
      expect(other.app.metricsRegistry).not.toBe(api.app.metricsRegistry);
      const text = (await other.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(sample(text, "spm_http_request_duration_seconds_count", { method: "POST", route: "/api/packages/upload", status_code: "202" })).toBeUndefined();
    } finally {
      await other.app.close();
    }
  });
});

describe("worker metrics", () => {
  let t: TestDatabase;
  let upstream: FixtureRegistry;
  let worker: Worker;
  let http: { close(): Promise<void>; port: number };

  beforeAll(async () => {
    t = await createTestDatabase();
    upstream = await startFixtureRegistry();
    const old = new Date(Date.now() - 30 * 86_400_000);
    for (const name of ["m-ok-1", "m-ok-2", "m-ok-3", "m-flaky"]) upstream.addPackage(name, [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
    upstream.addPackage("m-gpl", [{ version: "1.0.0", license: "GPL-3.0", publishedAt: old }]);
    upstream.setFault({ name: "m-flaky", kind: "packument" }, { kind: "status", status: 500, times: 1 });
    const entry = (name: string): LockEntry => ({
      name,
      version: "1.0.0",
      integrity: upstream.integrity(name, "1.0.0"),
      resolved: `${upstream.url}${name}/-/${name}-1.0.0.tgz`,
    });
    const entries = [...["m-ok-1", "m-ok-2", "m-ok-3", "m-flaky", "m-gpl"].map(entry), { name: "m-missing", version: "1.0.0" }];
    const raw = Buffer.from(lockfileV3(entries));
    await createRequest(t.db, { parsed: parseLockfile(raw), raw, fileName: "package-lock.json", user: { id: null, username: "tester" } });

    const started = startWorker(t.url, workerEnv({ UPSTREAM_REGISTRY: upstream.url, MAX_ATTEMPTS: "4", WORKER_METRICS_PORT: "0", STUCK_AFTER_MINUTES: "0.1" }));
    worker = started.worker;
    http = await startWorkerHttp(worker, started.config, createLogger("test-worker-http", "silent"));
    await worker.start();
    await waitSettled(t.db, 60_000);
  }, 120_000);

  afterAll(async () => {
    await http?.close();
    await worker?.stop();
    await upstream?.close();
    await t?.drop();
  });

  it("counts claims and outcomes per stage, and step durations", async () => {
    const byName = Object.fromEntries((await t.db.package.findMany()).map((p) => [p.name, p.status]));
    expect(byName).toMatchObject({ "m-gpl": "rejected", "m-missing": "failed" });
    for (const name of ["m-ok-1", "m-ok-2", "m-ok-3", "m-flaky"]) expect(["pending_approval", "approved"]).toContain(byName[name]);

    const text = await worker.metrics.registry.metrics();
    const v = (name: string, stage: string) => sample(text, name, { stage });
    // licence: 6 claims + the flaky package's second claim; 4 pass, 1 rejected, 1 failed, 1 retried.
    expect(v("spm_worker_claimed_total", "licence")).toBe(7);
    expect(v("spm_worker_succeeded_total", "licence")).toBe(4);
    expect(v("spm_worker_rejected_total", "licence")).toBe(1);
    expect(v("spm_worker_failed_total", "licence")).toBe(1);
    expect(v("spm_worker_retried_total", "licence")).toBe(1);
    for (const stage of ["download", "scan"]) {
      expect(v("spm_worker_claimed_total", stage), stage).toBe(4);
      expect(v("spm_worker_succeeded_total", stage), stage).toBe(4);
      expect(v("spm_worker_retried_total", stage), stage).toBe(0);
    }
    for (const stage of STAGES) {
      expect(v("spm_worker_deferred_total", stage)).toBe(0);
      expect(v("spm_worker_lease_lost_total", stage)).toBe(0);
    }

    const d = "spm_step_duration_seconds_count";
    expect(sample(text, d, { stage: "licence", outcome: "succeeded" })).toBe(4);
    expect(sample(text, d, { stage: "licence", outcome: "rejected" })).toBe(1);
    expect(sample(text, d, { stage: "licence", outcome: "failed" })).toBe(1);
    expect(sample(text, d, { stage: "licence", outcome: "retried" })).toBe(1);
    expect(sample(text, d, { stage: "download", outcome: "succeeded" })).toBe(4);
    expect(sample(text, d, { stage: "scan", outcome: "succeeded" })).toBe(4);
    expect(sample(text, "spm_step_duration_seconds_sum", { stage: "download", outcome: "succeeded" })).toBeGreaterThan(0);

    // Every applied outcome went through exactly one flush.
    expect(sample(text, "spm_completion_batch_size_sum")).toBe(7 + 4 + 4);
    expect(sample(text, "spm_completion_batch_size_count")).toBeGreaterThanOrEqual(1);

    expect(sample(text, "spm_worker_in_flight")).toBe(0);
    expect(sample(text, "spm_upstream_circuit_state")).toBe(0);
    const lastPoll = sample(text, "spm_worker_last_poll_timestamp_seconds")!;
    expect(Math.abs(lastPoll - Date.now() / 1000)).toBeLessThan(30);
  });

  it("serves /health and the worker's own registry on /metrics (port 0 picks a free port)", async () => {
    expect(http.port).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${http.port}`;
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", workerId: worker.id });

    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await metrics.text();
    expect(sample(text, "spm_worker_claimed_total", { stage: "licence" })).toBe(7);
    expect(text).toMatch(/^process_resident_memory_bytes /m);
    // The package counts are the API's (workers would duplicate them).
    expect(text).not.toMatch(/^spm_packages\{/m);
    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it("counts an expired lease the worker took over, and the worker finishes that row", async () => {
    // Make one row look abandoned by a crashed worker (claimed and last heard of two hours ago).
    const p = await t.db.package.findFirstOrThrow({ where: { name: "m-ok-1" } });
    await t.db.$executeRaw`
      UPDATE package SET status = 'downloading', lease_owner = 'gone', lease_token = gen_random_uuid(),
        heartbeat_at = now() - interval '2 hours', next_attempt_at = now() - interval '2 hours' WHERE id = ${p.id}`;
    // the worker looks for expired leases every heartbeat interval (STUCK_AFTER_MINUTES / 4 = 1.5 s here)
    await waitFor(async () => (await t.db.package.findUniqueOrThrow({ where: { id: p.id } })).leaseOwner !== "gone", 10_000, "takeover");
    await waitSettled(t.db, 30_000);
    const text = await worker.metrics.registry.metrics();
    expect(sample(text, "spm_worker_expired_leases_total", { stage: "download", outcome: "taken_over" })).toBe(1);
    expect(sample(text, "spm_worker_expired_leases_total", { stage: "download", outcome: "failed" })).toBe(0);
    const row = await t.db.package.findUniqueOrThrow({ where: { id: p.id } });
    expect(["pending_approval", "approved"]).toContain(row.status);
    expect(row.attempts).toBe(0); // a successful step clears the attempts the takeover charged
    expect(await t.db.packageEvent.count({ where: { packageId: p.id, actor: worker.id, reason: "stuck: no heartbeat; lease taken over" } })).toBe(1);
  });
});

describe("worker metric hooks", () => {
  const row = (id: number, status: ClaimedRow["status"], attempts = 0) => ({ id, status, attempts }) as ClaimedRow;
  const completion = (c: Partial<Completion> & Pick<Completion, "from" | "to">): Completion => ({
    id: 1,
    token: "t",
    attempts: 0,
    eventReason: "x",
    ...c,
  });

  it("maps completions to stage and outcome", () => {
    expect(classifyCompletion({ from: "checking_licence", to: "licence_checked" })).toEqual({ stage: "licence", outcome: "succeeded" });
    expect(classifyCompletion({ from: "scanning", to: "approved" })).toEqual({ stage: "scan", outcome: "succeeded" });
    expect(classifyCompletion({ from: "scanning", to: "pending_approval" })).toEqual({ stage: "scan", outcome: "succeeded" });
    expect(classifyCompletion({ from: "scanning", to: "rejected" })).toEqual({ stage: "scan", outcome: "rejected" });
    expect(classifyCompletion({ from: "downloading", to: "failed", errorCode: "circuit_open" })).toEqual({ stage: "download", outcome: "failed" });
    expect(classifyCompletion({ from: "downloading", to: "licence_checked", errorCode: "upstream_error" })).toEqual({ stage: "download", outcome: "retried" });
    expect(classifyCompletion({ from: "downloading", to: "licence_checked", errorCode: "circuit_open" })).toEqual({ stage: "download", outcome: "deferred" });
    expect(classifyCompletion({ from: "requested", to: "failed" })).toBeNull();
  });

  it("counts lease losses by the claimed row's stage, ignores empty flushes, and reads gauges at scrape time", async () => {
    const registry = createMetricsRegistry({ defaults: false });
    const m = createWorkerMetrics(registry);
    // A second set on its own registry in the same process: no clash.
    createWorkerMetrics(createMetricsRegistry({ defaults: false }));
    let inFlight = 3;
    let state: "closed" | "open" | "half_open" = "open";
    m.bind({ inFlight: () => inFlight, lastPoll: () => 1_700_000_000_000, circuitState: () => state });

    const seen: number[] = [];
    const events = composeEvents(m.events, { leaseLost: (ids) => seen.push(...ids) });
    events.claimed!([row(1, "downloading"), row(2, "scanning"), row(3, "requested")]);
    events.leaseLost!([1, 2, 99]);
    events.applied!([]);
    events.applied!([completion({ id: 5, from: "checking_licence", to: "requested", errorCode: "circuit_open" })]);

    expect(seen).toEqual([1, 2, 99]);
    expect(await metricValue(registry, "spm_worker_claimed_total", { stage: "download" })).toBe(1);
    expect(await metricValue(registry, "spm_worker_claimed_total", { stage: "licence" })).toBe(0);
    expect(await metricValue(registry, "spm_worker_lease_lost_total", { stage: "download" })).toBe(1);
    expect(await metricValue(registry, "spm_worker_lease_lost_total", { stage: "scan" })).toBe(1);
    expect(await metricValue(registry, "spm_worker_deferred_total", { stage: "licence" })).toBe(1);
    expect(await metricValue(registry, "spm_completion_batch_size_count")).toBe(1);
    expect(await metricValue(registry, "spm_worker_in_flight")).toBe(3);
    expect(await metricValue(registry, "spm_worker_last_poll_timestamp_seconds")).toBe(1_700_000_000);
    expect(await metricValue(registry, "spm_upstream_circuit_state")).toBe(2);
    state = "half_open";
    inFlight = 0;
    expect(await metricValue(registry, "spm_upstream_circuit_state")).toBe(1);
    expect(await metricValue(registry, "spm_worker_in_flight")).toBe(0);
  });

  it("never lets a metrics failure escape into the runner", () => {
    const m = createWorkerMetrics(createMetricsRegistry({ defaults: false }));
    expect(() => m.events.claimed!([null as unknown as ClaimedRow])).not.toThrow();
    expect(() => m.events.applied!([null as unknown as Completion])).not.toThrow();
  });
});
