/**
 * Upstream faults against the real pipeline (in-process worker, fixture upstream): 5xx, 429, 403,
 * connection resets, timeouts, a slow-loris body, oversized tarballs (with and without Content-Length),
 * truncated and corrupt tarballs. Each package either succeeds after retries with verified bytes, or ends
 * `failed` with a clear code and message; none is ever approved on faulty bytes. Then the circuit breaker:
 * it opens after N consecutive failures, claimed rows are deferred without being charged an attempt, and
 * once the upstream recovers it closes and everything completes.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../../src/advisories/store.ts";
import type { Config } from "../../src/config.ts";
import { parseLockfile } from "../../src/lockfile/parse.ts";
import { createRequest } from "../../src/requests/create-request.ts";
import type { Worker } from "../../worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { startFixtureRegistry, type Fault, type FaultTarget, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3, type LockEntry } from "../support/lockfile.ts";
import { packageTarball } from "../support/tar-builder.ts";
import { startUpstreamProxy, type UpstreamProxy } from "../support/upstream-proxy.ts";
import { startWorker, waitFor, waitSettled, workerEnv } from "../support/worker.ts";

const old = new Date(Date.now() - 30 * 86_400_000);
const MAX_TARBALL_BYTES = 16 * 1024;
const TIMEOUT_MS = 1_000;
const MAX_ATTEMPTS = 4;

/** Incompressible content: gzip cannot shrink it, so the tarball is about this big. */
const noise = (bytes: number) => randomBytes(bytes).toString("base64").slice(0, bytes);

/** An advisory for an unrelated package, so that advisory data is fresh and clean packages get approved by policy. */
async function freshAdvisories(t: TestDatabase): Promise<void> {
  async function* docs() {
    yield {
      source: "fixture.json",
      doc: {
        id: "GHSA-unrelated-0001",
        modified: new Date().toISOString(),
        summary: "unrelated",
        database_specific: { severity: "LOW" },
        affected: [{ package: { ecosystem: "npm", name: "some-unrelated-package" }, ranges: [{ type: "SEMVER", events: [{ introduced: "0" }] }] }],
      },
    };
  }
  await importAdvisories(t.db, docs(), "test");
}

async function upload(t: TestDatabase, upstream: FixtureRegistry, names: string[]): Promise<void> {
  const entries: LockEntry[] = names.map((name) => ({ name, version: "1.0.0", integrity: upstream.integrity(name, "1.0.0") }));
  const raw = Buffer.from(lockfileV3(entries));
  await createRequest(t.db, { parsed: parseLockfile(raw), raw, fileName: null, user: { id: null, username: "tester" } });
}

async function row(t: TestDatabase, name: string) {
  const p = await t.db.package.findUniqueOrThrow({ where: { name_version: { name, version: "1.0.0" } } });
  const events = await t.db.packageEvent.findMany({ where: { packageId: p.id }, orderBy: { id: "asc" } });
  return { ...p, events, results: p.results as Record<string, any> };
}

interface Expectation {
  /** Faults set on the fixture for this package. */
  faults: [FaultTarget["kind"], Fault][];
  /** Extra fixture fields (tarball content). */
  files?: Record<string, string>;
  tarball?: Buffer;
  outcome: "approved" | "failed";
  code?: string;
  message?: RegExp;
  /** Minimum number of retry events before the outcome. */
  retries?: number;
  /** A permanent failure: no retry. */
  permanent?: boolean;
}

describe("single upstream faults", () => {
  let t: TestDatabase;
  let upstream: FixtureRegistry;
  let worker: Worker;
  let storageDir: string;

  const validTarball = packageTarball({ name: "corrupt-gzip", version: "1.0.0", license: "MIT" }, { "index.js": noise(2_000) });
  const cases: Record<string, Expectation> = {
    "control-ok": { faults: [], outcome: "approved" },
    "tarball-500-twice": { faults: [["tarball", { kind: "status", status: 500, times: 2 }]], outcome: "approved", retries: 2 },
    "packument-503-twice": { faults: [["packument", { kind: "status", status: 503, times: 2 }]], outcome: "approved", retries: 2 },
    "tarball-429-once": { faults: [["tarball", { kind: "status", status: 429, times: 1 }]], outcome: "approved", retries: 1 },
    "tarball-500-always": {
      faults: [["tarball", { kind: "status", status: 500 }]],
      outcome: "failed",
      code: "upstream_error",
      message: /upstream answered 500/,
      retries: MAX_ATTEMPTS - 1,
    },
    "tarball-403": { faults: [["tarball", { kind: "status", status: 403 }]], outcome: "failed", code: "upstream_error", message: /answered 403/, permanent: true },
    "tarball-reset-once": { faults: [["tarball", { kind: "reset", times: 1 }]], outcome: "approved", retries: 1 },
    "packument-reset-always": {
      faults: [["packument", { kind: "reset" }]],
      outcome: "failed",
      code: "upstream_unavailable",
      message: /upstream unreachable/,
      retries: MAX_ATTEMPTS - 1,
    },
    "tarball-slow-once": { faults: [["tarball", { kind: "delay", ms: TIMEOUT_MS * 4, times: 1 }]], outcome: "approved", retries: 1 },
    "tarball-timeout-always": {
      faults: [["tarball", { kind: "delay", ms: 30_000 }]],
      outcome: "failed",
      code: "upstream_timeout",
      message: new RegExp(`within ${TIMEOUT_MS} ms`),
      retries: MAX_ATTEMPTS - 1,
    },
    // Headers at once, then the body at 100 bytes/s: 12 kB would take two minutes per attempt.
    "tarball-slow-loris": {
      faults: [["tarball", { kind: "slowBody", bytesPerSecond: 100 }]],
      files: { "index.js": noise(12_000) },
      outcome: "failed",
      code: "upstream_timeout",
      message: new RegExp(`within ${TIMEOUT_MS} ms`),
      retries: MAX_ATTEMPTS - 1,
    },
    "packument-slow-loris": {
      faults: [["packument", { kind: "slowBody", bytesPerSecond: 20 }]],
      outcome: "failed",
      code: "upstream_timeout",
      message: new RegExp(`within ${TIMEOUT_MS} ms`),
      retries: MAX_ATTEMPTS - 1,
    },
    "tarball-slow-loris-once": { faults: [["tarball", { kind: "slowBody", bytesPerSecond: 100, times: 1 }]], files: { "index.js": noise(4_000) }, outcome: "approved", retries: 1 },
    "tarball-too-large": {
      faults: [],
      files: { "index.js": noise(MAX_TARBALL_BYTES * 2) },
      outcome: "failed",
      code: "tarball_too_large",
      message: /MAX_TARBALL_BYTES/,
      permanent: true,
    },
    "tarball-truncated-once": { faults: [["tarball", { kind: "truncate", bytes: 100, times: 1 }]], files: { "index.js": noise(3_000) }, outcome: "approved", retries: 1 },
    "tarball-truncated-always": {
      faults: [["tarball", { kind: "truncate", bytes: 100 }]],
      files: { "index.js": noise(3_000) },
      outcome: "failed",
      code: "upstream_error",
      message: /broke off while downloading .*: other side closed/,
      retries: MAX_ATTEMPTS - 1,
    },
    "tarball-truncated-empty": {
      faults: [["tarball", { kind: "truncate", bytes: 0 }]],
      outcome: "failed",
      code: "upstream_error",
      retries: MAX_ATTEMPTS - 1,
    },
    // Published that way (the packument's integrity matches the cut bytes): the scan finds a broken gzip.
    "corrupt-gzip": { faults: [], tarball: validTarball.subarray(0, validTarball.length - 200), outcome: "failed", code: "tarball_corrupt", permanent: true },
    "garbage-tarball": { faults: [], tarball: randomBytes(3_000), outcome: "failed", code: "tarball_corrupt", permanent: true },
  };
  const names = Object.keys(cases);

  beforeAll(async () => {
    t = await createTestDatabase();
    await freshAdvisories(t);
    upstream = await startFixtureRegistry();
    for (const [name, c] of Object.entries(cases)) {
      upstream.addPackage(name, [{ version: "1.0.0", license: "MIT", publishedAt: old, ...(c.files ? { files: c.files } : {}), ...(c.tarball ? { tarball: c.tarball } : {}) }]);
      for (const [kind, fault] of c.faults) upstream.setFault({ name, kind }, fault);
    }
    await upload(t, upstream, names);
    let config: Config;
    ({ worker, config } = startWorker(
      t.url,
      workerEnv({
        UPSTREAM_REGISTRY: upstream.url,
        UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS),
        MAX_TARBALL_BYTES: String(MAX_TARBALL_BYTES),
        MAX_ATTEMPTS: String(MAX_ATTEMPTS),
        RETRY_BASE_SECONDS: "0.05",
        RETRY_MAX_SECONDS: "0.2",
        // This block tests each fault on its own; the breaker has its own block below.
        CIRCUIT_FAILURE_THRESHOLD: "100000",
        WORKER_CONCURRENCY: "8",
      }),
    ));
    storageDir = config.STORAGE_DIR;
    await worker.start();
    await waitSettled(t.db, 45_000);
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await upstream?.close();
    await t?.drop();
  });

  it.each(names)("%s", async (name) => {
    const c = cases[name]!;
    const p = await row(t, name);
    const retryEvents = p.events.filter((e) => e.reason?.startsWith("retry "));
    expect(p.status, `${name}: ${p.lastErrorCode} ${p.lastErrorMessage}`).toBe(c.outcome);
    expect(retryEvents.length).toBeGreaterThanOrEqual(c.retries ?? 0);
    if (c.outcome === "approved") {
      // Succeeded after retries, on the full, verified bytes.
      expect(p.results.download.integrity).toBe(upstream.integrity(name, "1.0.0"));
      expect(p.results.approval.by).toBe("policy");
      return;
    }
    expect(p.lastErrorCode).toBe(c.code);
    if (c.message) expect(p.lastErrorMessage).toMatch(c.message);
    expect(p.events.at(-1)!.toStatus).toBe("failed");
    expect(p.events.at(-1)!.reason).toContain(c.code!);
    // Never approved, never even waiting for approval.
    expect(p.events.some((e) => e.toStatus === "approved" || e.toStatus === "pending_approval")).toBe(false);
    expect(p.results.approval).toBeUndefined();
    if (c.permanent) {
      // failed at once on the permanent error, never retried for it
      expect(p.events.at(-1)!.reason).toMatch(new RegExp(`^${c.code}: `));
      expect(retryEvents.filter((e) => e.reason?.includes(c.code!))).toEqual([]);
    } else {
      expect(p.attempts).toBe(MAX_ATTEMPTS);
      expect(p.events.at(-1)!.reason).toMatch(/^retries used up/);
    }
  });

  it("left nothing half-written in the store's temporary folder", () => {
    const tmp = join(storageDir, "tmp");
    expect(existsSync(tmp) ? readdirSync(tmp) : []).toEqual([]);
  });
});

describe("tarballs without a Content-Length header", () => {
  let t: TestDatabase;
  let upstream: FixtureRegistry;
  let proxy: UpstreamProxy;
  let worker: Worker;

  beforeAll(async () => {
    t = await createTestDatabase();
    await freshAdvisories(t);
    upstream = await startFixtureRegistry();
    upstream.addPackage("chunked-small", [{ version: "1.0.0", license: "MIT", publishedAt: old, files: { "index.js": noise(3_000) } }]);
    upstream.addPackage("chunked-huge", [{ version: "1.0.0", license: "MIT", publishedAt: old, files: { "index.js": noise(MAX_TARBALL_BYTES * 3) } }]);
    proxy = await startUpstreamProxy(upstream.url);
    proxy.chunked.add("chunked-small").add("chunked-huge");
    await upload(t, upstream, ["chunked-small", "chunked-huge"]);
    ({ worker } = startWorker(t.url, workerEnv({ UPSTREAM_REGISTRY: proxy.url, MAX_TARBALL_BYTES: String(MAX_TARBALL_BYTES), MAX_ATTEMPTS: String(MAX_ATTEMPTS) })));
    await worker.start();
    await waitSettled(t.db, 30_000);
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await proxy?.close();
    await upstream?.close();
    await t?.drop();
  });

  it("the proxy really streams without Content-Length", async () => {
    const res = await fetch(new URL("chunked-huge/-/chunked-huge-1.0.0.tgz", proxy.url));
    expect(res.headers.get("content-length")).toBeNull();
    expect(res.headers.get("transfer-encoding")).toBe("chunked");
    await res.arrayBuffer();
  });

  it("counts the bytes as they stream: an oversized body fails tarball_too_large at once, never approved", async () => {
    const p = await row(t, "chunked-huge");
    expect(p.status).toBe("failed");
    expect(p.lastErrorCode).toBe("tarball_too_large");
    expect(p.lastErrorMessage).toMatch(/MAX_TARBALL_BYTES/);
    expect(p.events.filter((e) => e.fromStatus === "downloading").length).toBe(1);
    expect(p.events.some((e) => e.toStatus === "approved")).toBe(false);
  });

  it("a small body without Content-Length downloads and verifies normally", async () => {
    const p = await row(t, "chunked-small");
    expect(p.status).toBe("approved");
    expect(p.results.download.integrity).toBe(upstream.integrity("chunked-small", "1.0.0"));
  });
});

describe("circuit breaker", () => {
  const COUNT = 8;
  const ATTEMPTS = 4;
  let t: TestDatabase;
  let upstream: FixtureRegistry;
  let worker: Worker;
  const names = Array.from({ length: COUNT }, (_, i) => `breaker-${i}`);

  beforeAll(async () => {
    t = await createTestDatabase();
    await freshAdvisories(t);
    upstream = await startFixtureRegistry();
    for (const name of names) upstream.addPackage(name, [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
    ({ worker } = startWorker(
      t.url,
      workerEnv({
        UPSTREAM_REGISTRY: upstream.url,
        CIRCUIT_FAILURE_THRESHOLD: "3",
        CIRCUIT_OPEN_SECONDS: "0.4",
        MAX_ATTEMPTS: String(ATTEMPTS),
        RETRY_BASE_SECONDS: "0.05",
        RETRY_MAX_SECONDS: "0.2",
        WORKER_CONCURRENCY: "2",
      }),
    ));
  });

  afterAll(async () => {
    await worker?.stop();
    await upstream?.close();
    await t?.drop();
  });

  const deferrals = async () =>
    t.db.$queryRaw<{ name: string; n: number }[]>`
      SELECT p.name, count(*)::int AS n FROM package_event e JOIN package p ON p.id = e.package_id
      WHERE e.reason LIKE 'deferred: upstream registry circuit is open%' GROUP BY p.name`;

  it("opens after consecutive failures, defers claimed rows without charging attempts, closes when the upstream recovers", async () => {
    upstream.setFault({}, { kind: "status", status: 503 });
    await upload(t, upstream, names);
    await worker.start();

    // Open: rows are deferred with last_error_code circuit_open, again and again.
    let sawOpen = false;
    await waitFor(
      async () => {
        sawOpen ||= worker.registry.breaker.state === "open";
        const rows = await deferrals();
        return rows.some((r) => r.n > ATTEMPTS);
      },
      30_000,
      `a row deferred more than MAX_ATTEMPTS (${ATTEMPTS}) times`,
    );
    expect(sawOpen).toBe(true);
    expect(await t.db.package.count({ where: { lastErrorCode: "circuit_open" } })).toBeGreaterThan(0);

    // Deferrals are not charged: every row's attempts equal its real (retried) failures, and none failed,
    // though some row was deferred more often than MAX_ATTEMPTS allows attempts.
    const snapshot = await t.db.$queryRaw<{ name: string; attempts: number; status: string; retries: number; deferred: number }[]>`
      SELECT p.name, p.attempts, p.status::text AS status,
        (SELECT count(*)::int FROM package_event e WHERE e.package_id = p.id AND e.reason LIKE 'retry %') AS retries,
        (SELECT count(*)::int FROM package_event e WHERE e.package_id = p.id AND e.reason LIKE 'deferred:%') AS deferred
      FROM package p ORDER BY p.name`;
    expect(snapshot.filter((r) => r.status === "failed")).toEqual([]);
    for (const r of snapshot) {
      // a row may be in checking_licence right now: its claim is not charged until it completes
      expect(r.attempts, r.name).toBe(r.retries);
      expect(r.attempts, r.name).toBeLessThan(ATTEMPTS);
    }
    expect(Math.max(...snapshot.map((r) => r.deferred))).toBeGreaterThan(ATTEMPTS);
    // It opened only after CIRCUIT_FAILURE_THRESHOLD real failures.
    expect(snapshot.reduce((sum, r) => sum + r.attempts, 0)).toBeGreaterThanOrEqual(3);
    // Far fewer upstream calls than claims: the open breaker keeps the load off the upstream.
    const calls = upstream.requests.length;
    // every claim ends in one event from the active status (an outcome, a deferral or a retry)
    const claims = await t.db.packageEvent.count({ where: { fromStatus: "checking_licence" } });
    expect(calls).toBeLessThan(claims);

    // Recovery: the half-open trial succeeds, the breaker closes, everything completes.
    upstream.setFault({}, null);
    await waitSettled(t.db, 30_000);
    const rows = await t.db.package.findMany();
    expect(rows.map((r) => r.status)).toEqual(Array(COUNT).fill("approved"));
    expect(worker.registry.breaker.state).toBe("closed");
    expect(worker.registry.breaker.consecutiveFailures).toBe(0);
  });
});
