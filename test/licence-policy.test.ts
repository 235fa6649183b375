import { describe, expect, it } from "vitest";
import { declaredLicence } from "../src/policy/licence-declared.ts";
import { evaluateLicence, type LicencePolicy, type Verdict } from "../src/policy/licence-evaluate.ts";
import { defaultLicencePolicy, defaultLicenceVerdicts } from "../src/policy/licence-defaults.ts";
import { isSpdxLicenceId, normaliseLicence } from "../src/policy/licence-normalise.ts";
import deprecatedLicenceIds from "spdx-license-ids/deprecated.json" with { type: "json" };

const policies = {
  default: defaultLicencePolicy(),
  unknownDeny: defaultLicencePolicy("deny"),
  unknownAllow: defaultLicencePolicy("allow"),
  exceptionsReview: { ...defaultLicencePolicy(), exceptions: "review" } satisfies LicencePolicy,
  // Hand-written policy: odd key casing, deprecated/plain keys, an explicit WITH entry.
  custom: {
    verdicts: new Map<string, Verdict>([
      ["mit", "allow"],
      ["GPL-2.0", "deny"],
      ["LGPL-2.1-only", "review"],
      ["MPL-1.1", "review"],
      ["GPL-2.0-only WITH Classpath-exception-2.0", "allow"],
      ["Apache-2.0", "allow"],
    ]),
    unknown: "deny",
  } satisfies LicencePolicy,
} as const;

type Input = string | null | { manifest: unknown };

interface Row {
  input: Input;
  policy?: keyof typeof policies;
  verdict: Verdict;
  chosen: string[];
  unknown: boolean;
  expression?: string | null;
}

const table: Row[] = [
  // Simple ids.
  { input: "MIT", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT" },
  { input: "ISC", verdict: "allow", chosen: ["ISC"], unknown: false },
  { input: "Apache-2.0", verdict: "allow", chosen: ["Apache-2.0"], unknown: false },
  { input: "BSD-3-Clause", verdict: "allow", chosen: ["BSD-3-Clause"], unknown: false },
  { input: "0BSD", verdict: "allow", chosen: ["0BSD"], unknown: false },
  { input: "MPL-2.0", verdict: "review", chosen: ["MPL-2.0"], unknown: false },
  { input: "LGPL-3.0-only", verdict: "review", chosen: ["LGPL-3.0-only"], unknown: false },
  { input: "GPL-3.0-only", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false },
  { input: "AGPL-3.0-or-later", verdict: "deny", chosen: ["AGPL-3.0-or-later"], unknown: false },
  { input: "SSPL-1.0", verdict: "deny", chosen: ["SSPL-1.0"], unknown: false },
  { input: "CC-BY-NC-4.0", verdict: "deny", chosen: ["CC-BY-NC-4.0"], unknown: false },
  { input: "CC-BY-4.0", verdict: "review", chosen: ["CC-BY-4.0"], unknown: false },
  { input: "CC-BY-3.0", verdict: "allow", chosen: ["CC-BY-3.0"], unknown: false },
  { input: "EUPL-1.2", verdict: "review", chosen: ["EUPL-1.2"], unknown: false },
  { input: "  MIT  ", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT" },

  // Case variants (ids match case-insensitively).
  { input: "mit", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT" },
  { input: "apache-2.0", verdict: "allow", chosen: ["Apache-2.0"], unknown: false, expression: "Apache-2.0" },
  { input: "gpl-3.0-only", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false },
  { input: "mit or gpl-3.0-only", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT OR GPL-3.0-only" },
  { input: "(isc And bsd-2-clause)", verdict: "allow", chosen: ["ISC", "BSD-2-Clause"], unknown: false },

  // Deprecated ids.
  { input: "GPL-3.0", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false, expression: "GPL-3.0-only" },
  { input: "GPL-2.0", verdict: "deny", chosen: ["GPL-2.0-only"], unknown: false, expression: "GPL-2.0-only" },
  { input: "LGPL-2.1", verdict: "review", chosen: ["LGPL-2.1-only"], unknown: false, expression: "LGPL-2.1-only" },
  { input: "AGPL-3.0", verdict: "deny", chosen: ["AGPL-3.0-only"], unknown: false, expression: "AGPL-3.0-only" },
  { input: "LGPL-3.0+", verdict: "review", chosen: ["LGPL-3.0-or-later"], unknown: false, expression: "LGPL-3.0-or-later" },
  {
    input: "GPL-2.0-with-classpath-exception",
    verdict: "deny",
    chosen: ["GPL-2.0-only WITH Classpath-exception-2.0"],
    unknown: false,
    expression: "GPL-2.0-only WITH Classpath-exception-2.0",
  },
  { input: "BSD-2-Clause-NetBSD", verdict: "allow", chosen: ["BSD-2-Clause"], unknown: false },

  // `+`.
  { input: "GPL-2.0+", verdict: "deny", chosen: ["GPL-2.0-or-later"], unknown: false, expression: "GPL-2.0-or-later" },
  { input: "GPL-2.0-only+", verdict: "deny", chosen: ["GPL-2.0-or-later"], unknown: false },
  { input: "MPL-1.1+", verdict: "review", chosen: ["MPL-1.1+"], unknown: false, expression: "MPL-1.1+" },

  // OR / AND / parentheses.
  { input: "MIT OR GPL-3.0-only", verdict: "allow", chosen: ["MIT"], unknown: false }, // the Dependency-Track bug
  { input: "GPL-3.0-only OR MIT", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "MIT OR Apache-2.0", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "MIT AND GPL-3.0-only", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false },
  { input: "MIT AND Apache-2.0", verdict: "allow", chosen: ["MIT", "Apache-2.0"], unknown: false },
  { input: "GPL-3.0-only OR MPL-2.0", verdict: "review", chosen: ["MPL-2.0"], unknown: false },
  {
    input: "(MIT OR GPL-3.0) AND LGPL-2.1",
    verdict: "review",
    chosen: ["LGPL-2.1-only"],
    unknown: false,
    expression: "(MIT OR GPL-3.0-only) AND LGPL-2.1-only",
  },
  // Precedence: AND binds tighter than OR.
  { input: "MIT OR Apache-2.0 AND GPL-3.0-only", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "(MIT OR Apache-2.0) AND GPL-3.0-only", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false },
  {
    input: "((MIT AND ISC) OR (GPL-3.0-only AND Apache-2.0)) AND BSD-3-Clause",
    verdict: "allow",
    chosen: ["MIT", "ISC", "BSD-3-Clause"],
    unknown: false,
  },
  { input: "(GPL-3.0-only OR (AGPL-3.0-only OR (MPL-2.0 AND MIT)))", verdict: "review", chosen: ["MPL-2.0"], unknown: false },
  { input: "((GPL-2.0-only))", verdict: "deny", chosen: ["GPL-2.0-only"], unknown: false, expression: "GPL-2.0-only" },

  // WITH exceptions.
  {
    input: "GPL-2.0-only WITH Classpath-exception-2.0",
    verdict: "deny",
    chosen: ["GPL-2.0-only WITH Classpath-exception-2.0"],
    unknown: false,
  },
  {
    input: "GPL-2.0-only WITH Classpath-exception-2.0",
    policy: "exceptionsReview",
    verdict: "review",
    chosen: ["GPL-2.0-only WITH Classpath-exception-2.0"],
    unknown: false,
  },
  {
    input: "Apache-2.0 WITH LLVM-exception",
    verdict: "allow",
    chosen: ["Apache-2.0 WITH LLVM-exception"],
    unknown: false,
  },
  {
    input: "gpl-2.0 with classpath-exception-2.0",
    policy: "custom",
    verdict: "allow",
    chosen: ["GPL-2.0-only WITH Classpath-exception-2.0"],
    unknown: false,
  },

  // Unknowns.
  { input: "LicenseRef-Proprietary", verdict: "review", chosen: ["LicenseRef-Proprietary"], unknown: true },
  { input: "LicenseRef-Proprietary", policy: "unknownDeny", verdict: "deny", chosen: ["LicenseRef-Proprietary"], unknown: true },
  { input: "DocumentRef-spdx:LicenseRef-x", verdict: "review", chosen: ["DocumentRef-spdx:LicenseRef-x"], unknown: true },
  { input: "SEE LICENSE IN LICENSE.md", verdict: "review", chosen: [], unknown: true, expression: null },
  { input: "see licence in ./COPYING", policy: "unknownDeny", verdict: "deny", chosen: [], unknown: true, expression: null },
  { input: "UNLICENSED", verdict: "review", chosen: [], unknown: true, expression: null },
  { input: "UNLICENSED", policy: "unknownDeny", verdict: "deny", chosen: [], unknown: true, expression: null },
  { input: null, verdict: "review", chosen: [], unknown: true, expression: null },
  { input: null, policy: "unknownDeny", verdict: "deny", chosen: [], unknown: true, expression: null },
  { input: "", verdict: "review", chosen: [], unknown: true, expression: null },
  { input: "   ", policy: "unknownAllow", verdict: "allow", chosen: [], unknown: true, expression: null },
  { input: "garbage", verdict: "review", chosen: [], unknown: true, expression: null },
  { input: "MIT OR", verdict: "review", chosen: [], unknown: true, expression: null },
  { input: "(MIT", policy: "unknownDeny", verdict: "deny", chosen: [], unknown: true, expression: null },
  { input: "MIT OR LicenseRef-x", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "MIT OR LicenseRef-x", policy: "unknownDeny", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "MIT AND LicenseRef-x", verdict: "review", chosen: ["LicenseRef-x"], unknown: true },
  { input: "GPL-3.0-only OR LicenseRef-x", verdict: "review", chosen: ["LicenseRef-x"], unknown: true },
  // "EUPL" must not be "corrected" to the permissive UPL-1.0.
  { input: "EUPL", verdict: "review", chosen: [], unknown: true, expression: null },

  // Ids valid in SPDX but not in the policy.
  { input: "Beerware", verdict: "review", chosen: ["Beerware"], unknown: true, expression: "Beerware" },
  { input: "Beerware", policy: "unknownDeny", verdict: "deny", chosen: ["Beerware"], unknown: true },
  { input: "MIT OR Beerware", policy: "unknownDeny", verdict: "allow", chosen: ["MIT"], unknown: false },

  // Corrections (spdx-correct).
  { input: "Apache 2", verdict: "allow", chosen: ["Apache-2.0"], unknown: false, expression: "Apache-2.0" },
  { input: "GPLv3", verdict: "deny", chosen: ["GPL-3.0-only"], unknown: false, expression: "GPL-3.0-only" },
  { input: "MIT License", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT" },
  { input: "BSD", verdict: "allow", chosen: ["BSD-2-Clause"], unknown: false, expression: "BSD-2-Clause" },
  // Compound strings are corrected operand by operand: whole-string correction would drop MIT.
  { input: "MIT OR GPL", verdict: "allow", chosen: ["MIT"], unknown: false, expression: "MIT OR GPL-3.0-or-later" },
  { input: "Apache 2 AND GPLv2", verdict: "deny", chosen: ["GPL-2.0-only"], unknown: false },

  // Legacy manifest shapes, through declaredLicence.
  { input: { manifest: { license: { type: "MIT", url: "https://x" } } }, verdict: "allow", chosen: ["MIT"], unknown: false },
  {
    input: { manifest: { licenses: [{ type: "MIT" }, { type: "Apache-2.0" }] } },
    verdict: "allow",
    chosen: ["MIT"],
    unknown: false,
    expression: "MIT OR Apache-2.0",
  },
  {
    input: { manifest: { licenses: [{ type: "GPL-2.0" }, { type: "MIT" }] } },
    verdict: "allow",
    chosen: ["MIT"],
    unknown: false,
    expression: "GPL-2.0-only OR MIT",
  },
  { input: { manifest: { licence: "ISC" } }, verdict: "allow", chosen: ["ISC"], unknown: false },
  { input: { manifest: { name: "x", version: "1.0.0" } }, verdict: "review", chosen: [], unknown: true, expression: null },

  // Hand-written policy: keys matched case-insensitively and through -only/-or-later variants.
  { input: "MIT", policy: "custom", verdict: "allow", chosen: ["MIT"], unknown: false },
  { input: "GPL-2.0-only", policy: "custom", verdict: "deny", chosen: ["GPL-2.0-only"], unknown: false },
  { input: "GPL-2.0+", policy: "custom", verdict: "deny", chosen: ["GPL-2.0-or-later"], unknown: false },
  { input: "LGPL-2.1-or-later", policy: "custom", verdict: "review", chosen: ["LGPL-2.1-or-later"], unknown: false },
  { input: "ISC", policy: "custom", verdict: "deny", chosen: ["ISC"], unknown: true },
  { input: "ISC OR Apache-2.0", policy: "custom", verdict: "allow", chosen: ["Apache-2.0"], unknown: false },
];

function label(row: Row): string {
  const input = row.input !== null && typeof row.input === "object" ? JSON.stringify(row.input.manifest) : JSON.stringify(row.input);
  return `${input} [${row.policy ?? "default"}] → ${row.verdict}`;
}

describe("evaluateLicence table", () => {
  it("has at least 40 rows", () => {
    expect(table.length).toBeGreaterThanOrEqual(40);
  });

  it.each(table.map((row) => [label(row), row] as const))("%s", (_, row) => {
    const declared = row.input !== null && typeof row.input === "object" ? declaredLicence(row.input.manifest) : row.input;
    const result = evaluateLicence(declared, policies[row.policy ?? "default"]);
    expect(result.verdict).toBe(row.verdict);
    expect(result.chosen).toEqual(row.chosen);
    expect(result.unknown).toBe(row.unknown);
    if (row.expression !== undefined) expect(result.expression).toBe(row.expression);
    expect(result.declared).toBe(declared);
    expect(result.reason.length).toBeGreaterThan(0);
  });
});

describe("evaluateLicence reasons", () => {
  const policy = defaultLicencePolicy();

  it("names the licence an OR was allowed through", () => {
    expect(evaluateLicence("MIT OR GPL-3.0-only", policy).reason).toBe("MIT OR GPL-3.0-only: allowed via MIT");
  });

  it("names the denied licence", () => {
    expect(evaluateLicence("GPL-3.0-only", policy).reason).toBe("GPL-3.0-only is denied by policy");
    expect(evaluateLicence("MIT AND GPL-3.0-only", policy).reason).toContain("GPL-3.0-only is denied by policy");
  });

  it("says when an id is not in policy", () => {
    expect(evaluateLicence("Beerware", policy).reason).toContain("not in policy");
  });

  it("says when the declaration was corrected", () => {
    expect(evaluateLicence("Apache 2", policy).reason).toContain('corrected from "Apache 2"');
  });

  it("explains wholly unknown declarations", () => {
    expect(evaluateLicence(null, policy).reason).toContain("no licence declared");
    expect(evaluateLicence("UNLICENSED", policy).reason).toContain("proprietary");
    expect(evaluateLicence("SEE LICENSE IN LICENSE.md", policy).reason).toContain("custom licence");
  });

  it("does not treat UNLICENSED as the Unlicense", () => {
    expect(normaliseLicence("UNLICENSED")).toEqual({ ok: false, kind: "unlicensed" });
    expect(evaluateLicence("Unlicense", policy).verdict).toBe("allow");
  });
});

describe("declaredLicence", () => {
  const cases: Array<[unknown, string | null]> = [
    [{ license: "MIT" }, "MIT"],
    [{ license: " (MIT OR Apache-2.0) " }, "(MIT OR Apache-2.0)"],
    [{ license: { type: "ISC", url: "https://opensource.org/licenses/ISC" } }, "ISC"],
    [{ licenses: [{ type: "MIT" }] }, "MIT"],
    [{ licenses: [{ type: "MIT" }, { type: "Apache-2.0" }] }, "MIT OR Apache-2.0"],
    [{ licenses: [{ type: "MIT" }, { type: "MIT" }] }, "MIT"],
    [{ licenses: [{ type: "Apache 2" }, "GPL-2.0"] }, "(Apache 2) OR GPL-2.0"],
    [{ licenses: { type: "BSD-3-Clause" } }, "BSD-3-Clause"],
    [{ licence: "ISC" }, "ISC"],
    [{ licence: { type: "MIT" } }, "MIT"],
    [{ license: "", licenses: [{ type: "MIT" }] }, "MIT"],
    [{ license: "MIT", licenses: [{ type: "GPL-3.0" }] }, "MIT"],
    [{ license: ["MIT", "ISC"] }, "MIT OR ISC"],
    [{ license: { url: "https://x" } }, null],
    [{ licenses: [] }, null],
    [{ license: 42 }, null],
    [{}, null],
    [null, null],
    ["MIT", null],
    [[{ type: "MIT" }], null],
  ];

  it.each(cases.map(([manifest, expected]) => [JSON.stringify(manifest), manifest, expected] as const))(
    "%s",
    (_, manifest, expected) => {
      expect(declaredLicence(manifest)).toBe(expected);
    },
  );

  it("yields an evaluable expression for a corrected legacy entry", () => {
    const result = evaluateLicence(declaredLicence({ licenses: [{ type: "Apache 2" }, "GPL-2.0"] }), defaultLicencePolicy());
    expect(result.expression).toBe("Apache-2.0 OR GPL-2.0-only");
    expect(result.verdict).toBe("allow");
  });
});

describe("defaultLicenceVerdicts", () => {
  const deprecated = new Set<string>(deprecatedLicenceIds);

  it("uses only current, canonical SPDX ids", () => {
    for (const [id] of defaultLicenceVerdicts) {
      expect(isSpdxLicenceId(id), id).toBe(true);
      expect(deprecated.has(id), id).toBe(false);
    }
  });

  it("lists each id once", () => {
    const ids = defaultLicenceVerdicts.map(([id]) => id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("defaults unknown to review and exceptions to as-base", () => {
    const policy = defaultLicencePolicy();
    expect(policy.unknown).toBe("review");
    expect(policy.exceptions).toBe("as-base");
    expect(defaultLicencePolicy("deny").unknown).toBe("deny");
  });
});
