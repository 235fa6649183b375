/**
 * Scan policy: findings and matched advisories → reject (with a code), needs review (with reasons)
 * or clean. Malicious or critical → reject; high vulnerabilities, install scripts, obfuscation,
 * other high findings and stale advisory data → review; the rest is informational.
 */
import type { PipelineCode } from "../errors.ts";
import type { Finding } from "../scan/findings.ts";

export interface MatchedAdvisory {
  id: string;
  aliases: string[];
  summary: string | null;
  severity: "low" | "moderate" | "high" | "critical" | "unknown";
  malicious: boolean;
  fixedVersions: string[];
  url: string | null;
}

export type ScanVerdict =
  | { kind: "reject"; code: PipelineCode; message: string }
  | { kind: "review"; reasons: string[] }
  | { kind: "clean" };

const REJECT_RULES: Record<string, PipelineCode> = {
  manifest_missing: "manifest_mismatch",
  manifest_invalid: "manifest_mismatch",
  manifest_mismatch: "manifest_mismatch",
  path_traversal: "unsafe_tarball",
  decompression_bomb: "unsafe_tarball",
};

const REVIEW_LABELS: Record<string, string> = {
  install_script: "install scripts",
  install_time_capability: "install-time code uses the network, child processes or the environment",
  obfuscated_code: "obfuscated code",
  link_entry: "symlinks or hardlinks in the tarball",
  special_file: "device or special files in the tarball",
  advisory_data_stale: "advisory data is missing or stale",
  advisory_uncomparable: "an advisory could not be evaluated for this version",
};

export function describeAdvisory(a: MatchedAdvisory): string {
  const fixed = a.fixedVersions.length > 0 ? `, fixed in ${a.fixedVersions.join(" / ")}` : ", no fixed version";
  return `${a.id} (${a.severity}) ${a.summary ?? "no summary"}${a.malicious ? "" : fixed}`;
}

export function scanVerdict(pkg: string, findings: readonly Finding[], advisories: readonly MatchedAdvisory[]): ScanVerdict {
  const malicious = advisories.find((a) => a.malicious);
  if (malicious) return { kind: "reject", code: "malicious", message: `${pkg} is reported malicious: ${describeAdvisory(malicious)}` };
  for (const f of findings) {
    const code = REJECT_RULES[f.rule];
    if (code) return { kind: "reject", code, message: `${pkg}: ${f.message}` };
  }
  const critical = advisories.find((a) => a.severity === "critical");
  if (critical) return { kind: "reject", code: "critical_vulnerability", message: `${pkg}: ${describeAdvisory(critical)}` };
  const reasons = new Set<string>();
  for (const a of advisories) {
    if (a.severity === "high" || a.severity === "unknown") reasons.add(`vulnerability ${describeAdvisory(a)}`);
  }
  for (const f of findings) {
    const label = REVIEW_LABELS[f.rule];
    if (label) reasons.add(label);
    else if (f.severity === "high" || f.severity === "critical") reasons.add(`${f.rule}: ${f.message}`);
  }
  return reasons.size > 0 ? { kind: "review", reasons: [...reasons] } : { kind: "clean" };
}
