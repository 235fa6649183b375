/**
 * Evaluating a declared licence against a licence policy.
 *
 * The declaration is normalised to an SPDX expression tree (see licence-normalise.ts) and
 * evaluated bottom-up with the order allow > review > deny:
 *   - `A OR B`   → the better side (the licensee may choose); on a tie the left side decides;
 *   - `A AND B`  → the worse side (both apply); on a tie both sides decide;
 *   - `X WITH E` → X's verdict (`exceptions: "as-base"`, the default), or `review`
 *                  (`exceptions: "review"`). An explicit policy entry for the whole
 *                  "X WITH E" text takes precedence over both.
 *   - `X+` / `X-or-later` → looked up as `X-or-later`, then `X+`, then the base `X` / `X-only`
 *                  (an "or later" grant includes the base version's terms).
 *   - deprecated / plain ids → the id itself, then its `-only` / `-or-later` variants.
 * Policy ids are matched case-insensitively.
 *
 * Leaves that cannot be judged get `policy.unknown`: `LicenseRef-…`/`DocumentRef-…` (not an
 * SPDX-listed licence) and SPDX ids absent from the policy ("not in policy"). A declaration
 * that yields no expression at all (missing, "UNLICENSED", "SEE LICENSE IN …", unparsable)
 * is wholly unknown: `expression: null`, `verdict: policy.unknown`, `chosen: []`.
 *
 * `unknown` is true when the declaration is wholly unknown, or when an unknown leaf is among
 * the leaves that decided the verdict (so "MIT OR LicenseRef-x" is a known allow via MIT,
 * while "MIT AND LicenseRef-x" is unknown).
 */
import { leafText, normaliseLicence, type LicenceLeaf, type LicenceNode, type LicenceRefLeaf } from "./licence-normalise.ts";

export type Verdict = "allow" | "review" | "deny";

export interface LicencePolicy {
  verdicts: ReadonlyMap<string, Verdict>;
  unknown: Verdict;
  exceptions?: "as-base" | "review";
}

export interface LicenceEvaluation {
  /** The declaration as given. */
  declared: string | null;
  /** Normalised SPDX expression; null when the declaration yields none (missing, UNLICENSED, …). */
  expression: string | null;
  /** Overall verdict. */
  verdict: Verdict;
  /** True when the licence (or a deciding part of it) could not be identified or is not in policy. */
  unknown: boolean;
  /** Leaves that decided the verdict, as printed in `expression` (e.g. "GPL-2.0-only WITH Classpath-exception-2.0"). */
  chosen: string[];
  /** Human sentence explaining the verdict. */
  reason: string;
}

const RANK: Readonly<Record<Verdict, number>> = { deny: 0, review: 1, allow: 2 };

type LeafStatus =
  | { kind: "listed"; key: string; viaException: boolean }
  | { kind: "exception-review" }
  | { kind: "unlisted" }
  | { kind: "ref" };

interface LeafResult {
  text: string;
  verdict: Verdict;
  status: LeafStatus;
  leaf: LicenceLeaf | LicenceRefLeaf;
}

interface NodeResult {
  verdict: Verdict;
  /** Deciding leaves, no duplicates by text. */
  leaves: LeafResult[];
}

/** Case-insensitive view of the policy map, built lazily once per evaluation. */
class PolicyIndex {
  private lower: Map<string, [string, Verdict]> | undefined;
  constructor(private readonly verdicts: ReadonlyMap<string, Verdict>) {}

  get(id: string): [string, Verdict] | undefined {
    const exact = this.verdicts.get(id);
    if (exact !== undefined) return [id, exact];
    if (this.lower === undefined) {
      this.lower = new Map();
      for (const [key, verdict] of this.verdicts) {
        const folded = key.trim().toLowerCase();
        if (!this.lower.has(folded)) this.lower.set(folded, [key, verdict]);
      }
    }
    return this.lower.get(id.toLowerCase());
  }
}

/** Policy keys to try for a licence id, most specific first. */
function lookupCandidates(leaf: LicenceLeaf): string[] {
  const base = leaf.id.replace(/-(only|or-later)$/, "");
  const candidates: string[] = [leaf.plus ? `${leaf.id}+` : leaf.id, leaf.original];
  if (leaf.plus || leaf.id.endsWith("-or-later")) {
    candidates.push(`${base}-or-later`, `${base}+`, base, `${base}-only`);
  } else if (leaf.id.endsWith("-only")) {
    candidates.push(`${base}-only`, base);
  } else {
    candidates.push(base, `${base}-only`, `${base}-or-later`);
  }
  return [...new Set(candidates)];
}

function evaluateLeaf(leaf: LicenceLeaf | LicenceRefLeaf, policy: LicencePolicy, index: PolicyIndex): LeafResult {
  const text = leafText(leaf);
  if (leaf.kind === "ref") {
    // A LicenseRef the organisation knows (e.g. `LicenseRef-Acme-Internal`) may have its own entry.
    const found = index.get(text);
    if (found) return { text, verdict: found[1], status: { kind: "listed", key: found[0], viaException: false }, leaf };
    return { text, verdict: policy.unknown, status: { kind: "ref" }, leaf };
  }

  const candidates = lookupCandidates(leaf);
  if (leaf.exception !== null) {
    for (const candidate of candidates) {
      const found = index.get(`${candidate} WITH ${leaf.exception}`);
      if (found) return { text, verdict: found[1], status: { kind: "listed", key: found[0], viaException: false }, leaf };
    }
    if (policy.exceptions === "review") {
      return { text, verdict: "review", status: { kind: "exception-review" }, leaf };
    }
  }
  for (const candidate of candidates) {
    const found = index.get(candidate);
    if (found) {
      return {
        text,
        verdict: found[1],
        status: { kind: "listed", key: found[0], viaException: leaf.exception !== null },
        leaf,
      };
    }
  }
  return { text, verdict: policy.unknown, status: { kind: "unlisted" }, leaf };
}

function union(a: readonly LeafResult[], b: readonly LeafResult[]): LeafResult[] {
  const out = [...a];
  for (const leaf of b) if (!out.some((seen) => seen.text === leaf.text)) out.push(leaf);
  return out;
}

function evaluateNode(node: LicenceNode, policy: LicencePolicy, index: PolicyIndex): NodeResult {
  if (node.kind === "licence" || node.kind === "ref") {
    const leaf = evaluateLeaf(node, policy, index);
    return { verdict: leaf.verdict, leaves: [leaf] };
  }
  const left = evaluateNode(node.left, policy, index);
  const right = evaluateNode(node.right, policy, index);
  if (node.kind === "or") {
    return RANK[left.verdict] >= RANK[right.verdict] ? left : right;
  }
  if (left.verdict === right.verdict) return { verdict: left.verdict, leaves: union(left.leaves, right.leaves) };
  return RANK[left.verdict] < RANK[right.verdict] ? left : right;
}

const VERDICT_PHRASE: Readonly<Record<Verdict, string>> = {
  allow: "is allowed by policy",
  review: "requires review by policy",
  deny: "is denied by policy",
};

function describeLeaf(result: LeafResult): string {
  const { text, status, verdict, leaf } = result;
  switch (status.kind) {
    case "ref":
      return `${text} is not an SPDX-listed licence; treated as unknown (${verdict})`;
    case "unlisted":
      return `${text} is not in policy; treated as unknown (${verdict})`;
    case "exception-review":
      return `${text} carries a licence exception; policy requires review of exceptions`;
    case "listed": {
      const notes: string[] = [];
      const id = leaf.kind === "licence" ? (leaf.plus ? `${leaf.id}+` : leaf.id) : text;
      if (status.viaException) notes.push(`exception evaluated as its base licence ${id}`);
      if (status.key.toLowerCase() !== id.toLowerCase() && status.key.toLowerCase() !== text.toLowerCase()) {
        notes.push(`policy entry ${status.key}`);
      }
      return `${text} ${VERDICT_PHRASE[verdict]}${notes.length > 0 ? ` (${notes.join("; ")})` : ""}`;
    }
  }
}

function isUnknownLeaf(result: LeafResult): boolean {
  return result.status.kind === "ref" || result.status.kind === "unlisted";
}

/** Evaluate a declared licence (raw string, e.g. from `declaredLicence`) against a policy. */
export function evaluateLicence(declared: string | null, policy: LicencePolicy): LicenceEvaluation {
  const normalised = normaliseLicence(declared);
  if (!normalised.ok) {
    const shown = JSON.stringify((declared ?? "").trim());
    const what = {
      missing: "no licence declared",
      unlicensed: `${shown} declares a proprietary package (no licence granted)`,
      "see-licence": `${shown} points to a custom licence text, not an SPDX licence`,
      unparsable: `${shown} is not a valid SPDX expression and could not be corrected`,
    }[normalised.kind];
    return {
      declared,
      expression: null,
      verdict: policy.unknown,
      unknown: true,
      chosen: [],
      reason: `${what}; treated as unknown (${policy.unknown})`,
    };
  }

  const { tree, expression, corrected } = normalised;
  const result = evaluateNode(tree, policy, new PolicyIndex(policy.verdicts));
  const chosen = result.leaves.map((leaf) => leaf.text);

  let reason: string;
  if (tree.kind === "licence" || tree.kind === "ref") {
    reason = result.leaves.map(describeLeaf).join("; ");
  } else if (result.verdict === "allow" && !result.leaves.some(isUnknownLeaf)) {
    reason = `${expression}: allowed via ${chosen.join(" and ")}`;
  } else {
    reason = `${expression}: ${result.leaves.map(describeLeaf).join("; ")}`;
  }
  if (corrected) reason += ` (corrected from ${JSON.stringify((declared ?? "").trim())})`;

  return {
    declared,
    expression,
    verdict: result.verdict,
    unknown: result.leaves.some(isUnknownLeaf),
    chosen,
    reason,
  };
}
