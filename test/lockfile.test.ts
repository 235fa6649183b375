import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AppError, type ErrorCode } from "../src/errors.ts";
import { parseLockfile, type ParsedLockfile } from "../src/lockfile/parse.ts";

// ---------- helpers ----------

type Json = Record<string, unknown>;

/** A real-looking SRI string, distinct per seed. */
function sri(seed: string, algorithm: "sha1" | "sha512" = "sha512"): string {
  return `${algorithm}-${createHash(algorithm).update(seed).digest("base64")}`;
}

function tarball(name: string, version: string, registry = "https://registry.npmjs.org"): string {
  const base = name.slice(name.lastIndexOf("/") + 1);
  return `${registry}/${name}/-/${base}-${version}.tgz`;
}

/** A registry entry as npm 7+ writes it in `packages`. */
function reg(name: string, version: string, extra: Json = {}): Json {
  return { version, resolved: tarball(name, version), integrity: sri(`${name}@${version}`), ...extra };
}

function v3(packages: Json, extra: Json = {}): string {
  return JSON.stringify({
    name: "app",
    version: "1.0.0",
    lockfileVersion: 3,
    requires: true,
    packages: { "": { name: "app", version: "1.0.0" }, ...packages },
    ...extra,
  });
}

function v1(dependencies: Json, extra: Json = {}): string {
  return JSON.stringify({ name: "app", version: "1.0.0", lockfileVersion: 1, requires: true, dependencies, ...extra });
}

/** A registry entry as npm 5/6 writes it in the v1 tree. */
function dep(name: string, version: string, extra: Json = {}): Json {
  return { version, resolved: tarball(name, version), integrity: sri(`${name}@${version}`), ...extra };
}

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected an AppError, but nothing was thrown");
}

function expectError(input: Buffer | string, code: ErrorCode, messagePart?: string): AppError {
  const error = errorOf(() => parseLockfile(input));
  expect(error.code).toBe(code);
  if (messagePart !== undefined) expect(error.message).toContain(messagePart);
  return error;
}

function ids(parsed: ParsedLockfile): string[] {
  return parsed.packages.map((p) => `${p.name}@${p.version}`);
}

function find(parsed: ParsedLockfile, name: string, version: string) {
  const found = parsed.packages.find((p) => p.name === name && p.version === version);
  if (found === undefined) throw new Error(`${name}@${version} not in result: ${ids(parsed).join(", ")}`);
  return found;
}

function skippedAt(parsed: ParsedLockfile, entryPath: string): string {
  const found = parsed.skipped.find((s) => s.path === entryPath);
  if (found === undefined) throw new Error(`nothing skipped at ${entryPath}: ${JSON.stringify(parsed.skipped)}`);
  return found.reason;
}

// ---------- lockfileVersion 2 / 3 ----------

describe("lockfileVersion 3", () => {
  it("returns one registry package with its fields", () => {
    const parsed = parseLockfile(v3({ "node_modules/lodash": reg("lodash", "4.17.21", { license: "MIT", dev: true }) }));
    expect(parsed).toEqual({
      lockfileVersion: 3,
      packages: [
        {
          name: "lodash",
          version: "4.17.21",
          integrity: sri("lodash@4.17.21"),
          resolved: "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",
          paths: ["node_modules/lodash"],
        },
      ],
      skipped: [],
    });
  });

  it("derives scoped names from the last node_modules segment and keeps nested copies of other versions", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/zeta": reg("zeta", "1.0.0"),
        "node_modules/@types/node": reg("@types/node", "20.1.0"),
        "node_modules/a": reg("a", "2.0.0"),
        "node_modules/b": reg("b", "1.0.0"),
        "node_modules/b/node_modules/a": reg("a", "1.0.0"),
        "node_modules/b/node_modules/@types/node": reg("@types/node", "18.15.0"),
        "node_modules/b/node_modules/a/node_modules/@scope/deep": reg("@scope/deep", "0.1.0-beta.1"),
      }),
    );
    expect(ids(parsed)).toEqual([
      "@scope/deep@0.1.0-beta.1",
      "@types/node@18.15.0",
      "@types/node@20.1.0",
      "a@1.0.0",
      "a@2.0.0",
      "b@1.0.0",
      "zeta@1.0.0",
    ]);
    expect(find(parsed, "@types/node", "18.15.0").paths).toEqual(["node_modules/b/node_modules/@types/node"]);
    expect(find(parsed, "@scope/deep", "0.1.0-beta.1").paths).toEqual([
      "node_modules/b/node_modules/a/node_modules/@scope/deep",
    ]);
  });

  it("sorts versions by semver precedence, not as text", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/x": reg("x", "10.0.0"),
        "node_modules/a/node_modules/x": reg("x", "9.0.0"),
        "node_modules/b/node_modules/x": reg("x", "10.0.0-rc.1"),
        "node_modules/a": reg("a", "1.0.0"),
        "node_modules/b": reg("b", "1.0.0"),
      }),
    );
    expect(ids(parsed)).toEqual(["a@1.0.0", "b@1.0.0", "x@9.0.0", "x@10.0.0-rc.1", "x@10.0.0"]);
  });

  it("merges duplicates of one name@version, collecting every path", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/lodash": reg("lodash", "4.17.21"),
        "node_modules/p": reg("p", "1.0.0"),
        "node_modules/p/node_modules/lodash": reg("lodash", "4.17.21"),
        "node_modules/q/node_modules/lodash": { version: "4.17.21" }, // no integrity: merges
        "node_modules/q": reg("q", "1.0.0"),
      }),
    );
    expect(parsed.packages).toHaveLength(3);
    const lodash = find(parsed, "lodash", "4.17.21");
    expect(lodash.paths).toEqual(["node_modules/lodash", "node_modules/p/node_modules/lodash", "node_modules/q/node_modules/lodash"]);
    expect(lodash.integrity).toBe(sri("lodash@4.17.21"));
  });

  it("takes integrity from a later copy when the first has none", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/a/node_modules/x": { version: "1.0.0" },
        "node_modules/a": reg("a", "1.0.0"),
        "node_modules/x": reg("x", "1.0.0"),
      }),
    );
    expect(find(parsed, "x", "1.0.0")).toMatchObject({
      integrity: sri("x@1.0.0"),
      resolved: tarball("x", "1.0.0"),
      paths: ["node_modules/a/node_modules/x", "node_modules/x"],
    });
  });

  it("uses entry.name for npm aliases and validates the install folder too", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/my-lodash": { name: "lodash", ...reg("lodash", "4.17.20") },
        "node_modules/lodash": reg("lodash", "4.17.21"),
        "node_modules/@me/react": { name: "react", ...reg("react", "18.2.0") },
      }),
    );
    expect(ids(parsed)).toEqual(["lodash@4.17.20", "lodash@4.17.21", "react@18.2.0"]);
    expect(find(parsed, "lodash", "4.17.20").paths).toEqual(["node_modules/my-lodash"]);
    expect(find(parsed, "react", "18.2.0").paths).toEqual(["node_modules/@me/react"]);
  });

  it("skips workspaces and links, but keeps registry packages installed under a workspace folder", () => {
    const parsed = parseLockfile(
      v3({
        "packages/a": { name: "a", version: "0.0.1", dependencies: { left: "^1.0.0" } },
        "../outside-lib": { name: "outside-lib", version: "2.0.0" },
        "node_modules/a": { resolved: "packages/a", link: true },
        "node_modules/outside-lib": { resolved: "../outside-lib", link: true },
        "packages/a/node_modules/left": reg("left", "1.0.0"),
        "node_modules/right": reg("right", "1.0.0"),
      }),
    );
    expect(ids(parsed)).toEqual(["left@1.0.0", "right@1.0.0"]);
    expect(find(parsed, "left", "1.0.0").paths).toEqual(["packages/a/node_modules/left"]);
    expect(skippedAt(parsed, "node_modules/a")).toBe("link to packages/a (workspace or file: dependency)");
    expect(skippedAt(parsed, "node_modules/outside-lib")).toContain("link to ../outside-lib");
    expect(skippedAt(parsed, "packages/a")).toContain("workspace or local folder");
    expect(skippedAt(parsed, "../outside-lib")).toContain("workspace or local folder");
    expect(parsed.skipped).toHaveLength(4);
  });

  it("skips bundled, git, file: and remote tarball entries with reasons", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/parent": reg("parent", "1.0.0"),
        "node_modules/parent/node_modules/inside": { version: "3.0.0", inBundle: true },
        "node_modules/from-git": {
          version: "1.2.3",
          resolved: "git+ssh://git@github.com/acme/from-git.git#0123456789abcdef0123456789abcdef01234567",
        },
        "node_modules/from-github": { version: "1.0.0", resolved: "github:acme/thing#abc" },
        "node_modules/from-file": { version: "0.1.0", resolved: "file:vendor/from-file-0.1.0.tgz", integrity: sri("f") },
        "node_modules/from-url": { version: "2.0.0", resolved: "https://cdn.example.com/builds/from-url.tgz" },
        "node_modules/no-version-git": { resolved: "git+https://github.com/acme/x.git#abc" },
      }),
    );
    expect(ids(parsed)).toEqual(["parent@1.0.0"]);
    expect(skippedAt(parsed, "node_modules/parent/node_modules/inside")).toBe("bundled inside its parent's tarball");
    expect(skippedAt(parsed, "node_modules/from-git")).toBe(
      "git dependency (git+ssh://git@github.com/acme/from-git.git#0123456789abcdef0123456789abcdef01234567)",
    );
    expect(skippedAt(parsed, "node_modules/from-github")).toMatch(/^git dependency/);
    expect(skippedAt(parsed, "node_modules/from-file")).toBe("local file dependency (file:vendor/from-file-0.1.0.tgz)");
    expect(skippedAt(parsed, "node_modules/from-url")).toBe("remote tarball URL (https://cdn.example.com/builds/from-url.tgz)");
    expect(skippedAt(parsed, "node_modules/no-version-git")).toMatch(/^git dependency/);
  });

  it("accepts registry tarball URLs on any host that keeps the registry shape (mirrors)", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/glob": reg("glob", "10.4.5", { resolved: "https://repo/repository/npm/glob/-/glob-10.4.5.tgz" }),
        "node_modules/@types/node": reg("@types/node", "18.15.0", {
          resolved: "https://artifactory.corp.example/api/npm/npm-remote/@types/node/-/node-18.15.0.tgz",
        }),
        "node_modules/@s/encoded": reg("@s/encoded", "1.0.0", {
          resolved: "http://verdaccio.local:4873/@s%2fencoded/-/encoded-1.0.0.tgz",
        }),
      }),
    );
    expect(ids(parsed)).toEqual(["@s/encoded@1.0.0", "@types/node@18.15.0", "glob@10.4.5"]);
    expect(parsed.skipped).toEqual([]);
  });

  it("accepts entries without resolved (omit-lockfile-registry-resolved), and without integrity", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/a": { version: "1.0.0", integrity: sri("a") },
        "node_modules/b": { version: "2.0.0" },
      }),
    );
    expect(parsed.packages).toEqual([
      { name: "a", version: "1.0.0", integrity: sri("a"), resolved: null, paths: ["node_modules/a"] },
      { name: "b", version: "2.0.0", integrity: null, resolved: null, paths: ["node_modules/b"] },
    ]);
  });

  it("keeps multi-hash integrity strings as given", () => {
    const integrity = `${sri("m", "sha1")} ${sri("m")}`;
    const parsed = parseLockfile(v3({ "node_modules/m": reg("m", "1.0.0", { integrity }) }));
    expect(find(parsed, "m", "1.0.0").integrity).toBe(integrity);
  });

  it("treats constructor and prototype as ordinary package names", () => {
    const parsed = parseLockfile(
      v3({
        "node_modules/constructor": reg("constructor", "1.0.0"),
        "node_modules/prototype": reg("prototype", "1.0.0"),
        "node_modules/hasOwnProperty": reg("hasOwnProperty", "1.0.0"),
        "node_modules/JSONStream": reg("JSONStream", "1.3.5"), // old registry name with capitals
      }),
    );
    expect(ids(parsed)).toEqual(["JSONStream@1.3.5", "constructor@1.0.0", "hasOwnProperty@1.0.0", "prototype@1.0.0"]);
  });
});

describe("lockfileVersion 2", () => {
  it("reads the packages map and ignores the v1 dependencies tree", () => {
    const text = JSON.stringify({
      name: "app",
      lockfileVersion: 2,
      packages: {
        "": { name: "app" },
        "node_modules/a": reg("a", "1.0.0"),
        "node_modules/a/node_modules/b": reg("b", "2.0.0"),
      },
      dependencies: {
        a: dep("a", "1.0.0", { dependencies: { b: dep("b", "2.0.0") } }),
        stale: dep("stale", "9.9.9"),
      },
    });
    const parsed = parseLockfile(text);
    expect(parsed.lockfileVersion).toBe(2);
    expect(ids(parsed)).toEqual(["a@1.0.0", "b@2.0.0"]);
  });
});

// ---------- lockfileVersion 1 ----------

describe("lockfileVersion 1", () => {
  it("walks the nested tree with aliases, bundled, git, file: and tarball URL entries", () => {
    const parsed = parseLockfile(
      v1({
        a: dep("a", "2.0.0"),
        b: dep("b", "1.0.0", {
          requires: { a: "^1.0.0" },
          dependencies: {
            a: dep("a", "1.0.0"),
            bundled: { version: "0.0.1", bundled: true, dependencies: { x: { version: "1.0.0", bundled: true } } },
          },
        }),
        "my-lodash": { version: "npm:lodash@4.17.21", resolved: tarball("lodash", "4.17.21"), integrity: sri("lodash@4.17.21") },
        "@me/types": { version: "npm:@types/node@20.0.0", resolved: tarball("@types/node", "20.0.0"), integrity: sri("t") },
        lodash: dep("lodash", "4.17.21"),
        "from-git": { version: "git+https://github.com/acme/from-git.git#abc123", from: "git+https://github.com/acme/from-git.git" },
        "from-github": { version: "github:acme/thing#abc123", dependencies: { "inside-git": dep("inside-git", "1.0.0") } },
        "from-short": { version: "acme/short#abc123" },
        "from-file": { version: "file:../local-lib" },
        "from-url": { version: "https://cdn.example.com/from-url-1.0.0.tgz", integrity: sri("u") },
        "from-url-registry": { version: "https://registry.npmjs.org/from-url-registry/-/from-url-registry-1.0.0.tgz" },
        resolved_git: { version: "1.0.0", resolved: "git+ssh://git@github.com/acme/resolved_git.git#abc" },
      }),
    );
    expect(parsed.lockfileVersion).toBe(1);
    expect(ids(parsed)).toEqual(["@types/node@20.0.0", "a@1.0.0", "a@2.0.0", "b@1.0.0", "inside-git@1.0.0", "lodash@4.17.21"]);
    expect(find(parsed, "a", "1.0.0").paths).toEqual(["node_modules/b/node_modules/a"]);
    expect(find(parsed, "lodash", "4.17.21").paths).toEqual(["node_modules/my-lodash", "node_modules/lodash"]);
    expect(find(parsed, "@types/node", "20.0.0").paths).toEqual(["node_modules/@me/types"]);
    expect(find(parsed, "inside-git", "1.0.0").paths).toEqual(["node_modules/from-github/node_modules/inside-git"]);
    expect(parsed.skipped).toEqual([
      { path: "node_modules/b/node_modules/bundled", reason: "bundled inside its parent's tarball" },
      { path: "node_modules/b/node_modules/bundled/node_modules/x", reason: "bundled inside its parent's tarball" },
      { path: "node_modules/from-git", reason: "git dependency (git+https://github.com/acme/from-git.git#abc123)" },
      { path: "node_modules/from-github", reason: "git dependency (github:acme/thing#abc123)" },
      { path: "node_modules/from-short", reason: "git dependency (acme/short#abc123)" },
      { path: "node_modules/from-file", reason: "local file dependency (file:../local-lib)" },
      { path: "node_modules/from-url", reason: "remote tarball URL (https://cdn.example.com/from-url-1.0.0.tgz)" },
      {
        path: "node_modules/from-url-registry",
        reason: "remote tarball URL (https://registry.npmjs.org/from-url-registry/-/from-url-registry-1.0.0.tgz)",
      },
      { path: "node_modules/resolved_git", reason: "git dependency (git+ssh://git@github.com/acme/resolved_git.git#abc)" },
    ]);
  });

  it("merges sha1 and sha512 integrity of one version (old v1 files mix them) and keeps the stronger", () => {
    const parsed = parseLockfile(
      v1({
        x: dep("x", "1.0.0", { integrity: sri("x", "sha1") }),
        y: dep("y", "1.0.0", { dependencies: { x: dep("x", "1.0.0", { integrity: sri("x") }) } }),
      }),
    );
    expect(find(parsed, "x", "1.0.0")).toMatchObject({
      integrity: sri("x"),
      paths: ["node_modules/x", "node_modules/y/node_modules/x"],
    });
  });

  it("accepts a file without lockfileVersion that has a v1 dependencies tree (pre-npm-5 shrinkwrap)", () => {
    const text = JSON.stringify({ name: "old", version: "1.0.0", dependencies: { a: dep("a", "1.0.0") } });
    const parsed = parseLockfile(text);
    expect(parsed.lockfileVersion).toBe(1);
    expect(ids(parsed)).toEqual(["a@1.0.0"]);
  });

  it("parses a tree nested as deep as an install path can be, in document order", () => {
    const depth = 255; // "node_modules/p0" + 254 × "/node_modules/pN" = 4,079 characters, just under 4,096
    let text = "";
    for (let i = 0; i < depth; i++) text += `{"p${i % 10}":{"version":"1.0.${i}","dependencies":`;
    text += "{}";
    for (let i = 0; i < depth; i++) text += "}}";
    const parsed = parseLockfile(`{"lockfileVersion":1,"dependencies":${text}}`);
    expect(parsed.packages).toHaveLength(depth);
    const deepest = find(parsed, `p${(depth - 1) % 10}`, `1.0.${depth - 1}`);
    expect(deepest.paths[0]?.split("/node_modules/")).toHaveLength(depth);
    expect(deepest.paths[0]?.startsWith("node_modules/p0/node_modules/p1/")).toBe(true);
    expect(deepest.paths[0]?.length).toBeLessThanOrEqual(4096);
  });

  it("rejects a 5,000-level deep tree cleanly, without recursion and without building huge paths", () => {
    const depth = 5_000;
    const error = expectError(
      `{"lockfileVersion":1,"dependencies":${`{"a":{"version":"github:x/y#z","dependencies":`.repeat(depth)}{}${"}}".repeat(depth)}}`,
      "lockfile_invalid",
      "no file system accepts paths over 4096",
    );
    expect(error.message.length).toBeLessThan(500);
    // The same bound holds for v2/v3 keys.
    expectError(v3({ [`node_modules/a${"/node_modules/a".repeat(300)}`]: reg("a", "1.0.0") }), "lockfile_invalid", "install path");
  });
});

// ---------- decoding ----------

describe("decoding", () => {
  const text = v3({ "node_modules/a": reg("a", "1.0.0") });

  it("strips a UTF-8 BOM from bytes and from text", () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    expect(ids(parseLockfile(Buffer.concat([bom, Buffer.from(text)])))).toEqual(["a@1.0.0"]);
    expect(ids(parseLockfile(`\uFEFF${text}`))).toEqual(["a@1.0.0"]);
    expect(ids(parseLockfile(Buffer.from(text)))).toEqual(["a@1.0.0"]);
  });

  it("rejects invalid UTF-8 bytes", () => {
    const bytes = Buffer.from(text);
    const broken = Buffer.concat([bytes.subarray(0, 20), Buffer.from([0xff, 0xfe, 0xc3]), bytes.subarray(20)]);
    expectError(broken, "not_json", "UTF-8");
    expectError(Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]), "not_json", "UTF-8"); // overlong encoding
  });

  it("rejects text that is not JSON, and JSON that is not an object", () => {
    expectError("", "not_json");
    expectError("{ lockfileVersion: 3 }", "not_json", "not valid JSON");
    expectError(text.slice(0, -5), "not_json");
    expectError("[]", "not_json", "not an array");
    expectError(`[${text}]`, "not_json", "top level must be a JSON object");
    expectError("null", "not_json", "not null");
    expectError("42", "not_json");
    expectError('"lockfile"', "not_json");
  });
});

// ---------- errors ----------

describe("errors", () => {
  it("rejects a missing lockfileVersion without a v1 tree", () => {
    expectError(JSON.stringify({ name: "app", version: "1.0.0" }), "lockfile_version_unsupported", "no lockfileVersion");
    expectError(JSON.stringify({ name: "x", dependencies: {} }), "lockfile_version_unsupported");
    expectError(
      JSON.stringify({ name: "x", dependencies: { lodash: "^4.17.21" } }),
      "lockfile_version_unsupported",
      "looks like package.json",
    );
    expectError(
      JSON.stringify({ dependencies: { a: dep("a", "1.0.0") }, packages: { "node_modules/a": reg("a", "1.0.0") } }),
      "lockfile_version_unsupported",
    );
  });

  it("rejects unknown lockfileVersions", () => {
    expectError(v3({ "node_modules/a": reg("a", "1.0.0") }, { lockfileVersion: 4 }), "lockfile_version_unsupported", "lockfileVersion 4");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0") }, { lockfileVersion: "3" }), "lockfile_version_unsupported", '"3"');
    expectError(v3({ "node_modules/a": reg("a", "1.0.0") }, { lockfileVersion: 0 }), "lockfile_version_unsupported");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0") }, { lockfileVersion: 2.5 }), "lockfile_version_unsupported");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0") }, { lockfileVersion: null }), "lockfile_version_unsupported");
  });

  it("rejects wrong shapes with lockfile_invalid", () => {
    expectError(JSON.stringify({ lockfileVersion: 3, packages: [] }), "lockfile_invalid", "packages: must be an object, not an array");
    expectError(JSON.stringify({ lockfileVersion: 3, packages: "x" }), "lockfile_invalid", "packages");
    expectError(JSON.stringify({ lockfileVersion: 3 }), "lockfile_invalid", '"packages" map');
    expectError(JSON.stringify({ lockfileVersion: 2, dependencies: { a: dep("a", "1.0.0") } }), "lockfile_invalid", "packages");
    expectError(v3({ "node_modules/a": "1.0.0" }), "lockfile_invalid", "node_modules/a: the entry must be an object");
    expectError(v3({ "node_modules/a": { resolved: tarball("a", "1.0.0") } }), "lockfile_invalid", 'node_modules/a: the entry has no "version"');
    expectError(v3({ "node_modules/a": { version: 1 } }), "lockfile_invalid", '"version" must be a string');
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { resolved: 42 }) }), "lockfile_invalid", '"resolved" must be a string');
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: ["x"] }) }), "lockfile_invalid", '"integrity"');
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { name: 5 }) }), "lockfile_invalid", '"name"');
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { resolved: "ftp://example.com/a.tgz" }) }), "lockfile_invalid", "node_modules/a: resolved");
    expectError(v1({ a: "1.0.0" }), "lockfile_invalid", "node_modules/a: the entry must be an object");
    expectError(v1({ a: { resolved: tarball("a", "1.0.0") } }), "lockfile_invalid", 'node_modules/a: the entry has no "version"');
    expectError(v1({ a: dep("a", "1.0.0", { dependencies: [] }) }), "lockfile_invalid", 'node_modules/a: "dependencies" must be an object');
    expectError(JSON.stringify({ lockfileVersion: 1, dependencies: [] }), "lockfile_invalid", "dependencies");
  });

  it("rejects a v1 file that carries a v2/v3 packages map", () => {
    expectError(
      JSON.stringify({ lockfileVersion: 1, packages: { "node_modules/a": reg("a", "1.0.0") } }),
      "lockfile_invalid",
      'lockfileVersion 1 files have no "packages" map',
    );
  });

  it("rejects path traversal and other invalid names", () => {
    const error = expectError(
      v3({ "node_modules/../../x": reg("x", "1.0.0") }),
      "invalid_package_name",
      'node_modules/../../x: "../../x" is not a valid npm package name',
    );
    expect(error.details).toMatchObject({ path: "node_modules/../../x", name: "../../x" });
    expectError(v3({ "node_modules/a/node_modules/../../../etc": reg("etc", "1.0.0") }), "invalid_package_name", '"../../../etc"');
    expectError(v3({ "node_modules/a\\b": reg("b", "1.0.0") }), "invalid_package_name", "backslash");
    expectError(v3({ "node_modules/a\\..\\b": reg("b", "1.0.0") }), "invalid_package_name", "node_modules/a");
    expectError(v3({ "node_modules/@s/a/b": reg("b", "1.0.0") }), "invalid_package_name", '"@s/a/b"');
    expectError(v3({ "node_modules/a/b": reg("b", "1.0.0") }), "invalid_package_name", '"a/b"');
    expectError(v3({ "node_modules/@../x": reg("x", "1.0.0") }), "invalid_package_name");
    expectError(v3({ "node_modules/@./x": reg("x", "1.0.0") }), "invalid_package_name");
    expectError(v3({ "node_modules/": reg("x", "1.0.0") }), "invalid_package_name");
    expectError(v3({ "node_modules/.bin": reg("x", "1.0.0") }), "invalid_package_name");
    expectError(v3({ "node_modules/node_modules": reg("x", "1.0.0") }), "invalid_package_name");
    expectError(v3({ "node_modules/ok": { name: "../evil", ...reg("ok", "1.0.0") } }), "invalid_package_name", 'node_modules/ok: "../evil"');
    expectError(v3({ "node_modules/ok": { name: "Has Space", version: "1.0.0" } }), "invalid_package_name");
    expectError(v1({ "../x": dep("x", "1.0.0") }), "invalid_package_name", 'node_modules/../x: "../x"');
    expectError(v1({ alias: { version: "npm:../evil@1.0.0" } }), "invalid_package_name", "node_modules/alias");
  });

  it("rejects versions that are not exact semver", () => {
    expectError(v3({ "node_modules/a": reg("a", "^1.0.0") }), "invalid_version", 'node_modules/a: "^1.0.0" is not an exact semver version');
    expectError(v3({ "node_modules/a": { version: "v1.0.0" } }), "invalid_version", '"v1.0.0"');
    expectError(v3({ "node_modules/a": { version: " 1.0.0" } }), "invalid_version");
    expectError(v3({ "node_modules/a": { version: "latest" } }), "invalid_version");
    expectError(v3({ "node_modules/a": { version: "1.0" } }), "invalid_version");
    expectError(v3({ "node_modules/a": { version: "" } }), "invalid_version");
    expectError(v1({ a: dep("a", "~1.2.3") }), "invalid_version", "node_modules/a");
    expectError(v1({ a: { version: "npm:lodash@^4.0.0" } }), "invalid_version", "node_modules/a");
    expectError(v1({ a: { version: "npm:lodash" } }), "invalid_version", "node_modules/a: alias");
  });

  it("accepts exact versions with prerelease and build metadata", () => {
    const parsed = parseLockfile(v3({ "node_modules/a": { version: "1.0.0-alpha.1+build.5" } }));
    expect(ids(parsed)).toEqual(["a@1.0.0-alpha.1+build.5"]);
  });

  it("rejects malformed integrity", () => {
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: "md5-abc" }) }), "lockfile_invalid", "node_modules/a: integrity");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: "sha512-not base64!" }) }), "lockfile_invalid");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: "" }) }), "lockfile_invalid");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: "deadbeef" }) }), "lockfile_invalid");
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: `${sri("a")} ` }) }), "lockfile_invalid");
  });

  it("rejects one name@version locked with different integrity, naming both paths", () => {
    const error = expectError(
      v3({
        "node_modules/x": reg("x", "1.0.0"),
        "node_modules/a": reg("a", "1.0.0"),
        "node_modules/a/node_modules/x": reg("x", "1.0.0", { integrity: sri("evil") }),
      }),
      "lockfile_invalid",
      "node_modules/x and node_modules/a/node_modules/x both lock x@1.0.0",
    );
    expect(error.details).toMatchObject({ paths: ["node_modules/x", "node_modules/a/node_modules/x"] });
    expectError(
      v1({ x: dep("x", "1.0.0"), y: dep("y", "1.0.0", { dependencies: { x: dep("x", "1.0.0", { integrity: sri("other") }) } }) }),
      "lockfile_invalid",
      "node_modules/y/node_modules/x",
    );
  });

  it("rejects a registry tarball URL that belongs to another package or version", () => {
    expectError(
      v3({ "node_modules/a": reg("a", "1.0.0", { resolved: tarball("evil", "1.0.0") }) }),
      "lockfile_invalid",
      "node_modules/a: resolved URL",
    );
    expectError(v3({ "node_modules/a": reg("a", "1.0.0", { resolved: tarball("a", "0.9.0") }) }), "lockfile_invalid", "a@1.0.0");
    expectError(
      v3({ "node_modules/@s/a": reg("@s/a", "1.0.0", { resolved: tarball("@t/a", "1.0.0") }) }),
      "lockfile_invalid",
      "@s/a@1.0.0",
    );
  });

  it("checks registry URLs after URL normalisation, and never takes …/@types/node/-/… for node", () => {
    expectError(
      v3({ "node_modules/node": reg("node", "1.0.0", { resolved: "https://registry.npmjs.org/@types/node/-/node-1.0.0.tgz" }) }),
      "lockfile_invalid",
      "node@1.0.0",
    );
    expectError(
      v3({ "node_modules/a": reg("a", "1.0.0", { resolved: "https://registry.npmjs.org/a/-/../../evil/-/evil-1.0.0.tgz" }) }),
      "lockfile_invalid",
      "node_modules/a: resolved URL",
    );
    const parsed = parseLockfile(
      v3({
        "node_modules/a": reg("a", "1.0.0", { resolved: "https://registry.npmjs.org/x/../a/-/a-1.0.0.tgz" }),
        "node_modules/b": reg("b", "1.0.0", { resolved: "https://registry.npmjs.org/%62/-/b-1.0.0.tgz" }),
        "node_modules/q": reg("q", "1.0.0", { resolved: "https://registry.npmjs.org/q/-/q-1.0.0.tgz?token=x" }),
      }),
    );
    expect(ids(parsed)).toEqual(["a@1.0.0", "b@1.0.0"]);
    expect(skippedAt(parsed, "node_modules/q")).toMatch(/^remote tarball URL/);
  });

  it("accepts base64url characters in integrity digests (SRI grammar), as placeholder seed data uses", () => {
    const parsed = parseLockfile(v3({ "node_modules/a": reg("a", "1.0.0", { integrity: "sha512-test-exclude_integrity" }) }));
    expect(find(parsed, "a", "1.0.0").integrity).toBe("sha512-test-exclude_integrity");
  });

  it("does not take a bare relative path in resolved for a GitHub shorthand", () => {
    expectError(v3({ "node_modules/a": { version: "1.0.0", resolved: "packages/a" } }), "lockfile_invalid", "node_modules/a: resolved");
  });

  it("keeps messages printable and short: control characters escaped, deep paths elided", () => {
    const error = expectError(v3({ "node_modules/a\nINFO fake log line\u202e": reg("a", "1.0.0") }), "invalid_package_name");
    expect(error.message).not.toMatch(/[\n\u202e]/);
    expect(error.message).toContain("\\u000a");
    expect(error.details).toMatchObject({ path: "node_modules/a\nINFO fake log line\u202e" });

    const depth = 250;
    const tree = `${`{"p":{"version":"1.0.0","dependencies":`.repeat(depth)}{"bad":{"version":"^1"}}${"}}".repeat(depth)}`;
    const deep = expectError(`{"lockfileVersion":1,"dependencies":${tree}}`, "invalid_version", "node_modules/p/node_modules/p/");
    expect(deep.message.length).toBeLessThan(500);
    expect(deep.message).toContain('node_modules/p/node_modules/bad: "^1" is not an exact semver version');
    expect((deep.details as { path: string }).path.length).toBeGreaterThan(depth * 15);
  });

  it("rejects a lockfile without registry packages", () => {
    expectError(v3({}), "lockfile_empty");
    expectError(v1({}), "lockfile_empty");
    expectError(JSON.stringify({ lockfileVersion: 1 }), "lockfile_empty");
    const error = expectError(
      v3({ "packages/a": { name: "a", version: "1.0.0" }, "node_modules/a": { resolved: "packages/a", link: true } }),
      "lockfile_empty",
      "2 non-registry entries were skipped",
    );
    expect((error.details as { skipped: unknown[] }).skipped).toHaveLength(2);
  });

  it("treats __proto__ keys as data and never pollutes prototypes", () => {
    const polluting = [
      `{"lockfileVersion":3,"__proto__":{"polluted":"root"},"packages":{"":{},"__proto__":{"polluted":"key"},"node_modules/a":{"version":"1.0.0","__proto__":{"polluted":"entry"}}}}`,
      `{"lockfileVersion":3,"packages":{"node_modules/__proto__":{"version":"1.0.0","polluted":"yes"}}}`,
      `{"lockfileVersion":3,"packages":{"node_modules/a":{"name":"__proto__","version":"1.0.0"}}}`,
      `{"lockfileVersion":1,"dependencies":{"__proto__":{"version":"1.0.0","polluted":"yes"}}}`,
      `{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"__proto__":{"version":"1.0.0"}}}}}`,
      `{"__proto__":{"version":"1.0.0"},"dependencies":{"__proto__":{"version":"1.0.0","polluted":"yes"}}}`,
    ];
    const outcomes = polluting.map((text) => {
      try {
        return ids(parseLockfile(text)).join(",");
      } catch (error) {
        return (error as AppError).code;
      }
    });
    expect(outcomes).toEqual(["a@1.0.0", "invalid_package_name", "invalid_package_name", "invalid_package_name", "invalid_package_name", "invalid_package_name"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).version).toBeUndefined();
    const first = parseLockfile(polluting[0] as string);
    expect(first.skipped).toEqual([{ path: "__proto__", reason: expect.stringContaining("workspace or local folder") }]);
  });

  it("does not read values through a polluted Object.prototype", () => {
    const proto = Object.prototype as Record<string, unknown>;
    proto.lockfileVersion = 3;
    proto.link = true;
    proto.inBundle = true;
    try {
      const parsed = parseLockfile(`{"lockfileVersion":2,"packages":{"node_modules/a":{"version":"1.0.0"}}}`);
      expect(parsed.lockfileVersion).toBe(2);
      expect(ids(parsed)).toEqual(["a@1.0.0"]);
    } finally {
      delete proto.lockfileVersion;
      delete proto.link;
      delete proto.inBundle;
    }
  });
});

// ---------- scale ----------

describe("scale", () => {
  function bigLockfile(count: number): string {
    const packages: Json = { "": { name: "big", version: "1.0.0" } };
    for (let i = 0; i < count; i++) {
      const name = i % 3 === 0 ? `@scope${i % 50}/pkg-${i}` : `pkg-${i}`;
      const version = `${i % 7}.${i % 11}.${i % 13}`;
      const key = i % 5 === 0 ? `node_modules/parent-${i % 100}/node_modules/${name}` : `node_modules/${name}`;
      packages[key] = { version, resolved: tarball(name, version), integrity: `sha512-${Buffer.from(`h${i}`).toString("base64")}` };
    }
    return JSON.stringify({ name: "big", lockfileVersion: 3, packages });
  }

  /** Best CPU time of `runs` runs after one warm-up: on a shared machine wall time measures the neighbours. */
  // Speed is measured by scripts/bench (upload benchmark), not asserted here: these machines are shared.
  it("parses a 100k-entry lockfile", () => {
    const parsed = parseLockfile(Buffer.from(bigLockfile(100_000)));
    expect(parsed.packages).toHaveLength(100_000);
    expect(parsed.packages[0]?.name).toBe("@scope0/pkg-0");
  });
});

// ---------- seed fixtures of the legacy system ----------

const seedDir = path.resolve(import.meta.dirname, "../../shared/fixtures/seed-lockfiles");

describe.skipIf(!existsSync(seedDir))("seed lockfiles", () => {
  const parse = (file: string) => parseLockfile(readFileSync(path.join(seedDir, file)));
  const errorCode = (file: string) => errorOf(() => parse(file)).code;

  /** Outcome per file; every file in the folder must be listed, so a new fixture forces a decision here. */
  const expected: Record<string, (file: string) => void> = {
    "simple_app.json": (file) => {
      expect(parse(file).packages).toEqual([
        {
          name: "lodash",
          version: "4.17.21",
          integrity: "sha512-C2EkHXwXvLsbrucJTRS3xFHv7Mf/y9klmKDxPTE8yevCoH5h8Ae69Y+/lP+ahpW91crnzgO78elOk2E6APyfRw==",
          resolved: "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",
          paths: ["node_modules/lodash"],
        },
      ]);
    },
    "test-package-lock.json": (file) => {
      // Starts with a UTF-8 BOM.
      expect(readFileSync(path.join(seedDir, file)).subarray(0, 3)).toEqual(Buffer.from([0xef, 0xbb, 0xbf]));
      expect(ids(parse(file))).toEqual(["express@4.18.2", "lodash@4.17.21"]);
    },
    "duplicate_packages.json": (file) => {
      const parsed = parse(file);
      expect(ids(parsed)).toEqual(["lodash@4.17.21", "some-package@1.0.0"]);
      expect(find(parsed, "lodash", "4.17.21").paths).toEqual(["node_modules/lodash", "node_modules/some-package/node_modules/lodash"]);
    },
    "scoped_packages.json": (file) => {
      expect(ids(parse(file))).toEqual(["@angular/core@15.0.0", "@types/lodash@4.14.191", "tslib@2.3.0"]);
    },
    "nested_packages.json": (file) => {
      // Mirror URLs (https://repo/repository/npm/…) and placeholder digests such as "sha512-glob-integrity" (valid
      // base64url characters; the pipeline's integrity check will not match them, which is its job, not the parser's).
      const parsed = parse(file);
      expect(ids(parsed)).toEqual([
        "@types/glob@8.1.0",
        "@types/node@18.15.0",
        "brace-expansion@2.0.2",
        "glob@10.4.5",
        "minimatch@9.0.5",
        "test-exclude@7.0.1",
      ]);
      expect(find(parsed, "@types/node", "18.15.0").paths).toEqual(["node_modules/test-exclude/node_modules/@types/node"]);
    },
    "adminportal.json": (file) => {
      const parsed = parse(file);
      expect(parsed.lockfileVersion).toBe(3);
      expect(parsed.packages.length).toBeGreaterThan(500);
      expect(parsed.packages.every((p) => p.integrity !== null && p.paths.length > 0)).toBe(true);
      const sorted = [...parsed.packages].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      expect(parsed.packages.map((p) => p.name)).toEqual(sorted.map((p) => p.name));
    },
    // Root-only `packages` map: nothing to vet.
    "empty_packages.json": (file) => expect(errorCode(file)).toBe("lockfile_empty"),
    // Says lockfileVersion 1 but has the v2/v3 `packages` map (and no v1 tree): a contradiction, rejected.
    "invalid_version.json": (file) => expect(errorCode(file)).toBe("lockfile_invalid"),
    // No lockfileVersion and no v1 `dependencies` tree (only a root-only `packages` map): not accepted as legacy v1.
    "missing_lockfile_version.json": (file) => expect(errorCode(file)).toBe("lockfile_version_unsupported"),
  };

  const files = existsSync(seedDir) ? readdirSync(seedDir).filter((f) => f.endsWith(".json")).sort() : [];

  it.each(files)("%s", (file) => {
    const check = expected[file];
    if (check === undefined) {
      // An unknown new fixture: it must parse or fail with an AppError, never crash.
      try {
        parse(file);
      } catch (error) {
        expect(error).toBeInstanceOf(AppError);
      }
      return;
    }
    check(file);
  });
});
