import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAffected, matchAdvisory, VersionCompareError } from "../src/advisories/match.ts";
import { cvss3BaseScore, normaliseOsv, OsvParseError, parseRanges, type OsvRange } from "../src/advisories/osv.ts";
import { readOsvDocuments, type OsvSourceRecord } from "../src/advisories/read-sources.ts";
import { advisoriesFor, advisoryDataAge, importAdvisories, sanitiseForPostgres } from "../src/advisories/store.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { buildZip } from "./support/zip-writer.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures (OSV format)

function ghsaLodash(): Record<string, unknown> {
  return {
    schema_version: "1.4.0",
    id: "GHSA-p6mc-m468-83gw",
    modified: "2024-01-31T21:46:35Z",
    published: "2020-07-15T19:15:48Z",
    aliases: ["CVE-2020-8203"],
    summary: "Prototype Pollution in lodash",
    details: "Prototype pollution attack when using _.zipObjectDeep in lodash before 4.17.20.",
    severity: [{ type: "CVSS_V3", score: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H" }],
    affected: [
      {
        package: { ecosystem: "npm", name: "lodash", purl: "pkg:npm/lodash" },
        ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "4.17.19" }] }],
        database_specific: { source: "https://github.com/github/advisory-database/blob/main/x.json" },
      },
      {
        package: { ecosystem: "npm", name: "lodash-es" },
        ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "4.0.0" }, { fixed: "4.17.20" }] }],
      },
    ],
    references: [
      { type: "WEB", url: "https://github.com/lodash/lodash/issues/4744" },
      { type: "ADVISORY", url: "https://nvd.nist.gov/vuln/detail/CVE-2020-8203" },
      { type: "PACKAGE", url: "https://github.com/lodash/lodash" },
    ],
    database_specific: {
      cwe_ids: ["CWE-1321", "CWE-770"],
      severity: "HIGH",
      github_reviewed: true,
      github_reviewed_at: "2020-07-15T19:15:06Z",
      nvd_published_at: null,
    },
    an_unknown_top_level_field: { whatever: true },
  };
}

function malicious(): Record<string, unknown> {
  return {
    id: "MAL-2024-1234",
    modified: "2024-05-01T00:00:00Z",
    published: "2024-05-01T00:00:00Z",
    summary: "Malicious code in evil-pkg (npm)",
    details: "Installs a credential stealer.",
    affected: [
      {
        package: { ecosystem: "npm", name: "evil-pkg" },
        ranges: [{ type: "SEMVER", events: [{ introduced: "0" }] }],
        database_specific: { "malicious-packages-origins": [{ source: "ghsa-malware", sha256: "abc" }] },
      },
    ],
  };
}

function doc(id: string, affected: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, modified: "2024-01-01T00:00:00Z", affected, ...extra };
}

const npm = (name: string, rest: Record<string, unknown>) => ({ package: { ecosystem: "npm", name }, ...rest });
const semverRange = (...events: Record<string, string>[]): OsvRange => ({ type: "SEMVER", events });

// ---------------------------------------------------------------------------------------------

describe("normaliseOsv", () => {
  it("normalises a GHSA advisory", () => {
    const raw = ghsaLodash();
    const a = normaliseOsv(raw)!;
    expect(a).not.toBeNull();
    expect(a.id).toBe("GHSA-p6mc-m468-83gw");
    expect(a.aliases).toEqual(["CVE-2020-8203"]);
    expect(a.summary).toBe("Prototype Pollution in lodash");
    expect(a.severity).toBe("high");
    expect(a.cvssVector).toBe("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H");
    expect(a.cvssScore).toBe(7.4);
    expect(a.malicious).toBe(false);
    expect(a.published).toEqual(new Date("2020-07-15T19:15:48Z"));
    expect(a.modified).toEqual(new Date("2024-01-31T21:46:35Z"));
    expect(a.withdrawn).toBeNull();
    expect(a.affected).toEqual([
      { packageName: "lodash", ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: "4.17.19" }] }], versions: [] },
      { packageName: "lodash-es", ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "4.0.0" }, { fixed: "4.17.20" }] }], versions: [] },
    ]);
    expect(a.fixedVersions).toEqual(["4.17.19", "4.17.20"]);
    expect(a.url).toBe("https://nvd.nist.gov/vuln/detail/CVE-2020-8203"); // ADVISORY preferred over an earlier WEB
    expect(a.cwe).toEqual(["CWE-1321", "CWE-770"]);
    expect(a.data).toBe(raw);
  });

  it("maps every GHSA severity word", () => {
    const cases = { LOW: "low", MODERATE: "moderate", MEDIUM: "moderate", HIGH: "high", CRITICAL: "critical", BOGUS: "unknown" };
    for (const [word, expected] of Object.entries(cases)) {
      const a = normaliseOsv(doc("GHSA-x", [npm("p", { versions: ["1.0.0"] })], { database_specific: { severity: word } }))!;
      expect(a.severity, word).toBe(expected);
    }
    // the database's word wins over a CVSS vector
    const both = doc("GHSA-y", [npm("p", { versions: ["1.0.0"] })], {
      database_specific: { severity: "LOW" },
      severity: [{ type: "CVSS_V3", score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" }],
    });
    expect(normaliseOsv(both)).toMatchObject({ severity: "low", cvssScore: 9.8 });
  });

  it("falls back to the CVSS v3 base score, then to unknown", () => {
    const withVector = (score: string) => doc("GHSA-v", [npm("p", { versions: ["1.0.0"] })], { severity: [{ type: "CVSS_V3", score }] });
    expect(normaliseOsv(withVector("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"))).toMatchObject({ severity: "critical", cvssScore: 9.8 });
    expect(normaliseOsv(withVector("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"))).toMatchObject({ severity: "moderate", cvssScore: 5.9 });
    expect(normaliseOsv(withVector("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N"))).toMatchObject({ severity: "moderate", cvssScore: 4.3 });
    expect(normaliseOsv(withVector("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"))).toMatchObject({ severity: "low", cvssScore: 1.8 });
    expect(normaliseOsv(withVector("garbage"))).toMatchObject({ severity: "unknown", cvssVector: "garbage", cvssScore: null });
    expect(normaliseOsv(doc("GHSA-n", [npm("p", { versions: ["1.0.0"] })]))).toMatchObject({
      severity: "unknown",
      cvssVector: null,
      cvssScore: null,
    });
  });

  it("keeps a CVSS v4 vector unscored and uses database_specific when present", () => {
    const v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
    const only = normaliseOsv(doc("GHSA-4", [npm("p", { versions: ["1.0.0"] })], { severity: [{ type: "CVSS_V4", score: v4 }] }))!;
    expect(only).toMatchObject({ severity: "unknown", cvssVector: v4, cvssScore: null });
    const labelled = normaliseOsv(
      doc("GHSA-4", [npm("p", { versions: ["1.0.0"] })], { severity: [{ type: "CVSS_V4", score: v4 }], database_specific: { severity: "CRITICAL" } }),
    )!;
    expect(labelled.severity).toBe("critical");
  });

  it("reads per-package CVSS when there is no top-level severity", () => {
    const a = normaliseOsv(
      doc("GHSA-pp", [npm("p", { versions: ["1.0.0"], severity: [{ type: "CVSS_V3", score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H" }] })]),
    )!;
    expect(a).toMatchObject({ severity: "critical", cvssScore: 10 });
  });

  it("marks MAL- advisories malicious and critical", () => {
    const a = normaliseOsv(malicious())!;
    expect(a.malicious).toBe(true);
    expect(a.severity).toBe("critical");
    expect(a.affected[0]!.packageName).toBe("evil-pkg");
    expect(a.fixedVersions).toEqual([]);
    expect(a.url).toBeNull();
    // a GHSA record aliasing a MAL- id, or carrying malicious-packages origins, is malicious too
    expect(normaliseOsv(doc("GHSA-m", [npm("p", { versions: ["1.0.0"] })], { aliases: ["MAL-2024-9"] }))!.malicious).toBe(true);
    const origins = malicious();
    origins.id = "GHSA-zzzz";
    expect(normaliseOsv(origins)!.malicious).toBe(true);
  });

  it("returns null when no npm package is affected, and keeps only npm entries", () => {
    expect(normaliseOsv(doc("PYSEC-2021-1", [{ package: { ecosystem: "PyPI", name: "django" }, versions: ["3.0"] }]))).toBeNull();
    expect(normaliseOsv(doc("GHSA-none", []))).toBeNull();
    expect(normaliseOsv({ id: "GHSA-noaffected", modified: "2024-01-01T00:00:00Z" })).toBeNull();
    const mixed = normaliseOsv(
      doc("GHSA-mixed", [
        { package: { ecosystem: "Maven", name: "org.webjars.npm:lodash" }, versions: ["1.0.0"] },
        npm("lodash", { versions: ["1.0.0"] }),
        { ranges: [{ type: "GIT", repo: "https://github.com/x/y", events: [{ introduced: "abc" }] }] },
      ]),
    )!;
    expect(mixed.affected.map((x) => x.packageName)).toEqual(["lodash"]);
  });

  it("records withdrawal", () => {
    const a = normaliseOsv(doc("GHSA-w", [npm("p", { versions: ["1.0.0"] })], { withdrawn: "2024-02-02T00:00:00Z" }))!;
    expect(a.withdrawn).toEqual(new Date("2024-02-02T00:00:00Z"));
  });

  it("throws OsvParseError on malformed documents", () => {
    const bad: unknown[] = [
      null,
      "GHSA-x",
      [],
      { modified: "2024-01-01T00:00:00Z", affected: [] }, // no id
      { id: "", affected: [] },
      { id: 42 },
      doc("GHSA-a", [npm("p", { ranges: [{ type: "SEMVER", events: [{ introduced: "0", fixed: "1.0.0" }] }] })]), // two keys in one event
      doc("GHSA-b", [npm("p", { ranges: [{ type: "SEMVER", events: [{}] }] })]),
      doc("GHSA-c", [npm("p", { ranges: [{ events: [{ introduced: "0" }] }] })]), // no type
      doc("GHSA-d", [npm("p", { versions: "1.0.0" })]),
      doc("GHSA-e", [npm("p", { versions: ["1.0.0"] })], { modified: "yesterday" }),
      doc("GHSA-f", [npm("p", { versions: ["1.0.0"] })], { aliases: "CVE-1" }),
    ];
    for (const d of bad) expect(() => normaliseOsv(d), JSON.stringify(d)).toThrow(OsvParseError);
    expect(() => normaliseOsv({ id: "GHSA-named", aliases: 1 })).toThrow(/GHSA-named/);
  });

  it("parses stored ranges and rejects corrupt ones", () => {
    expect(parseRanges([{ type: "SEMVER", events: [{ introduced: "0" }, { fixed: "1.0.0" }] }])).toEqual([
      { type: "SEMVER", events: [{ introduced: "0" }, { fixed: "1.0.0" }] },
    ]);
    expect(() => parseRanges([{ type: "SEMVER", events: [{ fixed: 1 }] }])).toThrow(OsvParseError);
    expect(() => parseRanges({})).toThrow(OsvParseError);
  });
});

describe("cvss3BaseScore", () => {
  it("computes known vectors", () => {
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")).toBe(9.8);
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N")).toBe(5.9);
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H")).toBe(10);
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:N/A:N")).toBe(6.8); // the elliptic example of the OSV spec
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N")).toBe(5.4); // typical stored XSS
    expect(cvss3BaseScore("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H")).toBe(9.1);
    expect(cvss3BaseScore("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N")).toBe(0);
    // temporal metrics are ignored; metric order does not matter
    expect(cvss3BaseScore("CVSS:3.1/S:U/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H/E:P/RL:O/RC:C")).toBe(9.8);
  });

  it("rejects malformed vectors", () => {
    for (const v of [
      "",
      "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", // no prefix
      "CVSS:2.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
      "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", // A missing
      "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
      "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
      "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:X/C:H/I:H/A:H",
      "CVSS:3.1/AV:N/AC:L/PR:toString/UI:N/S:U/C:H/I:H/A:H",
    ]) {
      expect(cvss3BaseScore(v), v).toBeNull();
    }
  });
});

describe("isAffected", () => {
  const lodash = { ranges: [semverRange({ introduced: "0" }, { fixed: "4.17.19" })], versions: [] };

  it("treats introduced as inclusive and fixed as exclusive", () => {
    expect(isAffected("0.0.1", lodash)).toBe(true);
    expect(isAffected("4.17.18", lodash)).toBe(true);
    expect(isAffected("4.17.19", lodash)).toBe(false);
    expect(isAffected("4.17.20", lodash)).toBe(false);
    expect(isAffected("5.0.0", lodash)).toBe(false);
    const from = { ranges: [semverRange({ introduced: "1.2.0" }, { fixed: "1.3.0" })], versions: [] };
    expect(isAffected("1.1.9", from)).toBe(false);
    expect(isAffected("1.2.0", from)).toBe(true);
  });

  it("treats last_affected as inclusive", () => {
    const r = { ranges: [semverRange({ introduced: "0" }, { last_affected: "2.1.214" })], versions: [] };
    expect(isAffected("2.1.213", r)).toBe(true);
    expect(isAffected("2.1.214", r)).toBe(true);
    expect(isAffected("2.1.215", r)).toBe(false);
  });

  it("handles several introduced/fixed pairs in one range, in any order", () => {
    const r = {
      ranges: [semverRange({ fixed: "3.2.5" }, { introduced: "1.0.0" }, { introduced: "3.0.0" }, { fixed: "1.0.2" })],
      versions: [],
    };
    expect(isAffected("0.9.0", r)).toBe(false);
    expect(isAffected("1.0.0", r)).toBe(true);
    expect(isAffected("1.0.1", r)).toBe(true);
    expect(isAffected("1.0.2", r)).toBe(false);
    expect(isAffected("2.5.0", r)).toBe(false);
    expect(isAffected("3.0.0", r)).toBe(true);
    expect(isAffected("3.2.5", r)).toBe(false);
  });

  it("handles several ranges (any one matches)", () => {
    const r = {
      ranges: [
        { type: "ECOSYSTEM", events: [{ introduced: "1.0.0" }, { fixed: "1.4.1" }] },
        { type: "ECOSYSTEM", events: [{ introduced: "2.0.0" }, { fixed: "2.0.3" }] },
      ],
      versions: [],
    };
    expect(isAffected("1.4.0", r)).toBe(true);
    expect(isAffected("1.4.1", r)).toBe(false);
    expect(isAffected("2.0.2", r)).toBe(true);
    expect(isAffected("2.0.3", r)).toBe(false);
  });

  it("treats a range with only introduced as open-ended", () => {
    expect(isAffected("0.0.0", { ranges: [semverRange({ introduced: "0" })], versions: [] })).toBe(true);
    expect(isAffected("99.0.0", { ranges: [semverRange({ introduced: "0" })], versions: [] })).toBe(true);
    const r = { ranges: [semverRange({ introduced: "3.0.0" })], versions: [] };
    expect(isAffected("2.9.9", r)).toBe(false);
    expect(isAffected("3.0.0", r)).toBe(true);
    expect(isAffected("1000.0.0", r)).toBe(true);
  });

  it("matches a versions list exactly (after semver.clean)", () => {
    const r = { ranges: [], versions: ["1.0.0", "v1.0.3", "2.0.0-beta.1"] };
    expect(isAffected("1.0.0", r)).toBe(true);
    expect(isAffected("1.0.3", r)).toBe(true);
    expect(isAffected("=1.0.3", r)).toBe(true);
    expect(isAffected("2.0.0-beta.1", r)).toBe(true);
    expect(isAffected("1.0.1", r)).toBe(false);
    expect(isAffected("2.0.0", r)).toBe(false);
    // the versions list and the ranges are alternatives
    expect(isAffected("5.0.0", { ranges: lodash.ranges, versions: ["5.0.0"] })).toBe(true);
  });

  it("orders prereleases as semver does", () => {
    expect(isAffected("4.17.19-rc.1", lodash)).toBe(true); // below the fix
    expect(isAffected("4.17.20-beta.0", lodash)).toBe(false);
    const r = { ranges: [semverRange({ introduced: "2.0.0-beta.2" }, { fixed: "2.0.0" })], versions: [] };
    expect(isAffected("2.0.0-alpha.9", r)).toBe(false);
    expect(isAffected("2.0.0-beta.1", r)).toBe(false);
    expect(isAffected("2.0.0-beta.2", r)).toBe(true);
    expect(isAffected("2.0.0-beta.10", r)).toBe(true); // numeric identifiers compare numerically
    expect(isAffected("2.0.0-rc.1", r)).toBe(true);
    expect(isAffected("2.0.0", r)).toBe(false);
    expect(isAffected("1.9.9", r)).toBe(false);
    // a prerelease of an otherwise unaffected major is compared, not excluded as `satisfies` would
    const all = { ranges: [semverRange({ introduced: "0" }, { fixed: "3.0.0" })], versions: [] };
    expect(isAffected("3.0.0-alpha.1", all)).toBe(true);
  });

  it("honours limit events as an exclusive upper bound", () => {
    const r = { ranges: [semverRange({ introduced: "1.0.0" }, { limit: "1.5.0" })], versions: [] };
    expect(isAffected("1.4.9", r)).toBe(true);
    expect(isAffected("1.5.0", r)).toBe(false);
    expect(isAffected("2.0.0", r)).toBe(false);
    const star = { ranges: [semverRange({ introduced: "1.0.0" }, { limit: "*" })], versions: [] };
    expect(isAffected("9.0.0", star)).toBe(true);
  });

  it("ignores GIT ranges", () => {
    const r = { ranges: [{ type: "GIT", repo: "https://github.com/a/b", events: [{ introduced: "0" }, { fixed: "deadbeef" }] }], versions: [] };
    expect(isAffected("1.0.0", r)).toBe(false);
  });

  it("throws VersionCompareError for versions semver cannot parse", () => {
    expect(() => isAffected("not-a-version", lodash)).toThrow(VersionCompareError);
    expect(() => isAffected("1.2", lodash)).toThrow(VersionCompareError);
    expect(() => isAffected("latest", { ranges: [], versions: ["1.0.0"] })).toThrow(VersionCompareError);
    const badEvent = { ranges: [semverRange({ introduced: "0" }, { fixed: "4.17" })], versions: [] };
    expect(() => isAffected("1.0.0", badEvent)).toThrow(VersionCompareError);
    const badLimit = { ranges: [semverRange({ introduced: "0" }, { limit: "soon" })], versions: [] };
    expect(() => isAffected("1.0.0", badLimit)).toThrow(VersionCompareError);
    // "0" is the one non-semver event value allowed
    expect(isAffected("1.0.0", { ranges: [semverRange({ introduced: "0" })], versions: [] })).toBe(true);
  });

  it("matchAdvisory checks only the entries of the package", () => {
    const a = normaliseOsv(ghsaLodash())!;
    expect(matchAdvisory("lodash", "4.17.15", a)).toEqual({ affected: true, advisoryId: "GHSA-p6mc-m468-83gw" });
    expect(matchAdvisory("lodash", "4.17.19", a)).toEqual({ affected: false });
    expect(matchAdvisory("lodash-es", "4.17.19", a)).toEqual({ affected: true, advisoryId: "GHSA-p6mc-m468-83gw" });
    expect(matchAdvisory("lodash-es", "3.10.1", a)).toEqual({ affected: false });
    expect(matchAdvisory("underscore", "1.0.0", a)).toEqual({ affected: false });
    const mal = normaliseOsv(malicious())!;
    expect(matchAdvisory("evil-pkg", "0.0.1-security", mal)).toEqual({ affected: true, advisoryId: "MAL-2024-1234" });
    expect(matchAdvisory("evil-pkg", "13.7.0", mal)).toEqual({ affected: true, advisoryId: "MAL-2024-1234" });
  });
});

// ---------------------------------------------------------------------------------------------

async function collect(path: string, options?: Parameters<typeof readOsvDocuments>[1]): Promise<OsvSourceRecord[]> {
  const out: OsvSourceRecord[] = [];
  for await (const r of readOsvDocuments(path, options)) out.push(r);
  return out;
}

describe("readOsvDocuments", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "spm-osv-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads one JSON file (with a BOM) and a file holding an array of documents", async () => {
    const one = join(dir, "one.json");
    await writeFile(one, "\ufeff" + JSON.stringify(ghsaLodash()));
    expect(await collect(one)).toEqual([{ source: one, doc: ghsaLodash() }]);
    const many = join(dir, "many.json");
    await writeFile(many, JSON.stringify([ghsaLodash(), malicious()]));
    const records = await collect(many);
    expect(records.map((r) => r.source)).toEqual([`${many}[0]`, `${many}[1]`]);
    expect((records[1]!.doc as { id: string }).id).toBe("MAL-2024-1234");
  });

  it("reads a directory recursively, reports bad files and goes on", async () => {
    const root = join(dir, "tree");
    await mkdir(join(root, "npm", "nested"), { recursive: true });
    await writeFile(join(root, "a.json"), JSON.stringify(ghsaLodash()));
    await writeFile(join(root, "npm", "nested", "MAL-2024-1234.JSON"), JSON.stringify(malicious()));
    await writeFile(join(root, "npm", "broken.json"), "{ not json");
    await writeFile(join(root, "npm", "latin1.json"), Buffer.from([0x7b, 0xe9, 0x7d]));
    await writeFile(join(root, "README.md"), "# not an advisory");
    const records = await collect(root);
    expect(records.map((r) => [r.source.slice(root.length + 1), r.error === undefined ? "doc" : "error"])).toEqual([
      ["a.json", "doc"],
      ["npm/broken.json", "error"],
      ["npm/latin1.json", "error"],
      ["npm/nested/MAL-2024-1234.JSON", "doc"],
    ]);
    expect(records[1]!.error).toMatch(/invalid JSON/);
  });

  it("streams a zip (stored and deflated entries) and reports bad entries", async () => {
    const zipPath = join(dir, "all.zip");
    await writeFile(
      zipPath,
      buildZip([
        { name: "GHSA-p6mc-m468-83gw.json", data: JSON.stringify(ghsaLodash()) },
        { name: "sub/" },
        { name: "sub/MAL-2024-1234.json", data: JSON.stringify(malicious()), deflate: true },
        { name: "bad.json", data: "{" },
        { name: "notes.txt", data: "ignored" },
        { name: "PYSEC-1.json", data: JSON.stringify(doc("PYSEC-1", [{ package: { ecosystem: "PyPI", name: "x" }, versions: ["1"] }])) },
      ]),
    );
    const records = await collect(zipPath);
    expect(records.map((r) => r.source)).toEqual([
      `${zipPath}:GHSA-p6mc-m468-83gw.json`,
      `${zipPath}:sub/MAL-2024-1234.json`,
      `${zipPath}:bad.json`,
      `${zipPath}:PYSEC-1.json`,
    ]);
    expect(records[0]!.doc).toEqual(ghsaLodash());
    expect(records[1]!.doc).toEqual(malicious());
    expect(records[2]!.error).toMatch(/invalid JSON/);
    expect(normaliseOsv(records[3]!.doc)).toBeNull();
  });

  it("reports an entry whose data does not match its CRC-32 and reads the others", async () => {
    const zip = buildZip([
      { name: "a.json", data: JSON.stringify({ id: "GHSA-aaaa" }) },
      { name: "b.json", data: JSON.stringify(malicious()) },
    ]);
    const at = zip.indexOf("GHSA-aaaa");
    zip[at] = "X".charCodeAt(0);
    const zipPath = join(dir, "crc.zip");
    await writeFile(zipPath, zip);
    const records = await collect(zipPath);
    expect(records[0]!.error).toMatch(/CRC-32 mismatch/);
    expect(records[1]!.doc).toEqual(malicious());
  });

  it("recognises a zip by its signature and stops early without leaking", async () => {
    const zipPath = join(dir, "download.bin");
    await writeFile(zipPath, buildZip([{ name: "a.json", data: "{}" }, { name: "b.json", data: "{}" }]));
    for await (const r of readOsvDocuments(zipPath)) {
      expect(r.source).toBe(`${zipPath}:a.json`);
      break;
    }
    expect(await collect(zipPath)).toHaveLength(2);
  });

  it("reports documents above the size limit", async () => {
    const zipPath = join(dir, "big.zip");
    await writeFile(zipPath, buildZip([{ name: "big.json", data: JSON.stringify(ghsaLodash()), deflate: true }]));
    const [z] = await collect(zipPath, { maxDocumentBytes: 100 });
    expect(z!.error).toMatch(/larger than 100 bytes/);
    const file = join(dir, "big.json");
    await writeFile(file, JSON.stringify(ghsaLodash()));
    const [f] = await collect(file, { maxDocumentBytes: 100 });
    expect(f!.error).toMatch(/larger than 100 bytes/);
  });

  it("throws for a missing path or a corrupt zip", async () => {
    await expect(collect(join(dir, "missing.zip"))).rejects.toThrow(/ENOENT/);
    const corrupt = join(dir, "corrupt.zip");
    await writeFile(corrupt, "PK\u0003\u0004 definitely not a zip");
    await expect(collect(corrupt)).rejects.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// The import loop against a real database (a fresh one cloned from the migrated template).

async function* records(...rs: OsvSourceRecord[]): AsyncGenerator<OsvSourceRecord> {
  yield* rs;
}

describe("importAdvisories (PostgreSQL)", () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => t?.drop());

  /** Make inserts of the given advisory ids fail inside PostgreSQL (a trigger), to test isolation. */
  async function failInserts(ids: string[] | "all"): Promise<void> {
    const list = ids === "all" ? null : ids;
    await t.db.$executeRawUnsafe(`
      CREATE OR REPLACE FUNCTION test_fail_advisory() RETURNS trigger AS $$
      BEGIN
        IF ${list === null ? "true" : `NEW.id = ANY(ARRAY[${list.map((i) => `'${i}'`).join(",")}])`} THEN
          RAISE EXCEPTION 'cannot write %', NEW.id;
        END IF;
        RETURN NEW;
      END $$ LANGUAGE plpgsql`);
    await t.db.$executeRawUnsafe(`DROP TRIGGER IF EXISTS test_fail ON advisory`);
    await t.db.$executeRawUnsafe(`CREATE TRIGGER test_fail BEFORE INSERT ON advisory FOR EACH ROW EXECUTE FUNCTION test_fail_advisory()`);
  }
  async function clear(): Promise<void> {
    await t.db.$executeRawUnsafe(`DROP TRIGGER IF EXISTS test_fail ON advisory`);
    await t.db.advisory.deleteMany();
    await t.db.advisoryImport.deleteMany();
  }

  it("counts imported, skipped and errors, in batches, and replaces by id", async () => {
    await clear();
    const withdrawn = doc("GHSA-gone", [npm("left-pad", { versions: ["1.0.0"] })], { withdrawn: "2024-03-01T00:00:00Z" });
    const result = await importAdvisories(
      t.db,
      records(
        { source: "a.json", doc: ghsaLodash() },
        { source: "b.json", doc: malicious() },
        { source: "c.json", doc: doc("PYSEC-1", [{ package: { ecosystem: "PyPI", name: "x" }, versions: ["1"] }]) },
        { source: "d.json", error: "invalid JSON: Unexpected end" },
        { source: "e.json", doc: { id: 1 } },
        { source: "f.json", doc: withdrawn },
        { source: "g.json", doc: { ...ghsaLodash(), summary: "updated\u0000" } }, // same id again: replaces
      ),
      "test",
      { source: "fixtures", batchSize: 2 },
    );
    expect(result.imported).toBe(3);
    expect(result.skipped).toBe(1);
    expect(result.failed).toBe(2);
    expect(result.errors).toEqual(["d.json: invalid JSON: Unexpected end", expect.stringMatching(/^e\.json: .*not a valid OSV document/)]);
    const stored = await t.db.advisory.findMany({ orderBy: { id: "asc" } });
    expect(stored.map((a) => a.id)).toEqual(["GHSA-gone", "GHSA-p6mc-m468-83gw", "MAL-2024-1234"]);
    expect(stored.find((a) => a.id === "GHSA-p6mc-m468-83gw")!.summary).toBe("updated");
    expect(stored.find((a) => a.id === "GHSA-gone")!.withdrawn).toEqual(new Date("2024-03-01T00:00:00Z"));
    expect(await t.db.advisoryAffected.count({ where: { advisoryId: "GHSA-p6mc-m468-83gw" } })).toBe(2); // replaced, not duplicated
    const imports = await t.db.advisoryImport.findMany();
    expect(imports.map((i) => ({ source: i.source, count: i.count, importedBy: i.importedBy }))).toEqual([
      { source: "fixtures", count: 3, importedBy: "test" },
    ]);
    // what the scan step reads
    const lodash = await advisoriesFor(t.db, "lodash");
    expect(lodash.map((a) => a.id)).toEqual(["GHSA-p6mc-m468-83gw"]);
    expect(matchAdvisory("lodash", "4.17.15", lodash[0]!)).toEqual({ affected: true, advisoryId: "GHSA-p6mc-m468-83gw" });
    expect(matchAdvisory("lodash", "4.17.21", lodash[0]!)).toEqual({ affected: false });
    expect(await advisoriesFor(t.db, "left-pad")).toEqual([]); // withdrawn
    expect(await advisoryDataAge(t.db)).toBeInstanceOf(Date);
  });

  it("isolates an unwritable advisory and aborts when nothing can be written", async () => {
    await clear();
    await failInserts(["MAL-2024-1234"]);
    const result = await importAdvisories(t.db, records({ source: "a.json", doc: ghsaLodash() }, { source: "b.json", doc: malicious() }), "test");
    expect(result.imported).toBe(1);
    expect(result.errors).toEqual([expect.stringMatching(/^b\.json: cannot store MAL-2024-1234: .*cannot write MAL-2024-1234/s)]);

    await clear();
    await failInserts("all");
    await expect(
      importAdvisories(t.db, records({ source: "a.json", doc: ghsaLodash() }, { source: "b.json", doc: malicious() }), "test"),
    ).rejects.toThrow(/cannot write/);
    expect(await t.db.advisoryImport.count()).toBe(0);
    expect(await advisoryDataAge(t.db)).toBeNull();
    await clear();
  });
});

describe("sanitiseForPostgres", () => {
  it("drops NUL and replaces unpaired surrogates, in keys and values", () => {
    expect(sanitiseForPostgres({ "a\u0000b": ["x\u0000y", "\ud800z", "ok \ud83d\ude00", 1, null, true] })).toEqual({
      ab: ["xy", "\ufffdz", "ok \ud83d\ude00", 1, null, true],
    });
  });
});
