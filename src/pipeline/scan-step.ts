/**
 * Stage `scanning`: stream the stored tarball through the scanner (never extracted), match the
 * version against imported advisories, then decide: reject, wait for review, or approve by policy.
 */
import { advisoriesFor, advisoryDataAge } from "../advisories/store.ts";
import { matchAdvisory, VersionCompareError } from "../advisories/match.ts";
import { reviewReasons } from "../policy/approval.ts";
import type { LicenceEvaluation } from "../policy/licence-evaluate.ts";
import { scanVerdict, type MatchedAdvisory } from "../policy/scan-verdict.ts";
import type { Finding } from "../scan/findings.ts";
import { scanTarball, TarballCorruptError } from "../scan/tarball-scan.ts";
import type { ClaimedRow } from "../queue/sql.ts";
import type { PipelineContext, UpstreamFacts } from "./context.ts";
import { permanent, type StepOutcome } from "./step.ts";

export type ScanContext = PipelineContext;

export async function scanStep(row: ClaimedRow, ctx: ScanContext): Promise<StepOutcome> {
  const pkg = `${row.name}@${row.version}`;
  const download = row.results.download as { storageKey?: string } | undefined;
  if (!download?.storageKey || (await ctx.store.size(download.storageKey)) === null) {
    throw permanent("tarball_corrupt", `${pkg}: no stored tarball to scan; retry the package to download it again`);
  }
  let scan;
  try {
    scan = await scanTarball(ctx.store.path(download.storageKey), { name: row.name, version: row.version }, {
      maxUnpackedBytes: ctx.config.MAX_UNPACKED_BYTES,
      maxCompressionRatio: ctx.config.MAX_COMPRESSION_RATIO,
    });
  } catch (err) {
    if (err instanceof TarballCorruptError) throw permanent("tarball_corrupt", `${pkg}: ${err.message}`);
    throw err;
  }
  const findings: Finding[] = [...scan.findings];
  const advisories = await matchedAdvisories(row, ctx, findings);
  const verdict = scanVerdict(pkg, findings, advisories);
  const patch = {
    scan: {
      findings,
      advisories,
      verdict: verdict.kind,
      files: scan.files,
      unpackedBytes: scan.unpackedBytes,
      installScripts: scan.installScripts,
    },
  };
  if (verdict.kind === "reject") return { kind: "reject", code: verdict.code, message: verdict.message, patch };

  const reasons = reviewReasons({
    licence: row.results.licence as LicenceEvaluation | undefined,
    scan: verdict,
    publishedAt: (row.results.upstream as UpstreamFacts | undefined)?.publishedAt ?? null,
    now: new Date(),
    autoApprove: ctx.config.AUTO_APPROVE,
    minReleaseAgeHours: ctx.config.MIN_RELEASE_AGE_HOURS,
  });
  const override = row.results.override as { by: string; comment: string | null; overrode: { code: string | null } } | undefined;
  if (override) {
    // An admin overrode an earlier rejection; the bytes have now been verified and scanned clean of
    // anything that rejects, so the admin's approval stands.
    return {
      kind: "advance",
      to: "approved",
      via: "pending_approval",
      actor: override.by,
      reason: `approved by override of ${override.overrode.code ?? "a rejection"}${override.comment ? `: ${override.comment}` : ""}`,
      patch: { ...patch, review: reasons.length > 0 ? { reasons } : null, approval: { ...override, at: new Date().toISOString() } },
    };
  }
  if (reasons.length === 0) {
    return {
      kind: "advance",
      to: "approved",
      via: "pending_approval",
      actor: "policy",
      reason: "approved by policy: licence allowed, scan clean, release old enough",
      patch: { ...patch, review: null, approval: { by: "policy", at: new Date().toISOString() } },
    };
  }
  return {
    kind: "advance",
    to: "pending_approval",
    reason: `awaiting approval: ${reasons.join("; ")}`,
    reasonCode: "needs_review",
    reasonMessage: reasons.join("; "),
    patch: { ...patch, review: { reasons } },
    details: { reasons },
  };
}

/** Advisories affecting this version; stale or unevaluable data becomes a finding (never "not affected"). */
async function matchedAdvisories(row: ClaimedRow, ctx: ScanContext, findings: Finding[]): Promise<MatchedAdvisory[]> {
  const age = await advisoryDataAge(ctx.db);
  const maxAgeMs = ctx.config.ADVISORY_MAX_AGE_DAYS * 86_400_000;
  if (!age || Date.now() - age.getTime() > maxAgeMs) {
    findings.push({
      rule: "advisory_data_stale",
      severity: "moderate",
      file: null,
      message: age
        ? `advisory data was last imported ${age.toISOString()}, older than ADVISORY_MAX_AGE_DAYS (${ctx.config.ADVISORY_MAX_AGE_DAYS})`
        : "no advisory data has been imported; run npm run advisories:import",
    });
  }
  const matched: MatchedAdvisory[] = [];
  for (const adv of await advisoriesFor(ctx.db, row.name)) {
    let hit;
    try {
      hit = matchAdvisory(row.name, row.version, adv);
    } catch (err) {
      if (!(err instanceof VersionCompareError)) throw err;
      findings.push({ rule: "advisory_uncomparable", severity: "high", file: null, message: `${adv.id}: ${err.message}` });
      continue;
    }
    if (hit.affected) {
      matched.push({
        id: adv.id,
        aliases: adv.aliases,
        summary: adv.summary,
        severity: adv.severity,
        malicious: adv.malicious,
        fixedVersions: adv.fixedVersions,
        url: adv.url,
      });
    }
  }
  return matched;
}
