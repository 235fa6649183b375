/**
 * The `spm` CLI (bin/spm.mjs → scripts/spm.ts) against a running API and worker: upload --wait is a
 * CI gate (exit 1 when anything is rejected, with the reason in its summary), status, whoami.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../../src/advisories/store.ts";
import type { Worker } from "../../worker/worker.ts";
import { buildTestApp, type TestApp } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "../support/fixture-registry.ts";
import { lockfileV3 } from "../support/lockfile.ts";
import { startWorker, workerEnv } from "../support/worker.ts";

const run = promisify(execFile);
const bin = resolve(import.meta.dirname, "../../bin/spm.mjs");

let t: TestDatabase;
let api: TestApp;
let upstream: FixtureRegistry;
let worker: Worker;
let url: string;
let home: string;

beforeAll(async () => {
  t = await createTestDatabase();
  upstream = await startFixtureRegistry();
  const old = new Date(Date.now() - 30 * 86_400_000);
  upstream.addPackage("fine", [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
  upstream.addPackage("copyleft", [{ version: "2.0.0", license: "GPL-3.0-only", publishedAt: old }]);
  async function* none() {
    yield { source: "fresh.json", doc: { id: "GHSA-unrelated-0001", modified: new Date().toISOString(), affected: [{ package: { ecosystem: "npm", name: "unrelated" }, versions: ["1.0.0"] }] } };
  }
  await importAdvisories(t.db, none(), "test");
  api = await buildTestApp(t.db);
  url = await api.app.listen({ port: 0, host: "127.0.0.1" });
  ({ worker } = startWorker(t.url, workerEnv({ UPSTREAM_REGISTRY: upstream.url })));
  await worker.start();
  home = mkdtempSync(join(tmpdir(), "spm-cli-home-"));
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await api?.app.close();
  await upstream?.close();
  await t?.drop();
});

async function spm(args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      cwd: home,
      env: { PATH: process.env.PATH, HOME: home, SPM_URL: url, SPM_TOKEN: api.tokens.admin },
      timeout: 90_000,
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

describe("spm CLI", () => {
  it("whoami names the token's user", async () => {
    const r = await spm(["whoami"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("admin1");
  });

  it("upload --wait gates: exit 1 with the rejection reason in the summary", async () => {
    const lock = join(home, "package-lock.json");
    writeFileSync(
      lock,
      lockfileV3([
        { name: "fine", version: "1.0.0", integrity: upstream.integrity("fine", "1.0.0") },
        { name: "copyleft", version: "2.0.0", integrity: upstream.integrity("copyleft", "2.0.0") },
      ]),
    );
    const r = await spm(["upload", lock, "--wait", "--interval", "0.2", "--timeout", "60"]);
    expect(r.code, r.out + r.err).toBe(1);
    expect(r.out).toMatch(/copyleft@2\.0\.0/);
    expect(r.out).toMatch(/licence_denied/);
    expect(r.out).toMatch(/GPL-3\.0-only/);
    const status = await spm(["status", "1"]);
    expect(status.code).toBe(1);
    expect(status.out).toMatch(/fine@1\.0\.0|approved/);
  }, 90_000);

  it("reports usage errors with exit 2", async () => {
    const r = await spm(["upload"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/exactly one lockfile/);
  });
});
