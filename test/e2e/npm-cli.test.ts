/**
 * End to end with the real npm CLI on PATH (npm 11): the API listens on loopback against a test
 * database and a temporary content store; npm is pointed at /npm/ with a token in a project .npmrc.
 *
 * npm never reaches the internet: the registry is given explicitly, HOME is a temporary directory,
 * every inherited npm_config_* variable is dropped, update-notifier/fund/audit are off (audit is on
 * only in the audit test, where it goes to the gate), and any non-loopback request would be sent to
 * a dead proxy (127.0.0.1:9).
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OsvSourceRecord } from "../../src/advisories/read-sources.ts";
import { importAdvisories } from "../../src/advisories/store.ts";
import type { Db } from "../../src/db/client.ts";
import type { PackageStatus } from "../../src/queue/states.ts";
import { ContentStore } from "../../src/store/content-store.ts";
import { buildTestApp, type TestApp } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { packageTarball } from "../support/tar-builder.ts";

type Json = Record<string, unknown>;

interface Seeded {
  manifest: Json;
  files: Record<string, string>;
  integrity: string;
  bytes: Buffer;
}

let t: TestDatabase;
let ta: TestApp;
let app: FastifyInstance;
let work: string;
let store: ContentStore;
let registry: string;
const seeded = new Map<string, Seeded>();

async function seed(db: Db, name: string, version: string, status: PackageStatus, extra: { manifest?: Json; files?: Record<string, string>; reasonCode?: string; reasonMessage?: string } = {}) {
  const manifest: Json = { name, version, license: "MIT", main: "index.js", ...(extra.manifest ?? {}) };
  const files = extra.files ?? { "index.js": `module.exports = ${JSON.stringify(`${name}@${version}`)};\n` };
  const bytes = packageTarball(manifest, files);
  const { blob } = await store.write(Readable.from([bytes]), 10 * 1024 * 1024);
  seeded.set(`${name}@${version}`, { manifest, files, integrity: blob.integrity, bytes });
  const results = {
    manifest,
    upstream: { publishedAt: "2024-01-01T00:00:00.000Z" },
    download: { storageKey: blob.key, size: blob.size, integrity: blob.integrity, shasum: blob.sha1 },
  };
  await db.$executeRaw`
    INSERT INTO package (name, version, status, results, reason_code, reason_message)
    VALUES (${name}, ${version}, ${status}::package_status, ${JSON.stringify(results)}::jsonb, ${extra.reasonCode ?? null}, ${extra.reasonMessage ?? null})`;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** npm with a clean environment: no inherited npm config, a temporary HOME, no way out of loopback. */
function npm(cwd: string, args: string[], opts: { audit?: boolean } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && !/_proxy$/i.test(k) && k !== "NODE_OPTIONS") env[k] = v;
  }
  const home = join(work, "home");
  Object.assign(env, {
    HOME: home,
    npm_config_userconfig: join(home, ".npmrc"),
    npm_config_globalconfig: join(home, "global-npmrc"),
    npm_config_cache: join(work, "npm-cache"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: opts.audit ? "true" : "false",
    npm_config_proxy: "http://127.0.0.1:9",
    npm_config_https_proxy: "http://127.0.0.1:9",
    npm_config_noproxy: "127.0.0.1",
    npm_config_fetch_retries: "0",
    npm_config_loglevel: "warn",
  });
  return new Promise((resolve) => {
    execFile("npm", [...args, `--registry=${registry}`], { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function project(name: string, files: Record<string, unknown>, token: string | null = ta.tokens.user): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const host = new URL(registry);
  const npmrc = [`registry=${registry}`, ...(token ? [`//${host.host}${host.pathname}:_authToken=${token}`] : [])].join("\n") + "\n";
  writeFileSync(join(dir, ".npmrc"), npmrc);
  for (const [file, content] of Object.entries(files)) {
    writeFileSync(join(dir, file), typeof content === "string" ? content : JSON.stringify(content, null, 2) + "\n");
  }
  return dir;
}

/** Every regular file under `dir`, relative path → bytes. */
function filesUnder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/** What npm must have extracted for a seeded package: package.json and its files, byte for byte. */
function expectInstalledExactly(dir: string, id: string): void {
  const s = seeded.get(id)!;
  const expected = new Map<string, Buffer>([["package.json", Buffer.from(JSON.stringify(s.manifest, null, 2) + "\n")]]);
  for (const [file, body] of Object.entries(s.files)) expected.set(file, Buffer.from(body));
  const actual = filesUnder(dir);
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [file, body] of expected) expect(actual.get(file)!.equals(body), `${id}: ${file}`).toBe(true);
}

/** SPM_E2E_VERBOSE=1 prints what npm printed (the texts quoted in docs/registry.md). */
function show(label: string, text: string): void {
  if (process.env.SPM_E2E_VERBOSE === "1") process.stdout.write(`\n--- ${label} ---\n${text}\n`);
}

const tgz = (name: string, version: string) => `${registry}${name}/-/${name.slice(name.lastIndexOf("/") + 1)}-${version}.tgz`;

beforeAll(async () => {
  t = await createTestDatabase();
  work = mkdtempSync(join(tmpdir(), "spm-e2e-npm-"));
  mkdirSync(join(work, "home"), { recursive: true });
  writeFileSync(join(work, "home", "global-npmrc"), "");
  const storageDir = join(work, "store");
  store = new ContentStore(storageDir);
  ta = await buildTestApp(t.db, { DATABASE_URL: t.url, STORAGE_DIR: storageDir });
  app = ta.app;
  await app.listen({ port: 0, host: "127.0.0.1" });
  registry = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/npm/`;

  const db = t.db;
  await seed(db, "@acme/beta", "2.0.0", "approved", {
    files: { "index.js": "exports.beta = () => 'beta';\n", "lib/util.js": "exports.util = 1;\n", "README.md": "# beta\n" },
  });
  await seed(db, "alpha", "1.0.0", "approved", {
    manifest: { dependencies: { "@acme/beta": "^2.0.0" }, bin: { alpha: "bin/alpha.js" } },
    files: { "index.js": "module.exports = require('@acme/beta');\n", "bin/alpha.js": "#!/usr/bin/env node\nconsole.log('alpha');\n" },
  });
  await seed(db, "gamma", "1.0.0", "approved");
  await seed(db, "gamma", "2.0.0", "rejected", {
    reasonCode: "critical_vulnerability",
    reasonMessage: "gamma@2.0.0: GHSA-9999-8888-7777 (critical) remote code execution in gamma, fixed in 2.0.1",
  });
  await seed(db, "delta", "1.0.0", "rejected", { reasonCode: "licence_denied", reasonMessage: "licence SSPL-1.0 is denied by policy" });

  async function* records(): AsyncGenerator<OsvSourceRecord> {
    yield {
      source: "alpha.json",
      doc: {
        id: "GHSA-abcd-efgh-ijkl",
        modified: "2024-02-01T00:00:00Z",
        summary: "Command injection in alpha",
        affected: [{ package: { ecosystem: "npm", name: "alpha" }, ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "1.0.1" }] }] }],
        database_specific: { severity: "HIGH", cwe_ids: ["CWE-78"] },
      },
    };
  }
  await importAdvisories(db, records(), "test");
}, 120_000);

afterAll(async () => {
  await app?.close();
  await t?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const lockfile = (registryUrl: string) => ({
  name: "proj",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "proj", version: "1.0.0", dependencies: { alpha: "^1.0.0" } },
    "node_modules/alpha": {
      version: "1.0.0",
      resolved: `${registryUrl}alpha/-/alpha-1.0.0.tgz`,
      integrity: seeded.get("alpha@1.0.0")!.integrity,
      license: "MIT",
      dependencies: { "@acme/beta": "^2.0.0" },
      bin: { alpha: "bin/alpha.js" },
    },
    "node_modules/@acme/beta": {
      version: "2.0.0",
      resolved: `${registryUrl}@acme/beta/-/beta-2.0.0.tgz`,
      integrity: seeded.get("@acme/beta@2.0.0")!.integrity,
      license: "MIT",
    },
  },
});

describe("npm CLI against the gate", () => {
  it("npm ci installs a lockfile's approved packages byte for byte", async () => {
    expect((await npm(work, ["--version"])).stdout).toMatch(/^11\./);
    const dir = project("ci", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile(registry),
    });
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", join(work, "cache-ci")]);
    expect(run.stderr).not.toMatch(/ERR!/);
    expect(run.code).toBe(0);
    expectInstalledExactly(join(dir, "node_modules", "alpha"), "alpha@1.0.0");
    expectInstalledExactly(join(dir, "node_modules", "@acme", "beta"), "@acme/beta@2.0.0");
    expect(statSync(join(dir, "node_modules", ".bin", "alpha")).isFile()).toBe(true);
  });

  it("npm ci of an unchanged lockfile (resolved at registry.npmjs.org) fetches from the gate", async () => {
    const dir = project("ci-npmjs", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile("https://registry.npmjs.org/"),
    });
    // npm's replace-registry-host (default "npmjs") swaps registry.npmjs.org for the configured registry
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.stderr).not.toMatch(/ERR!|error/);
    expect(run.code).toBe(0);
    expectInstalledExactly(join(dir, "node_modules", "alpha"), "alpha@1.0.0");
  });

  it("npm install without a lockfile resolves through the packuments (scoped included) and locks the gate's URLs", async () => {
    const dir = project("install", { "package.json": { name: "proj2", version: "1.0.0", private: true } });
    const run = await npm(dir, ["install", "alpha", "gamma", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.stderr).not.toMatch(/ERR!/);
    expect(run.code).toBe(0);
    const lock = JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string; resolved: string; integrity: string }> };
    expect(lock.packages["node_modules/alpha"]).toMatchObject({ version: "1.0.0", resolved: tgz("alpha", "1.0.0"), integrity: seeded.get("alpha@1.0.0")!.integrity });
    expect(lock.packages["node_modules/@acme/beta"]).toMatchObject({ version: "2.0.0", resolved: tgz("@acme/beta", "2.0.0") });
    // gamma@2.0.0 is rejected: the range resolves to the approved 1.0.0
    expect(lock.packages["node_modules/gamma"]).toMatchObject({ version: "1.0.0", resolved: tgz("gamma", "1.0.0") });
    expectInstalledExactly(join(dir, "node_modules", "@acme", "beta"), "@acme/beta@2.0.0");
  });

  it("npm install of a rejected version fails with the gate's reason", async () => {
    const dir = project("rejected", { "package.json": { name: "proj3", version: "1.0.0", private: true } });
    const run = await npm(dir, ["install", "gamma@2.0.0", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("gamma@2.0.0 is rejected: GHSA-9999-8888-7777 (critical) remote code execution in gamma, fixed in 2.0.1");
    show("npm install gamma@2.0.0", run.stderr);

    const only = await npm(dir, ["install", "delta@1.0.0", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(only.code).not.toBe(0);
    expect(only.stderr).toContain("delta@1.0.0 is rejected: licence SSPL-1.0 is denied by policy");
    show("npm install delta@1.0.0", only.stderr);
  });

  it("npm ci of a lockfile with a rejected version fails on the tarball with the reason", async () => {
    const lock = lockfile(registry) as { packages: Record<string, Json> };
    lock.packages[""] = { name: "proj", version: "1.0.0", dependencies: { alpha: "^1.0.0", gamma: "^2.0.0" } };
    lock.packages["node_modules/gamma"] = { version: "2.0.0", resolved: tgz("gamma", "2.0.0"), integrity: seeded.get("gamma@2.0.0")!.integrity, license: "MIT" };
    const dir = project("ci-rejected", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0", gamma: "^2.0.0" } },
      "package-lock.json": lock,
    });
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`403 Forbidden - GET ${tgz("gamma", "2.0.0")} - gamma@2.0.0 is rejected: GHSA-9999-8888-7777 (critical)`);
    show("npm ci (gamma@2.0.0 locked)", run.stderr);
  });

  it("without a token npm is told how to set one", async () => {
    const dir = project("no-token", { "package.json": { name: "proj4", version: "1.0.0", private: true } }, null);
    const run = await npm(dir, ["install", "gamma", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("authentication required: npm login is not supported; set //127.0.0.1:");
    show("npm install without a token", run.stderr);
    const who = await npm(project("whoami", {}), ["whoami"]);
    expect(who.stdout.trim()).toBe("user1");
    const ping = await npm(dir, ["ping"]);
    expect(ping.code).toBe(0);
  });

  it("npm audit reports an imported advisory through the bulk endpoint", async () => {
    const dir = project("audit", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile(registry),
    });
    const ci = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(ci.code).toBe(0);
    const run = await npm(dir, ["audit", "--json"], { audit: true });
    const report = JSON.parse(run.stdout) as {
      vulnerabilities: Record<string, { severity: string; range: string; via: Json[] }>;
      metadata: { vulnerabilities: Record<string, number> };
    };
    expect(run.code).toBe(1);
    // npm narrows the range to the versions the packument lists: every served version is affected
    expect(report.vulnerabilities.alpha).toMatchObject({ severity: "high", range: "*" });
    expect(report.vulnerabilities.alpha!.via[0]).toMatchObject({
      source: "GHSA-abcd-efgh-ijkl",
      name: "alpha",
      title: "Command injection in alpha",
      url: "https://github.com/advisories/GHSA-abcd-efgh-ijkl",
      severity: "high",
      cwe: ["CWE-78"],
      range: "<1.0.1",
    });
    expect(report.metadata.vulnerabilities.high).toBe(1);
    show("npm audit --json (excerpt)", JSON.stringify(report.vulnerabilities.alpha, null, 2));
  });
});
