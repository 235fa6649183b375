/**
 * Finding types shared by the tarball scanner's rules. Rule ids are stable strings: policy and
 * the UI key on them.
 */

export type Severity = "info" | "low" | "moderate" | "high" | "critical";

export const severities: readonly Severity[] = ["info", "low", "moderate", "high", "critical"];

export type RuleId =
  | "path_traversal"
  | "link_entry"
  | "special_file"
  | "duplicate_entry"
  | "nonstandard_root"
  | "decompression_bomb"
  | "manifest_missing"
  | "manifest_invalid"
  | "manifest_mismatch"
  | "install_script"
  | "install_time_capability"
  | "native_binary"
  | "obfuscated_code";

/** Default severity of each rule; a rule may pick another level for a particular finding. */
export const ruleSeverity: Record<RuleId, Severity> = {
  path_traversal: "critical",
  link_entry: "high",
  special_file: "high",
  duplicate_entry: "moderate",
  nonstandard_root: "info",
  decompression_bomb: "critical",
  manifest_missing: "critical",
  manifest_invalid: "critical",
  manifest_mismatch: "critical",
  install_script: "high",
  install_time_capability: "high",
  native_binary: "moderate",
  obfuscated_code: "high",
};

export interface Finding {
  rule: string;
  severity: Severity;
  /** Path relative to the package root (top folder stripped, as npm installs it), or null. */
  file: string | null;
  message: string;
  evidence?: string;
}

export function severityRank(s: Severity): number {
  return severities.indexOf(s);
}

export function compareSeverity(a: Severity, b: Severity): number {
  return severityRank(a) - severityRank(b);
}

/** The highest severity among `findings`, or null when there are none. */
export function maxSeverity(findings: readonly Finding[]): Severity | null {
  let best: Severity | null = null;
  for (const f of findings) if (best === null || severityRank(f.severity) > severityRank(best)) best = f.severity;
  return best;
}

const MAX_EVIDENCE = 300;

/** Evidence text on one line, at most 300 characters. */
export function clip(text: string, max = MAX_EVIDENCE): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/**
 * Collects findings, keeping at most `perRule` of each rule so a hostile archive with a million
 * symlinks cannot blow up the result; the overflow is summarised in one extra finding.
 */
export class FindingCollector {
  private readonly list: Finding[] = [];
  private readonly counts = new Map<string, number>();
  private readonly overflowSeverity = new Map<string, Severity>();

  constructor(private readonly perRule = 25) {}

  add(rule: RuleId, message: string, options: { file?: string | null; evidence?: string; severity?: Severity } = {}): void {
    const severity = options.severity ?? ruleSeverity[rule];
    const n = (this.counts.get(rule) ?? 0) + 1;
    this.counts.set(rule, n);
    if (n > this.perRule) {
      const prev = this.overflowSeverity.get(rule);
      if (prev === undefined || severityRank(severity) > severityRank(prev)) this.overflowSeverity.set(rule, severity);
      return;
    }
    const finding: Finding = { rule, severity, file: options.file ?? null, message };
    if (options.evidence !== undefined && options.evidence !== "") finding.evidence = clip(options.evidence);
    this.list.push(finding);
  }

  has(rule: RuleId): boolean {
    return (this.counts.get(rule) ?? 0) > 0;
  }

  findings(): Finding[] {
    const out = [...this.list];
    for (const [rule, severity] of this.overflowSeverity) {
      const extra = (this.counts.get(rule) ?? 0) - this.perRule;
      out.push({ rule, severity, file: null, message: `${extra} more ${rule} finding(s) in this tarball were not listed individually.` });
    }
    return out;
  }
}
