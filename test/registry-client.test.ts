/**
 * The worker's upstream client: packuments are fetched once per name at a time and kept as compact
 * records (only what the pipeline's steps read) in an LRU bounded by estimated bytes; an oversized
 * packument is used once and not kept, and a response over the hard size limit is refused.
 * Against the fixture upstream (and a bare node:http server for a body without Content-Length); no internet.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installManifest, upstreamFacts, versionManifest } from "../src/pipeline/upstream-facts.ts";
import { StepError } from "../src/pipeline/step.ts";
import { declaredLicence } from "../src/policy/licence-declared.ts";
import { CircuitBreaker } from "../src/upstream/circuit-breaker.ts";
import { RegistryClient, type Packument, type RegistryClientOptions } from "../src/upstream/registry-client.ts";
import { startFixtureRegistry, type FixtureRegistry, type FixtureVersion } from "./support/fixture-registry.ts";

let upstream: FixtureRegistry;
const old = new Date("2024-01-02T03:04:05.000Z");

beforeAll(async () => {
  upstream = await startFixtureRegistry();
});

afterAll(async () => {
  await upstream.close();
});

function client(opts: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({ registry: upstream.url, timeoutMs: 5_000, cacheSeconds: 300, breaker: new CircuitBreaker(5, 30), ...opts });
}

/** Upstream GETs of `name`'s packument so far. */
function fetches(name: string): number {
  const path = `/${name.startsWith("@") ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name)}`;
  return upstream.requests.filter((r) => r.url === path).length;
}

async function fullDocument(name: string): Promise<Packument> {
  const res = await fetch(new URL(name.replace("/", "%2f"), upstream.url), { headers: { accept: "application/json" } });
  return (await res.json()) as Packument;
}

/** Same-sized packuments for names of the same length: one version, the same manifest. */
function addSmall(name: string): void {
  upstream.addPackage(name, [{ version: "1.0.0", license: "MIT", publishedAt: old }]);
}

async function stepError(promise: Promise<unknown>): Promise<StepError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StepError);
  return err as StepError;
}

describe("compact packuments", () => {
  const name = "@fx/everything";
  const versions: FixtureVersion[] = [
    {
      version: "1.0.0",
      license: "MIT",
      publishedAt: old,
      manifest: {
        description: "does everything",
        readme: "# everything\n".repeat(200),
        readmeFilename: "README.md",
        scripts: { postinstall: "node install.js", test: "vitest" },
        devDependencies: { vitest: "^4.0.0", typescript: "^5.9.0" },
        dependencies: { a: "^1.0.0" },
        optionalDependencies: { b: "^2.0.0" },
        peerDependencies: { react: ">=18" },
        peerDependenciesMeta: { react: { optional: true } },
        bundleDependencies: ["a"],
        bin: { everything: "./bin.js" },
        directories: { lib: "lib" },
        engines: { node: ">=20" },
        os: ["linux"],
        cpu: ["x64"],
        libc: ["glibc"],
        funding: { type: "github", url: "https://github.com/sponsors/fx" },
        hasInstallScript: true,
        gypfile: true,
        _hasShrinkwrap: false,
        maintainers: [{ name: "fx", email: "fx@example.com" }],
        repository: { type: "git", url: "git+https://example.com/fx.git" },
        keywords: ["all", "of", "it"],
        _npmUser: { name: "fx", email: "fx@example.com" },
        gitHead: "0123456789abcdef0123456789abcdef01234567",
      },
    },
    { version: "1.1.0", licenses: [{ type: "MIT" }, { type: "Apache-2.0" }], publishedAt: old, manifest: { deprecated: "use 2.x" } },
    { version: "1.2.0", publishedAt: old, manifest: { licence: { type: "ISC" } }, omitIntegrity: true },
    { version: "1.3.0", publishedAt: old, manifest: { licences: [{ type: "BSD-3-Clause" }] } },
    { version: "2.0.0-beta.1", license: "(MIT OR GPL-3.0-only)", publishedAt: new Date(), manifest: { bundledDependencies: ["c"] } },
  ];

  beforeAll(() => upstream.addPackage(name, versions));

  it("keep every field the steps read: each step gets the same from the compact record as from the full document", async () => {
    const registry = client();
    const compact = await registry.packument(name);
    const full = await fullDocument(name);
    for (const { version } of versions) {
      const a = versionManifest(compact, name, version);
      const b = versionManifest(full, name, version);
      expect(upstreamFacts(compact, a, version), version).toEqual(upstreamFacts(full, b, version));
      expect(declaredLicence(a), version).toBe(declaredLicence(b));
      expect(declaredLicence(a), version).not.toBeNull();
      expect(installManifest(a), version).toEqual(installManifest(b));
    }
    // A missing version fails alike (the message counts the versions there are).
    const missing = (p: Packument) => stepError(Promise.resolve().then(() => versionManifest(p, name, "9.9.9")));
    const [m1, m2] = await Promise.all([missing(compact), missing(full)]);
    expect(m1.code).toBe("version_not_found");
    expect(m1.message).toBe(m2.message);
  });

  it("and drop what no step reads", async () => {
    const compact = await client().packument(name);
    const v = compact.versions?.["1.0.0"] ?? {};
    for (const field of ["readme", "readmeFilename", "scripts", "devDependencies", "maintainers", "repository", "keywords", "_npmUser", "gitHead", "_id"]) {
      expect(v, field).not.toHaveProperty(field);
    }
    expect(Object.keys(v.dist as object).sort()).toEqual(["integrity", "shasum", "tarball"]);
    expect(compact).not.toHaveProperty("dist-tags");
    expect(Object.keys(compact.time ?? {}).sort()).toEqual(versions.map((x) => x.version).sort()); // no created/modified
    // Much smaller than what came over the wire.
    const wire = JSON.stringify(await fullDocument(name)).length;
    expect(JSON.stringify(compact).length).toBeLessThan(wire / 2);
  });
});

describe("packument cache", () => {
  it("fetches a name once while it is cached, and once for concurrent callers", async () => {
    addSmall("once-a");
    const registry = client();
    const [x, y] = await Promise.all([registry.packument("once-a"), registry.packument("once-a")]);
    expect(x).toBe(y);
    await registry.packument("once-a");
    expect(fetches("once-a")).toBe(1);
    expect(registry.cacheStats.entries).toBe(1);
    expect(registry.cacheStats.bytes).toBe(JSON.stringify(x).length);
  });

  it("evicts the least recently used name and never holds more than its byte budget", async () => {
    for (const n of ["lru-a", "lru-b", "lru-c", "lru-d"]) addSmall(n);
    const probe = client();
    await probe.packument("lru-a");
    const size = probe.cacheStats.bytes;
    expect(size).toBeGreaterThan(0);

    const budget = Math.floor(3.5 * size); // room for three
    const registry = client({ cacheBytes: budget });
    const get = async (n: string) => {
      await registry.packument(n);
      expect(registry.cacheStats.bytes).toBeLessThanOrEqual(budget);
    };
    const base = { a: fetches("lru-a"), b: fetches("lru-b"), c: fetches("lru-c"), d: fetches("lru-d") };
    await get("lru-a");
    await get("lru-b");
    await get("lru-c");
    expect(registry.cacheStats).toEqual({ entries: 3, bytes: 3 * size, budget });
    await get("lru-a"); // a is now the most recently used: b the least
    await get("lru-d"); // evicts b
    expect(registry.cacheStats).toEqual({ entries: 3, bytes: 3 * size, budget });
    await get("lru-a");
    await get("lru-c");
    await get("lru-d");
    expect({ a: fetches("lru-a") - base.a, c: fetches("lru-c") - base.c, d: fetches("lru-d") - base.d }).toEqual({ a: 1, c: 1, d: 1 });
    await get("lru-b"); // fetched again
    expect(fetches("lru-b") - base.b).toBe(2);
  });

  it("stays within its budget under many names of different sizes", async () => {
    const names = Array.from({ length: 30 }, (_, i) => `mix-${i}`);
    names.forEach((n, i) =>
      upstream.addPackage(
        n,
        Array.from({ length: 1 + (i % 7) }, (_, j) => ({ version: `1.${j}.0`, license: "MIT", publishedAt: old, manifest: { description: "d".repeat(i * 40) } })),
      ),
    );
    const budget = 6_000;
    const registry = client({ cacheBytes: budget });
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 200; i++) {
      await registry.packument(names[Math.floor(random() * names.length)]!);
      const { bytes, entries } = registry.cacheStats;
      expect(bytes).toBeLessThanOrEqual(budget);
      expect(entries).toBeGreaterThan(0);
    }
  });

  it("uses a packument larger than the whole budget once, and keeps what it had", async () => {
    addSmall("keep-me");
    upstream.addPackage("too-big", [{ version: "1.0.0", license: "MIT", publishedAt: old, manifest: { description: "x".repeat(5_000) } }]);
    const registry = client({ cacheBytes: 2_000 });
    await registry.packument("keep-me");
    const before = registry.cacheStats;
    expect(before.entries).toBe(1);
    const base = fetches("too-big");
    const first = await registry.packument("too-big");
    expect(first.versions?.["1.0.0"]?.description).toBe("x".repeat(5_000));
    expect(registry.cacheStats).toEqual(before);
    await registry.packument("too-big");
    expect(fetches("too-big") - base).toBe(2);
    const kept = fetches("keep-me");
    await registry.packument("keep-me");
    expect(fetches("keep-me")).toBe(kept);
  });

  it("keeps a packument for cacheSeconds after its fetch started (0: not at all)", async () => {
    addSmall("ttl-a");
    const registry = client({ cacheSeconds: 0.2 });
    const base = fetches("ttl-a");
    await registry.packument("ttl-a");
    await registry.packument("ttl-a");
    expect(fetches("ttl-a") - base).toBe(1);
    await new Promise((r) => setTimeout(r, 250));
    await registry.packument("ttl-a");
    expect(fetches("ttl-a") - base).toBe(2);

    const uncached = client({ cacheSeconds: 0 });
    await uncached.packument("ttl-a");
    await uncached.packument("ttl-a");
    expect(fetches("ttl-a") - base).toBe(4);
    expect(uncached.cacheStats.entries).toBe(0);
  });

  it("does not keep a failure", async () => {
    addSmall("fail-once");
    upstream.setFault({ name: "fail-once", kind: "packument" }, { kind: "status", status: 503, times: 1 });
    const registry = client();
    expect((await stepError(registry.packument("fail-once"))).code).toBe("upstream_error");
    expect(registry.cacheStats.entries).toBe(0);
    const p = await registry.packument("fail-once");
    expect(p.versions?.["1.0.0"]).toBeDefined();
    expect(fetches("fail-once")).toBe(2);
  });
});

describe("shared packument fetch", () => {
  it("survives a caller giving up: the others still get the packument, and the upstream is not blamed", async () => {
    addSmall("share-a");
    upstream.setFault({ name: "share-a", kind: "packument" }, { kind: "delay", ms: 300, times: 1 });
    const registry = client();
    const quitter = new AbortController();
    const first = registry.packument("share-a", quitter.signal);
    const second = registry.packument("share-a", new AbortController().signal);
    const third = registry.packument("share-a");
    setTimeout(() => quitter.abort(new Error("lease lost")), 50);
    expect((await stepError(first)).message).toBe("aborted");
    const [b, c] = await Promise.all([second, third]);
    expect(b.name).toBe("share-a");
    expect(c).toBe(b);
    expect(fetches("share-a")).toBe(1);
    expect(registry.breaker.consecutiveFailures).toBe(0);
  });

  it("is aborted when every caller has given up; the next caller starts a new one", async () => {
    addSmall("share-b");
    upstream.setFault({ name: "share-b", kind: "packument" }, { kind: "delay", ms: 2_000, times: 1 });
    const registry = client();
    const callers = [new AbortController(), new AbortController()];
    const waits = callers.map((c) => registry.packument("share-b", c.signal));
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    for (const c of callers) c.abort(new Error("shutting down"));
    for (const w of waits) expect((await stepError(w)).code).toBe("step_error");
    expect(Date.now() - t0).toBeLessThan(1_000); // no one waited for the upstream
    expect(registry.breaker.consecutiveFailures).toBe(0);
    const again = await registry.packument("share-b");
    expect(again.name).toBe("share-b");
    expect(fetches("share-b")).toBe(2);
  });

  it("refuses at once a caller whose signal is already aborted, without fetching", async () => {
    addSmall("share-c");
    const registry = client();
    const gone = new AbortController();
    gone.abort(new Error("gone"));
    expect((await stepError(registry.packument("share-c", gone.signal))).message).toBe("aborted");
    expect(fetches("share-c")).toBe(0);
  });

  it("lets the next trial through when a half-open trial's caller gives up", async () => {
    let now = 0;
    const breaker = new CircuitBreaker(1, 10, () => now);
    breaker.failure();
    now = 10_000;
    expect(breaker.allow()).toBe(true); // the trial
    expect(breaker.allow()).toBe(false);
    breaker.abandoned();
    expect(breaker.state).toBe("half_open");
    expect(breaker.allow()).toBe(true);
  });
});

describe("packument size limit", () => {
  it("refuses a response over maxPackumentBytes (Content-Length), permanently, without blaming the upstream", async () => {
    upstream.addPackage("huge-readme", [{ version: "1.0.0", license: "MIT", publishedAt: old, manifest: { readme: "r".repeat(20_000) } }]);
    const registry = client({ maxPackumentBytes: 10_000 });
    const err = await stepError(registry.packument("huge-readme"));
    expect(err.permanent).toBe(true);
    expect(err.code).toBe("upstream_error");
    expect(err.message).toMatch(/huge-readme is \d+ bytes, over the worker's limit \(10000\)/);
    expect(registry.breaker.consecutiveFailures).toBe(0);
    // Under the limit, the same document is fine (and compacts to far less than the limit).
    const p = await client({ maxPackumentBytes: 100_000 }).packument("huge-readme");
    expect(p.versions?.["1.0.0"]).not.toHaveProperty("readme");
  });

  describe("without Content-Length", () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      const body = JSON.stringify({ name: "chunked", versions: { "1.0.0": { name: "chunked", version: "1.0.0", readme: "r".repeat(50_000) } } });
      server = createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" }); // chunked transfer encoding
        for (let i = 0; i < body.length; i += 4_096) res.write(body.slice(i, i + 4_096));
        res.end();
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("stops reading once the limit is passed", async () => {
      const registry = client({ registry: url, maxPackumentBytes: 20_000 });
      const err = await stepError(registry.packument("chunked"));
      expect(err.permanent).toBe(true);
      expect(err.message).toMatch(/chunked is more than 20000 bytes/);
      expect(registry.breaker.consecutiveFailures).toBe(0);
      const ok = await client({ registry: url, maxPackumentBytes: 60_000 }).packument("chunked");
      expect(ok.versions?.["1.0.0"]).toEqual({ name: "chunked", version: "1.0.0" });
    });
  });
});
