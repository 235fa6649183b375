/**
 * Several workers race on the same rows: every package passes each stage exactly once (checked from
 * the event table), whatever the interleaving.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLockfile } from "../src/lockfile/parse.ts";
import { createRequest } from "../src/requests/create-request.ts";
import type { Worker } from "../worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "./support/fixture-registry.ts";
import { lockfileV3 } from "./support/lockfile.ts";
import { startWorker, waitSettled, workerEnv } from "./support/worker.ts";

let upstream: FixtureRegistry;
const N = Number(process.env.RACE_N ?? 300);

beforeAll(async () => {
  upstream = await startFixtureRegistry();
  for (let i = 0; i < N; i++) upstream.addPackage(`pkg-${i}`, [{ version: "1.0.0", license: "MIT" }]);
});
afterAll(async () => upstream?.close());

async function race(workers: number): Promise<TestDatabase> {
  const t = await createTestDatabase();
  const entries = Array.from({ length: N }, (_, i) => ({ name: `pkg-${i}`, version: "1.0.0", integrity: upstream.integrity(`pkg-${i}`, "1.0.0") }));
  const raw = Buffer.from(lockfileV3(entries));
  await createRequest(t.db, { parsed: parseLockfile(raw), raw, fileName: null, user: { id: null, username: "t" } });
  const env = workerEnv({ UPSTREAM_REGISTRY: upstream.url, WORKER_MAX_PACKAGES_PER_CYCLE: "7", WORKER_CONCURRENCY: "6" });
  const running: Worker[] = [];
  for (let i = 0; i < workers; i++) running.push(startWorker(t.url, { ...env, WORKER_ID: `racer-${i}` }).worker);
  await Promise.all(running.map((w) => w.start()));
  await waitSettled(t.db, 90_000);
  await Promise.all(running.map((w) => w.stop()));
  return t;
}

describe.each([2, 4])("%i workers racing", (workers) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await race(workers);
  }, 120_000);
  afterAll(async () => t?.drop());

  it("settles every package", async () => {
    expect(await t.db.package.count({ where: { status: { in: ["requested", "checking_licence", "licence_checked", "downloading", "downloaded", "scanning"] } } })).toBe(0);
    expect(await t.db.package.count({ where: { status: "failed" } })).toBe(0);
  });

  it("applies every transition exactly once per package", async () => {
    const dupes = await t.db.$queryRaw<{ package_id: number; to_status: string; n: number }[]>`
      SELECT package_id, to_status::text, count(*)::int AS n FROM package_event GROUP BY package_id, to_status HAVING count(*) > 1`;
    expect(dupes).toEqual([]);
    const perPackage = await t.db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM package_event GROUP BY package_id`;
    expect(perPackage).toHaveLength(N);
    expect(new Set(perPackage.map((r) => r.n)).size).toBe(1);
  });

  it("shared the work between the workers", async () => {
    const actors = await t.db.$queryRaw<{ actor: string }[]>`SELECT DISTINCT actor FROM package_event WHERE from_status = 'checking_licence'`;
    expect(actors.length).toBeGreaterThan(1);
  });

  it("downloaded each tarball once", () => {
    const tarballs = upstream.requests.filter((r) => r.url.includes("/-/pkg-"));
    expect(tarballs.length % N).toBe(0);
  });
});
