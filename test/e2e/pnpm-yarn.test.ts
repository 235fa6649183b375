/**
 * End to end with pnpm 10 and yarn 1 (classic), the versions pinned in devDependencies, against the
 * gate (see test/support/gate.ts: loopback only, a temporary HOME, a dead proxy for anything else).
 * Both read the project's `.npmrc` (registry and `//host/npm/:_authToken=`), as docs/registry.md says.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientEnv, expectInstalledExactly, seedStandardPackages, startGate, type Gate } from "../support/gate.ts";

const BIN = resolve(import.meta.dirname, "../../node_modules/.bin");

let gate: Gate;

interface Run {
  code: number;
  out: string;
}

function run(tool: "pnpm" | "yarn", cwd: string, args: string[], extra: Record<string, string> = {}): Promise<Run> {
  const env = clientEnv(gate.work, extra);
  return new Promise((done) => {
    execFile(join(BIN, tool), args, { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      const out = `${String(stdout)}\n${String(stderr)}`;
      if (process.env.SPM_E2E_VERBOSE === "1") process.stdout.write(`\n--- ${tool} ${args.join(" ")} (exit ${code}) ---\n${out}\n`);
      done({ code, out });
    });
  });
}

/** pnpm with its store and metadata cache under `gate.work` (`cache`: their name, for a run that must not reuse another's). */
const pnpm = (cwd: string, args: string[], cache = "pnpm") =>
  run("pnpm", cwd, [...args, "--store-dir", join(gate.work, `${cache}-store`), "--config.confirmModulesPurge=false"], {
    npm_config_cache: join(gate.work, `${cache}-cache`),
  });

// yarn 1 has no `noproxy`: it would send the loopback gate's (http) requests to the dead proxy too. Only
// https goes to the dead proxy here (the public registries are https-only).
const yarn = (cwd: string, args: string[]) =>
  run("yarn", cwd, [...args, "--non-interactive", "--no-progress", "--cache-folder", join(gate.work, "yarn-cache"), "--ignore-scripts"], {
    YARN_DISABLE_SELF_UPDATE_CHECK: "true",
    npm_config_proxy: "",
  });

beforeAll(async () => {
  gate = await startGate("spm-e2e-pnpm-yarn-");
  await seedStandardPackages(gate);
}, 120_000);

afterAll(async () => {
  await gate?.close();
});

/** Yarn 1 sends the `.npmrc` token only with `always-auth` (otherwise only for scoped packages). */
const YARN_NPMRC = ["always-auth=true"];

const pkg = (name: string, dependencies: Record<string, string> = {}) => ({ name, version: "1.0.0", private: true, dependencies });

describe("pnpm against the gate", () => {
  it("pnpm add resolves through the packuments, skips a rejected version, and installs the bytes the gate vetted", async () => {
    const dir = gate.project("pnpm-add", { "package.json": pkg("p1") });
    const r = await pnpm(dir, ["add", "alpha", "gamma", "--ignore-scripts"]);
    expect(r.code, r.out).toBe(0);
    // pnpm links a package's own dependencies' bins inside it (node_modules/.bin)
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0", ["node_modules/.bin/alpha"]);
    expectInstalledExactly(gate, join(dir, "node_modules", ".pnpm", "@acme+beta@2.0.0", "node_modules", "@acme", "beta"), "@acme/beta@2.0.0");
    // gamma@2.0.0 is rejected: the range resolves to the approved 1.0.0
    expectInstalledExactly(gate, join(dir, "node_modules", "gamma"), "gamma@1.0.0");
    const lock = readFileSync(join(dir, "pnpm-lock.yaml"), "utf8");
    expect(lock).toContain(gate.seeded.get("alpha@1.0.0")!.integrity);
    expect(lock).toMatch(/gamma@1\.0\.0/);
    expect(lock).not.toMatch(/gamma@2\.0\.0/);
  });

  it("pnpm install --frozen-lockfile installs a lockfile from the gate", async () => {
    const first = gate.project("pnpm-lock-src", { "package.json": pkg("p2", { alpha: "^1.0.0" }) });
    expect((await pnpm(first, ["install", "--ignore-scripts"])).code).toBe(0);
    const dir = gate.project("pnpm-frozen", {
      "package.json": pkg("p2", { alpha: "^1.0.0" }),
      "pnpm-lock.yaml": readFileSync(join(first, "pnpm-lock.yaml"), "utf8"),
    });
    const r = await pnpm(dir, ["install", "--frozen-lockfile", "--ignore-scripts"], "pnpm-frozen");
    expect(r.code, r.out).toBe(0);
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0", ["node_modules/.bin/alpha"]);
  });

  it("pnpm add of a rejected version finds no such version (pnpm does not read policyRestrictions)", async () => {
    const dir = gate.project("pnpm-rejected", { "package.json": pkg("p3") });
    const r = await pnpm(dir, ["add", "gamma@2.0.0", "--ignore-scripts"]);
    expect(r.code).not.toBe(0);
    expect(existsSync(join(dir, "node_modules", "gamma"))).toBe(false);
    expect(r.out).toContain("No matching version found for gamma@2.0.0");
    expect(r.out).toContain('The latest release of gamma is "1.0.0"');
  });

  it("pnpm install --frozen-lockfile of a lockfile pinning a rejected version fails on the tarball", async () => {
    const first = gate.project("pnpm-lock-gamma", { "package.json": pkg("p5", { gamma: "1.0.0" }) });
    expect((await pnpm(first, ["install", "--ignore-scripts"])).code).toBe(0);
    // the same lockfile, edited to pin the rejected 2.0.0 (as if it had been written before the rejection)
    const g1 = gate.seeded.get("gamma@1.0.0")!;
    const g2 = gate.seeded.get("gamma@2.0.0")!;
    const lock = readFileSync(join(first, "pnpm-lock.yaml"), "utf8").replaceAll("1.0.0", "2.0.0").replace(g1.integrity, g2.integrity);
    const dir = gate.project("pnpm-frozen-rejected", { "package.json": pkg("p5", { gamma: "2.0.0" }), "pnpm-lock.yaml": lock });
    const r = await pnpm(dir, ["install", "--frozen-lockfile", "--ignore-scripts"]);
    expect(r.code).not.toBe(0);
    expect(existsSync(join(dir, "node_modules", "gamma"))).toBe(false);
    expect(r.out).toMatch(/403/);
  });

  it("pnpm without a token is refused", async () => {
    const dir = gate.project("pnpm-no-token", { "package.json": pkg("p4") }, null);
    // a store and cache of its own: pnpm installs what it already has from them without asking
    const r = await pnpm(dir, ["add", "gamma", "--ignore-scripts"], "pnpm-no-token");
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("ERR_PNPM_FETCH_401");
    expect(existsSync(join(dir, "node_modules", "gamma"))).toBe(false);
  });
});

describe("yarn 1 (classic) against the gate", () => {
  it("yarn add resolves through the packuments, skips a rejected version, and locks the gate's tarball URLs", async () => {
    const dir = gate.project("yarn-add", { "package.json": pkg("y1") }, undefined, YARN_NPMRC);
    const r = await yarn(dir, ["add", "alpha", "gamma"]);
    expect(r.code, r.out).toBe(0);
    const ignore = [".yarn-metadata.json", ".yarn-tarball.tgz"];
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0", ignore);
    expectInstalledExactly(gate, join(dir, "node_modules", "@acme", "beta"), "@acme/beta@2.0.0", ignore);
    expectInstalledExactly(gate, join(dir, "node_modules", "gamma"), "gamma@1.0.0", ignore);
    const lock = readFileSync(join(dir, "yarn.lock"), "utf8");
    expect(lock).toContain(`resolved "${gate.tgz("alpha", "1.0.0")}`);
    expect(lock).toContain(`resolved "${gate.tgz("@acme/beta", "2.0.0")}`);
    expect(lock).not.toMatch(/gamma-2\.0\.0/);
  });

  it("yarn install --frozen-lockfile installs the lockfile from the gate", async () => {
    const first = gate.project("yarn-lock-src", { "package.json": pkg("y2", { alpha: "^1.0.0" }) }, undefined, YARN_NPMRC);
    expect((await yarn(first, ["install"])).code).toBe(0);
    const dir = gate.project(
      "yarn-frozen",
      { "package.json": pkg("y2", { alpha: "^1.0.0" }), "yarn.lock": readFileSync(join(first, "yarn.lock"), "utf8") },
      undefined,
      YARN_NPMRC,
    );
    const r = await yarn(dir, ["install", "--frozen-lockfile", "--cache-folder", join(gate.work, "yarn-cache-2")]);
    expect(r.code, r.out).toBe(0);
    expectInstalledExactly(gate, join(dir, "node_modules", "alpha"), "alpha@1.0.0", [".yarn-metadata.json", ".yarn-tarball.tgz"]);
  });

  it("yarn add of a rejected version finds no such version (yarn does not read policyRestrictions)", async () => {
    const dir = gate.project("yarn-rejected", { "package.json": pkg("y3") }, undefined, YARN_NPMRC);
    const r = await yarn(dir, ["add", "gamma@2.0.0"]);
    expect(r.code).not.toBe(0);
    expect(existsSync(join(dir, "node_modules", "gamma"))).toBe(false);
    expect(r.out).toContain(`Couldn't find any versions for "gamma" that matches "2.0.0"`);
  });

  it("yarn install --frozen-lockfile of a lockfile pinning a rejected version fails on the tarball (403)", async () => {
    const first = gate.project("yarn-lock-gamma", { "package.json": pkg("y4", { gamma: "1.0.0" }) }, undefined, YARN_NPMRC);
    expect((await yarn(first, ["install"])).code).toBe(0);
    const g1 = gate.seeded.get("gamma@1.0.0")!;
    const g2 = gate.seeded.get("gamma@2.0.0")!;
    const lock = readFileSync(join(first, "yarn.lock"), "utf8").replaceAll("1.0.0", "2.0.0").replace(g1.integrity, g2.integrity);
    const dir = gate.project("yarn-frozen-rejected", { "package.json": pkg("y4", { gamma: "2.0.0" }), "yarn.lock": lock }, undefined, YARN_NPMRC);
    const r = await yarn(dir, ["install", "--frozen-lockfile"]);
    expect(r.code).not.toBe(0);
    expect(existsSync(join(dir, "node_modules", "gamma"))).toBe(false);
    expect(r.out).toMatch(/403/);
  });
});
