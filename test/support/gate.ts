/**
 * The gate as package-manager clients see it, for the end-to-end client tests (test/e2e/): the API on
 * loopback against a test database and a temporary content store, a few seeded packages (approved and
 * rejected) whose tarballs are in the store, and project directories with a `.npmrc` that points at
 * `/npm/` with a token. Clients run with `clientEnv`: no inherited npm configuration, a temporary HOME,
 * and a dead proxy (127.0.0.1:9) for anything that is not loopback, so no test reaches the internet.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import { expect } from "vitest";
import type { PackageStatus } from "../../src/queue/states.ts";
import { ContentStore } from "../../src/store/content-store.ts";
import { buildTestApp, type TestApp } from "./app.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { packageTarball } from "./tar-builder.ts";

type Json = Record<string, unknown>;

export interface Seeded {
  manifest: Json;
  files: Record<string, string>;
  integrity: string;
  bytes: Buffer;
}

export interface SeedOptions {
  manifest?: Json;
  files?: Record<string, string>;
  reasonCode?: string;
  reasonMessage?: string;
}

export interface Gate {
  t: TestDatabase;
  ta: TestApp;
  /** `http://127.0.0.1:<port>/npm/` */
  registry: string;
  /** A temporary directory for projects, caches and HOME (removed by close). */
  work: string;
  /** name@version → what was seeded. */
  seeded: Map<string, Seeded>;
  seed(name: string, version: string, status: PackageStatus, extra?: SeedOptions): Promise<void>;
  /**
   * A project directory under `work` with a `.npmrc` for the gate (the user's token unless null, and
   * any `npmrc` lines given) and the given files.
   */
  project(name: string, files: Record<string, unknown>, token?: string | null, npmrc?: string[]): string;
  /** The gate's tarball URL of name@version. */
  tgz(name: string, version: string): string;
  close(): Promise<void>;
}

export async function startGate(prefix: string): Promise<Gate> {
  const t = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(work, "home"), { recursive: true });
  writeFileSync(join(work, "home", "global-npmrc"), "");
  const storageDir = join(work, "store");
  const store = new ContentStore(storageDir);
  const ta = await buildTestApp(t.db, { DATABASE_URL: t.url, STORAGE_DIR: storageDir });
  await ta.app.listen({ port: 0, host: "127.0.0.1" });
  const registry = `http://127.0.0.1:${(ta.app.server.address() as AddressInfo).port}/npm/`;
  const seeded = new Map<string, Seeded>();

  const seed = async (name: string, version: string, status: PackageStatus, extra: SeedOptions = {}) => {
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
    await t.db.$executeRaw`
      INSERT INTO package (name, version, status, results, reason_code, reason_message)
      VALUES (${name}, ${version}, ${status}::package_status, ${JSON.stringify(results)}::jsonb, ${extra.reasonCode ?? null}, ${extra.reasonMessage ?? null})`;
  };

  const project = (name: string, files: Record<string, unknown>, token: string | null = ta.tokens.user, extra: string[] = []) => {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    const host = new URL(registry);
    const npmrc = [`registry=${registry}`, ...(token ? [`//${host.host}${host.pathname}:_authToken=${token}`] : []), ...extra];
    writeFileSync(join(dir, ".npmrc"), npmrc.join("\n") + "\n");
    for (const [file, content] of Object.entries(files)) {
      writeFileSync(join(dir, file), typeof content === "string" ? content : JSON.stringify(content, null, 2) + "\n");
    }
    return dir;
  };

  return {
    t,
    ta,
    registry,
    work,
    seeded,
    seed,
    project,
    tgz: (name, version) => `${registry}${name}/-/${name.slice(name.lastIndexOf("/") + 1)}-${version}.tgz`,
    async close() {
      await ta.app.close();
      await t.drop();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/** The packages every client test installs: alpha (with a bin) → @acme/beta; gamma 1.0.0, and 2.0.0 and delta rejected. */
export const GAMMA_REJECTION = "gamma@2.0.0: GHSA-9999-8888-7777 (critical) remote code execution in gamma, fixed in 2.0.1";

export async function seedStandardPackages(gate: Gate): Promise<void> {
  await gate.seed("@acme/beta", "2.0.0", "approved", {
    files: { "index.js": "exports.beta = () => 'beta';\n", "lib/util.js": "exports.util = 1;\n", "README.md": "# beta\n" },
  });
  await gate.seed("alpha", "1.0.0", "approved", {
    manifest: { dependencies: { "@acme/beta": "^2.0.0" }, bin: { alpha: "bin/alpha.js" } },
    files: { "index.js": "module.exports = require('@acme/beta');\n", "bin/alpha.js": "#!/usr/bin/env node\nconsole.log('alpha');\n" },
  });
  await gate.seed("gamma", "1.0.0", "approved");
  await gate.seed("gamma", "2.0.0", "rejected", { reasonCode: "critical_vulnerability", reasonMessage: GAMMA_REJECTION });
  await gate.seed("delta", "1.0.0", "rejected", { reasonCode: "licence_denied", reasonMessage: "licence SSPL-1.0 is denied by policy" });
}

/**
 * The environment for a package-manager client: the test's environment without npm_* settings,
 * proxies or NODE_OPTIONS, a temporary HOME with empty user and global npmrc files, and every
 * non-loopback request sent to a dead proxy.
 */
export function clientEnv(work: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(npm|yarn|pnpm)_/i.test(k) && !/_proxy$/i.test(k) && k !== "NODE_OPTIONS") env[k] = v;
  }
  const home = join(work, "home");
  return {
    ...env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_CACHE_HOME: join(home, ".cache"),
    XDG_DATA_HOME: join(home, ".local", "share"),
    XDG_STATE_HOME: join(home, ".local", "state"),
    npm_config_userconfig: join(home, ".npmrc"),
    npm_config_globalconfig: join(home, "global-npmrc"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_proxy: "http://127.0.0.1:9",
    npm_config_https_proxy: "http://127.0.0.1:9",
    npm_config_noproxy: "127.0.0.1",
    npm_config_fetch_retries: "0",
    npm_config_loglevel: "warn",
    ...extra,
  };
}

/** Every regular file under `dir`, relative path → bytes. */
export function filesUnder(dir: string): Map<string, Buffer> {
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

/**
 * What a client must have extracted for a seeded package: package.json and its files, byte for byte
 * (`ignore`: files a client adds of its own, e.g. yarn's `.yarn-metadata.json`).
 */
export function expectInstalledExactly(gate: Gate, dir: string, id: string, ignore: string[] = []): void {
  const s = gate.seeded.get(id)!;
  const expected = new Map<string, Buffer>([["package.json", Buffer.from(JSON.stringify(s.manifest, null, 2) + "\n")]]);
  for (const [file, body] of Object.entries(s.files)) expected.set(file, Buffer.from(body));
  const actual = filesUnder(dir);
  for (const f of ignore) actual.delete(f);
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [file, body] of expected) expect(actual.get(file)!.equals(body), `${id}: ${file}`).toBe(true);
}
