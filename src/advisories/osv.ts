/**
 * OSV (https://ossf.github.io/osv-schema/) documents: validation and normalisation to what the
 * gate needs. Validation is lenient (unknown fields are kept and ignored) but structural: a
 * document whose known fields have the wrong shape is rejected with an {@link OsvParseError}.
 */
import semver from "semver";
import { z } from "zod";

export type Severity = "low" | "moderate" | "high" | "critical" | "unknown";
export const severities: readonly Severity[] = ["low", "moderate", "high", "critical", "unknown"];

/** One event of a range. Exactly one of the fields is set (checked on parse). */
export interface OsvEvent {
  introduced?: string;
  fixed?: string;
  last_affected?: string;
  limit?: string;
}

export interface OsvRange {
  /** SEMVER, ECOSYSTEM or GIT (others are kept but never evaluated). */
  type: string;
  repo?: string;
  events: OsvEvent[];
}

export interface AffectedPackage {
  packageName: string;
  ranges: OsvRange[];
  versions: string[];
}

export interface NormalisedAdvisory {
  id: string;
  aliases: string[];
  summary: string | null;
  severity: Severity;
  cvssVector: string | null;
  cvssScore: number | null;
  /** id (or an alias) starts with "MAL-", or the document carries OpenSSF malicious-packages origins. */
  malicious: boolean;
  published: Date | null;
  modified: Date | null;
  withdrawn: Date | null;
  /** Only entries of ecosystem "npm". */
  affected: AffectedPackage[];
  /** Every `fixed` event of the npm SEMVER/ECOSYSTEM ranges, de-duplicated, ascending. */
  fixedVersions: string[];
  /** First ADVISORY reference, else first WEB reference, else null. */
  url: string | null;
  /** database_specific.cwe_ids */
  cwe: string[];
  /** The raw document. */
  data: unknown;
}

/** A document that is not valid OSV (wrong types, missing id, malformed events or dates). */
export class OsvParseError extends Error {
  override name = "OsvParseError";
}

// ---------------------------------------------------------------------------------------------
// Schema

const eventKeys = ["introduced", "fixed", "last_affected", "limit"] as const;

export const osvEventSchema = z
  .looseObject({
    introduced: z.string().optional(),
    fixed: z.string().optional(),
    last_affected: z.string().optional(),
    limit: z.string().optional(),
  })
  .refine((e) => eventKeys.filter((k) => e[k] !== undefined).length === 1, {
    message: "an event must have exactly one of introduced, fixed, last_affected, limit",
  })
  .transform((e): OsvEvent => {
    const out: OsvEvent = {};
    for (const k of eventKeys) if (e[k] !== undefined) out[k] = e[k];
    return out;
  });

export const osvRangeSchema = z
  .looseObject({
    type: z.string().min(1),
    repo: z.string().nullish(),
    events: z.array(osvEventSchema),
  })
  .transform((r): OsvRange => (r.repo ? { type: r.type, repo: r.repo, events: r.events } : { type: r.type, events: r.events }));

/** Parses `ranges` as stored (AdvisoryAffected.ranges) or as found in a document. Throws on bad shape. */
export function parseRanges(json: unknown): OsvRange[] {
  const r = z.array(osvRangeSchema).safeParse(json);
  if (!r.success) throw new OsvParseError(`invalid OSV ranges: ${describeIssues(r.error)}`);
  return r.data;
}

const dateString = z
  .string()
  .refine((s) => !Number.isNaN(Date.parse(s)), { message: "not a valid RFC 3339 date" });

const severityEntrySchema = z.looseObject({ type: z.string(), score: z.string() });

const osvDocumentSchema = z.looseObject({
  schema_version: z.string().nullish(),
  id: z.string().trim().min(1),
  modified: dateString.nullish(),
  published: dateString.nullish(),
  withdrawn: dateString.nullish(),
  aliases: z.array(z.string()).nullish(),
  related: z.array(z.string()).nullish(),
  summary: z.string().nullish(),
  details: z.string().nullish(),
  severity: z.array(severityEntrySchema).nullish(),
  affected: z
    .array(
      z.looseObject({
        package: z
          .looseObject({
            ecosystem: z.string(),
            name: z.string(),
            purl: z.string().nullish(),
          })
          .nullish(),
        severity: z.array(severityEntrySchema).nullish(),
        ranges: z.array(osvRangeSchema).nullish(),
        versions: z.array(z.string()).nullish(),
        database_specific: z.record(z.string(), z.unknown()).nullish(),
        ecosystem_specific: z.record(z.string(), z.unknown()).nullish(),
      }),
    )
    .nullish(),
  references: z.array(z.looseObject({ type: z.string(), url: z.string() })).nullish(),
  database_specific: z.record(z.string(), z.unknown()).nullish(),
});

type OsvDocument = z.infer<typeof osvDocumentSchema>;

function describeIssues(error: z.ZodError): string {
  const shown = error.issues.slice(0, 3).map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`);
  const more = error.issues.length > 3 ? ` (+${error.issues.length - 3} more)` : "";
  return shown.join("; ") + more;
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/**
 * Validates one OSV document and normalises it. Returns null when it affects no npm package;
 * throws {@link OsvParseError} when it is malformed.
 */
export function normaliseOsv(doc: unknown): NormalisedAdvisory | null {
  const parsed = osvDocumentSchema.safeParse(doc);
  if (!parsed.success) {
    const id = isRecord(doc) && typeof doc.id === "string" ? `${doc.id}: ` : "";
    throw new OsvParseError(`${id}not a valid OSV document: ${describeIssues(parsed.error)}`);
  }
  const d = parsed.data;

  const npmEntries = (d.affected ?? []).filter(
    (a) => a.package != null && a.package.ecosystem.trim().toLowerCase() === "npm" && a.package.name.trim() !== "",
  );
  if (npmEntries.length === 0) return null;

  const affected: AffectedPackage[] = npmEntries.map((a) => ({
    packageName: a.package!.name.trim(),
    ranges: a.ranges ?? [],
    versions: a.versions ?? [],
  }));

  const id = d.id;
  const aliases = unique(d.aliases ?? []);
  const malicious =
    isMalId(id) ||
    aliases.some(isMalId) ||
    hasMaliciousOrigins(d.database_specific) ||
    npmEntries.some((a) => hasMaliciousOrigins(a.database_specific));

  const { cvssVector, cvssScore } = pickCvss(d, npmEntries);
  const severity = malicious ? "critical" : severityOf(d.database_specific, cvssVector, cvssScore);

  return {
    id,
    aliases,
    summary: nonEmpty(d.summary),
    severity,
    cvssVector,
    cvssScore,
    malicious,
    published: toDate(d.published),
    modified: toDate(d.modified),
    withdrawn: toDate(d.withdrawn),
    affected,
    fixedVersions: fixedVersionsOf(affected),
    url: advisoryUrlOf(d),
    cwe: cweIdsOf(d),
    data: doc,
  };
}

/** Every `fixed` event value of SEMVER/ECOSYSTEM ranges, de-duplicated, semver-ascending. */
export function fixedVersionsOf(affected: readonly { ranges: readonly OsvRange[] }[]): string[] {
  const fixed = new Set<string>();
  for (const a of affected) {
    for (const r of a.ranges) {
      if (r.type !== "SEMVER" && r.type !== "ECOSYSTEM") continue;
      for (const e of r.events) if (e.fixed !== undefined && e.fixed.trim() !== "") fixed.add(e.fixed.trim());
    }
  }
  return [...fixed].sort((a, b) => {
    const va = semver.valid(a);
    const vb = semver.valid(b);
    if (va && vb) return semver.compare(va, vb);
    if (va) return -1;
    if (vb) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/** Maps a GHSA-style severity word (LOW/MODERATE/MEDIUM/HIGH/CRITICAL, any case) to ours. */
export function severityFromLabel(label: unknown): Severity | null {
  if (typeof label !== "string") return null;
  switch (label.trim().toUpperCase()) {
    case "LOW":
      return "low";
    case "MODERATE":
    case "MEDIUM":
      return "moderate";
    case "HIGH":
      return "high";
    case "CRITICAL":
      return "critical";
    default:
      return null;
  }
}

/** CVSS qualitative bands: < 4 low, < 7 moderate, < 9 high, else critical (0.0 counts as low). */
export function severityFromScore(score: number): Severity {
  if (score < 4) return "low";
  if (score < 7) return "moderate";
  if (score < 9) return "high";
  return "critical";
}

function severityOf(databaseSpecific: Record<string, unknown> | null | undefined, cvssVector: string | null, cvssScore: number | null): Severity {
  const fromLabel = severityFromLabel(databaseSpecific?.severity);
  if (fromLabel) return fromLabel;
  if (cvssVector !== null && cvssScore !== null) return severityFromScore(cvssScore);
  return "unknown";
}

/** CVSS v3.x vector and its computed base score; else a v4 vector (score null); else nothing. */
function pickCvss(
  d: OsvDocument,
  npmEntries: { severity?: { type: string; score: string }[] | null }[],
): { cvssVector: string | null; cvssScore: number | null } {
  const all = [...(d.severity ?? []), ...npmEntries.flatMap((a) => a.severity ?? [])];
  const v3 = all.find((s) => s.type.toUpperCase() === "CVSS_V3");
  if (v3) return { cvssVector: v3.score.trim(), cvssScore: cvss3BaseScore(v3.score) };
  const v4 = all.find((s) => s.type.toUpperCase() === "CVSS_V4");
  if (v4) return { cvssVector: v4.score.trim(), cvssScore: null };
  return { cvssVector: null, cvssScore: null };
}

/** First ADVISORY reference url, else first WEB one, else null. Lenient: any input. */
export function advisoryUrlOf(doc: unknown): string | null {
  const refs = isRecord(doc) && Array.isArray(doc.references) ? doc.references.filter(isRecord) : [];
  for (const wanted of ["ADVISORY", "WEB"]) {
    for (const r of refs) {
      if (typeof r.type === "string" && r.type.toUpperCase() === wanted && typeof r.url === "string" && r.url.trim() !== "") {
        return r.url.trim();
      }
    }
  }
  return null;
}

/** `database_specific.cwe_ids` (GHSA), de-duplicated. Lenient: any input. */
export function cweIdsOf(doc: unknown): string[] {
  const ds = isRecord(doc) ? doc.database_specific : undefined;
  const ids = isRecord(ds) ? ds.cwe_ids : undefined;
  if (!Array.isArray(ids)) return [];
  return unique(ids.filter((x): x is string => typeof x === "string" && x.trim() !== "").map((x) => x.trim()));
}

function isMalId(id: string): boolean {
  return id.trim().toUpperCase().startsWith("MAL-");
}

/** OpenSSF malicious-packages records carry `malicious-packages-origins` in database_specific. */
function hasMaliciousOrigins(databaseSpecific: Record<string, unknown> | null | undefined): boolean {
  const origins = databaseSpecific?.["malicious-packages-origins"];
  return Array.isArray(origins) && origins.length > 0;
}

function toDate(s: string | null | undefined): Date | null {
  if (s == null) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : new Date(t);
}

function nonEmpty(s: string | null | undefined): string | null {
  const t = s?.trim();
  return t ? t : null;
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

// ---------------------------------------------------------------------------------------------
// CVSS v3.x base score (FIRST CVSS v3.1 specification, section 7.1 and Appendix A)

const cvssWeights = {
  AV: { N: 0.85, A: 0.62, L: 0.55, P: 0.2 },
  AC: { L: 0.77, H: 0.44 },
  UI: { N: 0.85, R: 0.62 },
  C: { H: 0.56, L: 0.22, N: 0 },
  I: { H: 0.56, L: 0.22, N: 0 },
  A: { H: 0.56, L: 0.22, N: 0 },
} as const;
const privilegesRequired = {
  U: { N: 0.85, L: 0.62, H: 0.27 },
  C: { N: 0.85, L: 0.68, H: 0.5 },
} as const;
const baseMetrics = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"] as const;

/** CVSS v3.1 Roundup: the smallest number with one decimal that is >= x, robust to float error. */
export function cvssRoundup(x: number): number {
  const intInput = Math.round(x * 100_000);
  if (intInput % 10_000 === 0) return intInput / 100_000;
  return (Math.floor(intInput / 10_000) + 1) / 10;
}

/**
 * Base score of a `CVSS:3.0/...` or `CVSS:3.1/...` vector (both scored with the 3.1 formula),
 * or null when the vector is not a complete, well-formed v3 base vector. Temporal and
 * environmental metrics may be present and are ignored.
 */
export function cvss3BaseScore(vector: string): number | null {
  const parts = vector.trim().split("/");
  if (!/^CVSS:3\.[01]$/.test(parts[0] ?? "")) return null;
  const m = new Map<string, string>();
  for (const part of parts.slice(1)) {
    const match = /^([A-Za-z]+):([A-Za-z])$/.exec(part);
    if (!match) return null;
    const [, key, value] = match as unknown as [string, string, string];
    if (m.has(key)) return null;
    m.set(key, value);
  }
  if (!baseMetrics.every((k) => m.has(k))) return null;

  const pick = <T extends Record<string, number>>(table: T, key: string): number | null =>
    Object.hasOwn(table, key) ? (table[key as keyof T] as number) : null;

  const scope = m.get("S")!;
  if (scope !== "U" && scope !== "C") return null;
  const av = pick(cvssWeights.AV, m.get("AV")!);
  const ac = pick(cvssWeights.AC, m.get("AC")!);
  const pr = pick(privilegesRequired[scope], m.get("PR")!);
  const ui = pick(cvssWeights.UI, m.get("UI")!);
  const c = pick(cvssWeights.C, m.get("C")!);
  const i = pick(cvssWeights.I, m.get("I")!);
  const a = pick(cvssWeights.A, m.get("A")!);
  if (av === null || ac === null || pr === null || ui === null || c === null || i === null || a === null) return null;

  const iss = 1 - (1 - c) * (1 - i) * (1 - a);
  const impact = scope === "U" ? 6.42 * iss : 7.52 * (iss - 0.029) - 3.25 * Math.pow(iss - 0.02, 15);
  const exploitability = 8.22 * av * ac * pr * ui;
  if (impact <= 0) return 0;
  return scope === "U"
    ? cvssRoundup(Math.min(impact + exploitability, 10))
    : cvssRoundup(Math.min(1.08 * (impact + exploitability), 10));
}
