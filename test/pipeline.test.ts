/**
 * End to end through the real pipeline: a lockfile is uploaded, an in-process worker vets every
 * package against a fixture upstream registry, and each ends in the right state with the right reason.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importAdvisories } from "../src/advisories/store.ts";
import { parseLockfile } from "../src/lockfile/parse.ts";
import { createRequest } from "../src/requests/create-request.ts";
import { decide } from "../src/queue/sql.ts";
import type { Worker } from "../worker/worker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startFixtureRegistry, type FixtureRegistry } from "./support/fixture-registry.ts";
import { lockfileV3, type LockEntry } from "./support/lockfile.ts";
import { buildTarball } from "./support/tar-builder.ts";
import { startWorker, waitSettled, workerEnv } from "./support/worker.ts";

let t: TestDatabase;
let upstream: FixtureRegistry;
let worker: Worker;

const day = 86_400_000;
const old = new Date(Date.now() - 30 * day);

function manifestJson(name: string, version: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ name, version, license: "MIT", ...extra });
}

async function* osv(docs: unknown[]) {
  for (const [i, doc] of docs.entries()) yield { source: `fixture-${i}.json`, doc };
}

function advisory(id: string, name: string, severity: string, events: Record<string, string>[]) {
  return {
    id,
    modified: new Date().toISOString(),
    summary: `${name} test advisory`,
    database_specific: { severity },
    affected: [{ package: { ecosystem: "npm", name }, ranges: [{ type: "SEMVER", events }] }],
  };
}

beforeAll(async () => {
  t = await createTestDatabase();
  upstream = await startFixtureRegistry();
  const mit = (version = "1.0.0") => ({ version, license: "MIT", publishedAt: old });
  upstream.addPackage("clean", [mit("1.0.0"), mit("1.1.0")]);
  upstream.addPackage("@scope/pkg", [mit()]);
  upstream.addPackage("gpl", [{ version: "1.0.0", license: "GPL-3.0", publishedAt: old }]);
  upstream.addPackage("dual", [{ version: "1.0.0", license: "(MIT OR GPL-3.0-only)", publishedAt: old }]);
  upstream.addPackage("legacy", [{ version: "1.0.0", licenses: [{ type: "MIT" }], publishedAt: old }]);
  upstream.addPackage("mpl", [{ version: "1.0.0", license: "MPL-2.0", publishedAt: old }]);
  upstream.addPackage("badhash", [{ ...mit(), integrity: `sha512-${randomBytes(64).toString("base64")}` }]);
  upstream.addPackage("lockmismatch", [mit()]);
  upstream.addPackage("traversal", [
    {
      ...mit(),
      tarball: buildTarball([
        { path: "package/package.json", body: manifestJson("traversal", "1.0.0") },
        { path: "package/../../etc/evil", body: "x" },
      ]),
    },
  ]);
  upstream.addPackage("symlink", [
    {
      ...mit(),
      tarball: buildTarball([
        { path: "package/package.json", body: manifestJson("symlink", "1.0.0") },
        { path: "package/index.js", body: "module.exports = 1;\n" },
        { path: "package/link.js", type: "symlink", linkpath: "index.js" },
      ]),
    },
  ]);
  upstream.addPackage("scripts", [{ ...mit(), manifest: { scripts: { postinstall: "node install.js" } }, files: { "install.js": "module.exports = 1;\n" } }]);
  const blob = randomBytes(3000).toString("base64");
  upstream.addPackage("obfuscated", [{ ...mit(), files: { "index.js": `eval(Buffer.from("${blob}", "base64").toString());\n` } }]);
  upstream.addPackage("mismatch", [{ ...mit(), files: { "package.json": manifestJson("something-else", "1.0.0") } }]);
  upstream.addPackage("fresh", [{ version: "1.0.0", license: "MIT", publishedAt: new Date(Date.now() - 3_600_000) }]);
  upstream.addPackage("noversion", [mit("1.0.0")]);
  upstream.addPackage("vuln-high", [mit()]);
  upstream.addPackage("vuln-crit", [mit()]);
  upstream.addPackage("evil", [mit()]);
  upstream.addPackage("flaky", [mit()]);
  upstream.setFault({ name: "flaky", kind: "packument" }, { kind: "status", status: 500, times: 2 });
  upstream.addPackage("elsewhere", [{ ...mit(), tarballUrl: "http://attacker.invalid/elsewhere-1.0.0.tgz" }]);

  await importAdvisories(
    t.db,
    osv([
      advisory("GHSA-high-0001", "vuln-high", "HIGH", [{ introduced: "0" }, { fixed: "1.0.1" }]),
      advisory("GHSA-crit-0001", "vuln-crit", "CRITICAL", [{ introduced: "0" }, { fixed: "2.0.0" }]),
      advisory("GHSA-none-0001", "clean", "CRITICAL", [{ introduced: "0" }, { fixed: "0.9.0" }]),
      { ...advisory("MAL-2026-0001", "evil", "CRITICAL", [{ introduced: "0" }]), summary: "Malicious code in evil" },
    ]),
    "test",
  );

  const entry = (name: string, version = "1.0.0"): LockEntry => {
    let integrity: string | null = null;
    try {
      integrity = upstream.integrity(name, version);
    } catch {
      integrity = null;
    }
    return { name, version, integrity, resolved: `${upstream.url}${name}/-/${name.split("/").pop()}-${version}.tgz` };
  };
  const entries: LockEntry[] = [
    entry("clean"),
    entry("clean", "1.1.0"),
    entry("@scope/pkg"),
    entry("gpl"),
    entry("dual"),
    entry("legacy"),
    entry("mpl"),
    entry("badhash"),
    { ...entry("lockmismatch"), integrity: `sha512-${randomBytes(64).toString("base64")}` },
    entry("traversal"),
    entry("symlink"),
    entry("scripts"),
    entry("obfuscated"),
    entry("mismatch"),
    entry("fresh"),
    { name: "missing", version: "1.0.0" },
    { name: "noversion", version: "2.0.0" },
    entry("vuln-high"),
    entry("vuln-crit"),
    entry("evil"),
    entry("flaky"),
    entry("elsewhere"),
  ];
  // "clean@1.1.0" sits at a nested path so that two versions of one name coexist.
  const lock = JSON.parse(lockfileV3(entries.filter((e) => !(e.name === "clean" && e.version === "1.1.0")))) as {
    packages: Record<string, unknown>;
  };
  const c11 = entries[1]!;
  lock.packages["node_modules/dual/node_modules/clean"] = { version: "1.1.0", integrity: c11.integrity, resolved: c11.resolved };
  const raw = Buffer.from(JSON.stringify(lock));
  await createRequest(t.db, { parsed: parseLockfile(raw), raw, fileName: "package-lock.json", user: { id: null, username: "tester" } });

  ({ worker } = startWorker(t.url, workerEnv({ UPSTREAM_REGISTRY: upstream.url, MAX_ATTEMPTS: "4" })));
  await worker.start();
  await waitSettled(t.db, 60_000);
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await upstream?.close();
  await t?.drop();
});

async function outcome(name: string, version = "1.0.0") {
  const p = await t.db.package.findUniqueOrThrow({ where: { name_version: { name, version } } });
  return { status: p.status, reason: p.reasonCode, message: p.reasonMessage ?? "", error: p.lastErrorCode, results: p.results as Record<string, any> };
}

describe("vetting pipeline end to end", () => {
  it.each([
    ["clean", "1.0.0"],
    ["clean", "1.1.0"],
    ["@scope/pkg", "1.0.0"],
    ["dual", "1.0.0"],
    ["legacy", "1.0.0"],
    ["flaky", "1.0.0"],
  ])("approves %s@%s by policy (allowed licence, clean scan, old enough)", async (name, version) => {
    const o = await outcome(name, version);
    expect(o.status).toBe("approved");
    expect(o.results.approval.by).toBe("policy");
    expect(o.results.download.integrity).toMatch(/^sha512-/);
  });

  it("records approval by policy as its own event after pending_approval", async () => {
    const p = await t.db.package.findUniqueOrThrow({ where: { name_version: { name: "clean", version: "1.0.0" } } });
    const events = await t.db.packageEvent.findMany({ where: { packageId: p.id }, orderBy: { id: "asc" } });
    // Claims write no event; each step's outcome is recorded from the active status it ran in.
    expect(events.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [null, "requested"],
      ["checking_licence", "licence_checked"],
      ["downloading", "downloaded"],
      ["scanning", "pending_approval"],
      ["pending_approval", "approved"],
    ]);
    expect(events.at(-1)!.actor).toBe("policy");
  });

  it.each([
    ["gpl", "licence_denied", /GPL-3\.0-only/],
    ["badhash", "integrity_mismatch", /packument dist\.integrity/],
    ["lockmismatch", "integrity_mismatch", /lockfile/],
    ["traversal", "unsafe_tarball", /\.\./],
    ["mismatch", "manifest_mismatch", /something-else/],
    ["vuln-crit", "critical_vulnerability", /GHSA-crit-0001 \(critical\).*fixed in 2\.0\.0/],
    ["evil", "malicious", /MAL-2026-0001/],
  ])("rejects %s with %s", async (name, code, message) => {
    const o = await outcome(name);
    expect(o.status).toBe("rejected");
    expect(o.reason).toBe(code);
    expect(o.message).toMatch(message);
  });

  it.each([
    ["mpl", /licence needs review.*MPL-2\.0/],
    ["symlink", /symlinks/],
    ["scripts", /install scripts/],
    ["obfuscated", /obfuscated code/],
    ["fresh", /published 1 h ago; minimum release age is 72 h/],
    ["vuln-high", /GHSA-high-0001 \(high\)/],
  ])("holds %s for review with the reason", async (name, reason) => {
    const o = await outcome(name);
    expect(o.status).toBe("pending_approval");
    expect(o.reason).toBe("needs_review");
    expect(o.message).toMatch(reason);
  });

  it.each([
    ["missing", "1.0.0", "package_not_found"],
    ["noversion", "2.0.0", "version_not_found"],
    ["elsewhere", "1.0.0", "tarball_url_rejected"],
  ])("fails %s@%s permanently with %s", async (name, version, code) => {
    const o = await outcome(name, version);
    expect(o.status).toBe("failed");
    expect(o.error).toBe(code);
  });

  it("retried the flapping upstream and fetched each packument once per name (cache)", async () => {
    const flaky = upstream.requests.filter((r) => r.url === "/flaky");
    expect(flaky.length).toBe(3);
    const clean = upstream.requests.filter((r) => r.url === "/clean");
    expect(clean.length).toBe(1);
  });

  it("never fetched from the attacker's host and stored every approved tarball once", async () => {
    const o = await outcome("elsewhere");
    expect(o.results.download).toBeUndefined();
    const tarballs = upstream.requests.filter((r) => r.url.startsWith("/clean/-/"));
    expect(tarballs.length).toBe(2);
  });

  it("an admin override of a rejection made before download resumes the pipeline instead of approving unverified bytes", async () => {
    const gpl = await t.db.package.findUniqueOrThrow({ where: { name_version: { name: "gpl", version: "1.0.0" } } });
    const [moved] = await decide(t.db, {
      ids: [gpl.id],
      to: "approved",
      from: ["rejected"],
      actor: "user:admin1",
      comment: "legal cleared GPL for this internal tool",
      reasonCode: null,
      reasonMessage: null,
    });
    expect(moved!.to_status).toBe("licence_checked");
    await waitSettled(t.db, 30_000);
    const o = await outcome("gpl");
    expect(o.status).toBe("approved");
    expect(o.results.download.storageKey).toMatch(/^[0-9a-f]{128}$/);
    const last = await t.db.packageEvent.findFirstOrThrow({ where: { packageId: gpl.id }, orderBy: { id: "desc" } });
    expect(last.actor).toBe("user:admin1");
    expect(last.reason).toMatch(/override of licence_denied: legal cleared/);
  });
});
