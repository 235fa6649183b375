import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import ssri from "ssri";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFixtureRegistry, type FixtureRegistry } from "./support/fixture-registry.ts";

const ABBREVIATED = "application/vnd.npm.install-v1+json";

type Json = Record<string, any>;

let reg: FixtureRegistry;

beforeEach(async () => {
  reg = await startFixtureRegistry();
});

afterEach(async () => {
  await reg.close();
});

async function getJson(path: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; body: Json }> {
  const res = await fetch(new URL(path, reg.url), { headers });
  return { status: res.status, type: res.headers.get("content-type"), body: (await res.json()) as Json };
}

/** The file names inside a gzipped tar (ustar names only, enough for these fixtures). */
function tarNames(tgz: Buffer): string[] {
  const tar = gunzipSync(tgz);
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    names.push(header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, ""));
    const size = parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, "").trim() || "0", 8);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

function tarFile(tgz: Buffer, name: string): string | undefined {
  const tar = gunzipSync(tgz);
  for (let off = 0; off + 512 <= tar.length; ) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const entry = header.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(header.subarray(124, 136).toString("utf8").replace(/\0.*$/s, "").trim() || "0", 8);
    if (entry === name) return tar.subarray(off + 512, off + 512 + size).toString("utf8");
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return undefined;
}

describe("fixture registry", () => {
  it("listens on 127.0.0.1 with a trailing-slash url", () => {
    expect(reg.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  });

  it("serves a full packument like registry.npmjs.org", async () => {
    const published = new Date("2024-01-02T03:04:05.000Z");
    reg.addPackage("left-pad", [
      { version: "1.0.0", license: "MIT", publishedAt: new Date("2024-01-01T00:00:00.000Z") },
      { version: "1.1.0", license: { type: "ISC" }, publishedAt: published, manifest: { scripts: { test: "x" }, dependencies: { a: "^1.0.0" } } },
      { version: "2.0.0-beta.1", publishedAt: new Date("2024-02-01T00:00:00.000Z") },
    ]);
    const { status, type, body } = await getJson("/left-pad");
    expect(status).toBe(200);
    expect(type).toMatch(/^application\/json/);
    expect(body._id).toBe("left-pad");
    expect(body.name).toBe("left-pad");
    expect(body["dist-tags"]).toEqual({ latest: "1.1.0" });
    expect(Object.keys(body.versions)).toEqual(["1.0.0", "1.1.0", "2.0.0-beta.1"]);
    const v = body.versions["1.1.0"];
    expect(v).toMatchObject({ name: "left-pad", version: "1.1.0", license: { type: "ISC" }, scripts: { test: "x" }, dependencies: { a: "^1.0.0" } });
    expect(v.dist.tarball).toBe(`${reg.url}left-pad/-/left-pad-1.1.0.tgz`);
    expect(v.dist.integrity).toBe(reg.integrity("left-pad", "1.1.0"));
    expect(v.dist.shasum).toBe(createHash("sha1").update(reg.tarballBytes("left-pad", "1.1.0")).digest("hex"));
    expect(body.versions["1.0.0"].license).toBe("MIT");
    expect("license" in body.versions["2.0.0-beta.1"]).toBe(false);
    expect(body.time["1.1.0"]).toBe(published.toISOString());
    expect(body.time.created).toBe("2024-01-01T00:00:00.000Z");
    expect(body.time.modified).toBe("2024-02-01T00:00:00.000Z");
  });

  it("defaults time[version] to about 30 days ago", async () => {
    reg.addPackage("old", [{ version: "1.0.0" }]);
    const { body } = await getJson("/old");
    const age = Date.now() - Date.parse(body.time["1.0.0"]);
    expect(age).toBeGreaterThan(29.9 * 86_400_000);
    expect(age).toBeLessThan(30.1 * 86_400_000);
  });

  it("serves an abbreviated packument for the install Accept header", async () => {
    reg.addPackage("native", [
      { version: "1.0.0", license: "MIT", manifest: { scripts: { postinstall: "node evil.js" }, description: "d", dependencies: { b: "1" } } },
      { version: "1.0.1", manifest: { scripts: { test: "vitest" } } },
    ]);
    const { status, type, body } = await getJson("/native", { accept: `${ABBREVIATED}; q=1.0, application/json; q=0.8, */*` });
    expect(status).toBe(200);
    expect(type).toMatch(/json/);
    expect(body.time).toBeUndefined();
    expect(typeof body.modified).toBe("string");
    expect(body["dist-tags"]).toEqual({ latest: "1.0.1" });
    const v = body.versions["1.0.0"];
    expect(v.hasInstallScript).toBe(true);
    expect(v.dependencies).toEqual({ b: "1" });
    expect(v.description).toBeUndefined();
    expect(v.scripts).toBeUndefined();
    expect(v.dist.integrity).toBe(reg.integrity("native", "1.0.0"));
    expect(body.versions["1.0.1"].hasInstallScript).toBeUndefined();
  });

  it("serves scoped packages at /@scope%2fname and /@scope/name, with the basename tarball", async () => {
    reg.addPackage("@acme/widget", [{ version: "3.1.4", license: "Apache-2.0" }]);
    const encoded = await getJson("/@acme%2fwidget");
    const upper = await getJson("/@acme%2Fwidget");
    const plain = await getJson("/@acme/widget");
    for (const r of [encoded, upper, plain]) {
      expect(r.status).toBe(200);
      expect(r.body.name).toBe("@acme/widget");
    }
    const tarball = encoded.body.versions["3.1.4"].dist.tarball as string;
    expect(tarball).toBe(`${reg.url}@acme/widget/-/widget-3.1.4.tgz`);
    const res = await fetch(tarball);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(reg.tarballBytes("@acme/widget", "3.1.4"))).toBe(true);
    const enc = await fetch(`${reg.url}@acme%2fwidget/-/widget-3.1.4.tgz`);
    expect(enc.status).toBe(200);
    await enc.arrayBuffer();
  });

  it("serves tarball bytes that match integrity and contain package.json + files", async () => {
    reg.addPackage("pkg", [{ version: "1.0.0", license: "MIT", manifest: { main: "index.js" }, files: { "index.js": "module.exports = 1;\n" } }]);
    const res = await fetch(`${reg.url}pkg/-/pkg-1.0.0.tgz`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get("content-length")).toBe(String(bytes.length));
    expect(bytes.equals(reg.tarballBytes("pkg", "1.0.0"))).toBe(true);
    expect(ssri.checkData(bytes, reg.integrity("pkg", "1.0.0"))).toBeTruthy();
    expect(reg.integrity("pkg", "1.0.0")).toMatch(/^sha512-/);
    expect(tarNames(bytes)).toEqual(["package/package.json", "package/index.js"]);
    expect(JSON.parse(tarFile(bytes, "package/package.json") ?? "{}")).toEqual({ name: "pkg", version: "1.0.0", license: "MIT", main: "index.js" });
  });

  it("builds deterministic tarballs", async () => {
    const fixture = { version: "1.0.0", files: { "a.js": "a" } };
    reg.addPackage("det", [fixture]);
    const other = await startFixtureRegistry();
    try {
      other.addPackage("det", [fixture]);
      expect(other.tarballBytes("det", "1.0.0").equals(reg.tarballBytes("det", "1.0.0"))).toBe(true);
    } finally {
      await other.close();
    }
  });

  it("honours tarball, integrity, tarballUrl and omitIntegrity overrides", async () => {
    const hostile = Buffer.from("not a tarball");
    reg.addPackage("evil", [
      { version: "1.0.0", tarball: hostile },
      { version: "1.0.1", integrity: "sha512-AAAA" },
      { version: "1.0.2", tarballUrl: "http://attacker.invalid/evil.tgz" },
      { version: "1.0.3", omitIntegrity: true },
    ]);
    const { body } = await getJson("/evil");
    expect(reg.tarballBytes("evil", "1.0.0").equals(hostile)).toBe(true);
    expect(body.versions["1.0.0"].dist.integrity).toBe(ssri.fromData(hostile, { algorithms: ["sha512"] }).toString());
    expect(body.versions["1.0.1"].dist.integrity).toBe("sha512-AAAA");
    expect(reg.integrity("evil", "1.0.1")).not.toBe("sha512-AAAA");
    expect(body.versions["1.0.2"].dist.tarball).toBe("http://attacker.invalid/evil.tgz");
    expect(body.versions["1.0.3"].dist.integrity).toBeUndefined();
    expect(body.versions["1.0.3"].dist.shasum).toMatch(/^[0-9a-f]{40}$/);
    const res = await fetch(`${reg.url}evil/-/evil-1.0.0.tgz`);
    expect(Buffer.from(await res.arrayBuffer()).equals(hostile)).toBe(true);
  });

  it("answers 404 for unknown packages and tarballs, and after removePackage", async () => {
    expect(await getJson("/nope")).toMatchObject({ status: 404, body: { error: "Not found" } });
    reg.addPackage("gone", [{ version: "1.0.0" }]);
    const missing = await fetch(`${reg.url}gone/-/gone-9.9.9.tgz`);
    expect(missing.status).toBe(404);
    await missing.arrayBuffer();
    expect((await getJson("/gone")).status).toBe(200);
    reg.removePackage("gone");
    expect((await getJson("/gone")).status).toBe(404);
    expect(() => reg.tarballBytes("gone", "1.0.0")).toThrow();
  });

  it("logs requests", async () => {
    reg.addPackage("logged", [{ version: "1.0.0" }]);
    await getJson("/logged");
    const res = await fetch(`${reg.url}logged/-/logged-1.0.0.tgz`);
    await res.arrayBuffer();
    expect(reg.requests.map((r) => `${r.method} ${r.url}`)).toEqual(["GET /logged", "GET /logged/-/logged-1.0.0.tgz"]);
    expect(reg.requests[0]?.at).toBeTypeOf("number");
  });

  describe("faults", () => {
    beforeEach(() => {
      reg.addPackage("flaky", [{ version: "1.0.0", files: { "big.txt": "x".repeat(10_000) } }]);
      reg.addPackage("steady", [{ version: "1.0.0" }]);
    });

    it("status N times, then success", async () => {
      reg.setFault({ name: "flaky", kind: "packument" }, { kind: "status", status: 503, times: 2 });
      expect((await getJson("/flaky")).status).toBe(503);
      expect((await getJson("/steady")).status).toBe(200); // other packages unaffected
      expect((await getJson("/flaky")).status).toBe(503);
      expect((await getJson("/flaky")).status).toBe(200);
      const tgz = await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`); // other kind unaffected
      expect(tgz.status).toBe(200);
      await tgz.arrayBuffer();
    });

    it("status forever until cleared", async () => {
      reg.setFault({}, { kind: "status", status: 500 });
      expect((await getJson("/flaky")).status).toBe(500);
      expect((await getJson("/steady")).status).toBe(500);
      reg.setFault({}, null);
      expect((await getJson("/flaky")).status).toBe(200);
    });

    it("reset destroys the socket without an answer", async () => {
      reg.setFault({ name: "flaky" }, { kind: "reset", times: 1 });
      await expect(fetch(`${reg.url}flaky`)).rejects.toThrow();
      expect((await getJson("/flaky")).status).toBe(200);
      expect(reg.requests.filter((r) => r.url === "/flaky")).toHaveLength(2); // no silent client retry
    });

    it("delay waits before answering", async () => {
      reg.setFault({ kind: "tarball" }, { kind: "delay", ms: 300, times: 1 });
      const started = Date.now();
      const res = await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`);
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(Date.now() - started).toBeGreaterThanOrEqual(280);
      expect(bytes.equals(reg.tarballBytes("flaky", "1.0.0"))).toBe(true);
      const again = Date.now();
      await (await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`)).arrayBuffer();
      expect(Date.now() - again).toBeLessThan(250);
    });

    it("delay can be cut short by a client timeout", async () => {
      reg.setFault({ name: "flaky" }, { kind: "delay", ms: 5_000 });
      await expect(fetch(`${reg.url}flaky`, { signal: AbortSignal.timeout(100) })).rejects.toThrow();
    });

    it("truncate sends the full Content-Length but only some bytes", async () => {
      reg.setFault({ name: "flaky", kind: "tarball" }, { kind: "truncate", bytes: 100 });
      const full = reg.tarballBytes("flaky", "1.0.0");
      expect(full.length).toBeGreaterThan(100);
      const res = await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe(String(full.length));
      await expect(res.arrayBuffer()).rejects.toThrow();
    });

    it("truncate with times recovers", async () => {
      reg.setFault({ name: "flaky", kind: "tarball" }, { kind: "truncate", bytes: 10, times: 1 });
      await expect((await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`)).arrayBuffer()).rejects.toThrow();
      const ok = Buffer.from(await (await fetch(`${reg.url}flaky/-/flaky-1.0.0.tgz`)).arrayBuffer());
      expect(ok.equals(reg.tarballBytes("flaky", "1.0.0"))).toBe(true);
    });

    it("slowBody drips the body", async () => {
      reg.setFault({ name: "steady", kind: "packument" }, { kind: "slowBody", bytesPerSecond: 1_000 });
      const started = Date.now();
      const res = await fetch(`${reg.url}steady`);
      const text = await res.text();
      const elapsed = Date.now() - started;
      expect(JSON.parse(text).name).toBe("steady");
      expect(elapsed).toBeGreaterThanOrEqual((text.length / 1_000) * 1000 * 0.7);
    });

    it("close() does not hang on a pending slow response", async () => {
      reg.setFault({}, { kind: "slowBody", bytesPerSecond: 1 });
      const res = await fetch(`${reg.url}steady`);
      const body = res.text().catch(() => "aborted");
      await reg.close();
      expect(await body).toBe("aborted");
      reg = await startFixtureRegistry(); // for afterEach
    });
  });
});
