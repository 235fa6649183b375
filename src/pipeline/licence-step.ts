/**
 * Stage `checking_licence`: read the version's declared licence from the upstream packument and
 * evaluate it against the licence policy. `deny` rejects (`licence_denied`); `review` continues but
 * blocks automatic approval; a missing version fails permanently (`version_not_found`).
 */
import { declaredLicence } from "../policy/licence-declared.ts";
import { evaluateLicence, type LicencePolicy } from "../policy/licence-evaluate.ts";
import type { ClaimedRow } from "../queue/sql.ts";
import type { PipelineContext } from "./context.ts";
import type { StepOutcome } from "./step.ts";
import { installManifest, upstreamFacts, versionManifest } from "./upstream-facts.ts";

export type LicenceContext = PipelineContext & { licencePolicy: () => Promise<LicencePolicy> };

export async function licenceStep(row: ClaimedRow, ctx: LicenceContext): Promise<StepOutcome> {
  const packument = await ctx.registry.packument(row.name, ctx.signal);
  const manifest = versionManifest(packument, row.name, row.version);
  const policy = await ctx.licencePolicy();
  const evaluation = evaluateLicence(declaredLicence(manifest), { ...policy, exceptions: ctx.config.LICENCE_EXCEPTIONS });
  const patch = { licence: evaluation, upstream: upstreamFacts(packument, manifest, row.version), manifest: installManifest(manifest) };
  if (evaluation.verdict === "deny") {
    return { kind: "reject", code: "licence_denied", message: `licence ${evaluation.reason}`, patch };
  }
  return {
    kind: "advance",
    patch,
    reason: `licence ${evaluation.expression ?? "unknown"}: ${evaluation.verdict}`,
    details: { licence: evaluation.expression, verdict: evaluation.verdict },
  };
}
