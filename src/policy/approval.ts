/**
 * Automatic approval policy (AUTO_APPROVE=clean): approve only when the licence is allowed, the
 * scan is clean, and the version has been public for MIN_RELEASE_AGE_HOURS. Everything else waits
 * for a person, with every reason listed. Unknown facts (no publish time) never approve.
 */
import type { LicenceEvaluation } from "./licence-evaluate.ts";
import type { ScanVerdict } from "./scan-verdict.ts";

export interface ApprovalInput {
  licence: LicenceEvaluation | undefined;
  scan: ScanVerdict;
  publishedAt: string | null;
  now: Date;
  autoApprove: "clean" | "never";
  minReleaseAgeHours: number;
}

/** Reasons a person must look at; empty means the policy approves. */
export function reviewReasons(input: ApprovalInput): string[] {
  const reasons: string[] = [];
  if (!input.licence) reasons.push("licence was not evaluated");
  else if (input.licence.verdict !== "allow") reasons.push(`licence needs review: ${input.licence.reason}`);
  if (input.scan.kind === "review") reasons.push(...input.scan.reasons);
  const published = input.publishedAt ? Date.parse(input.publishedAt) : NaN;
  if (Number.isNaN(published)) reasons.push("publish time unknown");
  else {
    const ageHours = (input.now.getTime() - published) / 3_600_000;
    if (ageHours < input.minReleaseAgeHours) {
      reasons.push(`published ${Math.max(0, Math.floor(ageHours))} h ago; minimum release age is ${input.minReleaseAgeHours} h`);
    }
  }
  if (input.autoApprove === "never") reasons.push("automatic approval is off (AUTO_APPROVE=never)");
  return reasons;
}
