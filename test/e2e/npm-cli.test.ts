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
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OsvSourceRecord } from "../../src/advisories/read-sources.ts";
import { importAdvisories } from "../../src/advisories/store.ts";
import { clientEnv, expectInstalledExactly, GAMMA_REJECTION, seedStandardPackages, startGate, type Gate } from "../support/gate.ts";

type Json = Record<string, unknown>;

let gate: Gate;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** npm with a clean environment (clientEnv): no inherited npm config, a temporary HOME, no way out of loopback. */
function npm(cwd: string, args: string[], opts: { audit?: boolean } = {}): Promise<Run> {
  const env = clientEnv(gate.work, { npm_config_cache: join(gate.work, "npm-cache"), npm_config_audit: opts.audit ? "true" : "false" });
  return new Promise((resolve) => {
    execFile("npm", [...args, `--registry=${gate.registry}`], { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** SPM_E2E_VERBOSE=1 prints what npm printed (the texts quoted in docs/registry.md). */
function show(label: string, text: string): void {
  if (process.env.SPM_E2E_VERBOSE === "1") process.stdout.write(`\n--- ${label} ---\n${text}\n`);
}

beforeAll(async () => {
  gate = await startGate("spm-e2e-npm-");
  await seedStandardPackages(gate);
  const db = gate.t.db;
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
  await gate?.close();
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
      integrity: gate.seeded.get("alpha@1.0.0")!.integrity,
      license: "MIT",
      dependencies: { "@acme/beta": "^2.0.0" },
      bin: { alpha: "bin/alpha.js" },
    },
    "node_modules/@acme/beta": {
      version: "2.0.0",
      resolved: `${registryUrl}@acme/beta/-/beta-2.0.0.tgz`,
      integrity: gate.seeded.get("@acme/beta@2.0.0")!.integrity,
      license: "MIT",
    },
  },
});

describe("npm CLI against the gate", () => {
  it("npm ci installs a lockfile's approved packages byte for byte", async () => {
    expect((await npm(gate.work, ["--version"])).stdout).toMatch(/^11\./);
    const dir = gate.project("ci", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile(gate.registry),
    });
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", join(gate.work, "cache-ci")]);
    expect(run.stderr).not.toMatch(/ERR!/);
    expect(run.code).toBe(0);
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0");
    expectInstalledExactly(gate, join(dir, "node_modules", "@acme", "beta"), "@acme/beta@2.0.0");
    expect(statSync(join(dir, "node_modules", ".bin", "alpha")).isFile()).toBe(true);
  });

  it("npm ci of an unchanged lockfile (resolved at registry.npmjs.org) fetches from the gate", async () => {
    const dir = gate.project("ci-npmjs", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile("https://registry.npmjs.org/"),
    });
    // npm's replace-registry-host (default "npmjs") swaps registry.npmjs.org for the configured registry
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.stderr).not.toMatch(/ERR!|error/);
    expect(run.code).toBe(0);
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0");
  });

  it("npm install without a lockfile resolves through the packuments (scoped included) and locks the gate's URLs", async () => {
    const dir = gate.project("install", { "package.json": { name: "proj2", version: "1.0.0", private: true } });
    const run = await npm(dir, ["install", "alpha", "gamma", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.stderr).not.toMatch(/ERR!/);
    expect(run.code).toBe(0);
    const lock = JSON.parse(readFileSync(join(dir, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string; resolved: string; integrity: string }> };
    expect(lock.packages["node_modules/alpha"]).toMatchObject({ version: "1.0.0", resolved: gate.tgz("alpha", "1.0.0"), integrity: gate.seeded.get("alpha@1.0.0")!.integrity });
    expect(lock.packages["node_modules/@acme/beta"]).toMatchObject({ version: "2.0.0", resolved: gate.tgz("@acme/beta", "2.0.0") });
    // gamma@2.0.0 is rejected: the range resolves to the approved 1.0.0
    expect(lock.packages["node_modules/gamma"]).toMatchObject({ version: "1.0.0", resolved: gate.tgz("gamma", "1.0.0") });
    expectInstalledExactly(gate, join(dir, "node_modules", "@acme", "beta"), "@acme/beta@2.0.0");
  });

  it("npm install of a rejected version fails with the gate's reason", async () => {
    const dir = gate.project("rejected", { "package.json": { name: "proj3", version: "1.0.0", private: true } });
    const run = await npm(dir, ["install", "gamma@2.0.0", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`gamma@2.0.0 is rejected: ${GAMMA_REJECTION.slice("gamma@2.0.0: ".length)}`);
    show("npm install gamma@2.0.0", run.stderr);

    const only = await npm(dir, ["install", "delta@1.0.0", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(only.code).not.toBe(0);
    expect(only.stderr).toContain("delta@1.0.0 is rejected: licence SSPL-1.0 is denied by policy");
    show("npm install delta@1.0.0", only.stderr);
  });

  it("npm install --dry-run of a rejected version prints the reason and writes nothing (how pnpm and yarn users ask why)", async () => {
    const dir = gate.project("dry-run", { "package.json": { name: "proj5", version: "1.0.0", private: true } });
    const run = await npm(dir, ["install", "gamma@2.0.0", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`gamma@2.0.0 is rejected: ${GAMMA_REJECTION.slice("gamma@2.0.0: ".length)}`);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);
    expect(existsSync(join(dir, "package-lock.json"))).toBe(false);
  });

  it("npm ci of a lockfile with a rejected version fails on the tarball with the reason", async () => {
    const lock = lockfile(gate.registry) as { packages: Record<string, Json> };
    lock.packages[""] = { name: "proj", version: "1.0.0", dependencies: { alpha: "^1.0.0", gamma: "^2.0.0" } };
    lock.packages["node_modules/gamma"] = { version: "2.0.0", resolved: gate.tgz("gamma", "2.0.0"), integrity: gate.seeded.get("gamma@2.0.0")!.integrity, license: "MIT" };
    const dir = gate.project("ci-rejected", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0", gamma: "^2.0.0" } },
      "package-lock.json": lock,
    });
    const run = await npm(dir, ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`403 Forbidden - GET ${gate.tgz("gamma", "2.0.0")} - gamma@2.0.0 is rejected: GHSA-9999-8888-7777 (critical)`);
    show("npm ci (gamma@2.0.0 locked)", run.stderr);
  });

  it("without a token npm is told how to set one", async () => {
    const dir = gate.project("no-token", { "package.json": { name: "proj4", version: "1.0.0", private: true } }, null);
    const run = await npm(dir, ["install", "gamma", "--ignore-scripts", "--no-audit", "--no-fund"]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain("authentication required: npm login is not supported; set //127.0.0.1:");
    show("npm install without a token", run.stderr);
    const who = await npm(gate.project("whoami", {}), ["whoami"]);
    expect(who.stdout.trim()).toBe("user1");
    const ping = await npm(dir, ["ping"]);
    expect(ping.code).toBe(0);
  });

  it("npm audit reports an imported advisory through the bulk endpoint", async () => {
    const dir = gate.project("audit", {
      "package.json": { name: "proj", version: "1.0.0", private: true, dependencies: { alpha: "^1.0.0" } },
      "package-lock.json": lockfile(gate.registry),
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
