/**
 * Turning a declared licence string into a normalised SPDX expression tree.
 *
 * Steps (first one that yields a parsable expression wins):
 *   1. the string as is, through `spdx-expression-parse`;
 *   2. the string with every token re-cased to its canonical SPDX spelling
 *      ("mit or apache-2.0" → "MIT OR Apache-2.0"); ids are matched case-insensitively;
 *   3. `spdx-correct` (e.g. "Apache 2" → "Apache-2.0", "GPLv3" → "GPL-3.0"):
 *      - on the whole string when it contains no operator or parenthesis;
 *      - otherwise on each operand separately. `spdx-correct` is a single-identifier
 *        corrector: on a whole compound string it happily drops terms
 *        ("MIT OR GPL" → "GPL-3.0-or-later", "MIT AND LGPL" → "LGPL-3.0-or-later").
 *      A correction is rejected when the licence family it guessed only occurs inside a
 *      longer word of the input ("EUPL" → "UPL-1.0" would turn a copyleft licence into a
 *      permissive one).
 *
 * Leaves of the parsed tree are then normalised:
 *   - deprecated GNU ids get their explicit form: `GPL-3.0` → `GPL-3.0-only`,
 *     `GPL-2.0+` / `GPL-2.0-only+` → `GPL-2.0-or-later` (same for LGPL, AGPL, GFDL);
 *   - deprecated "GPL-x-with-y-exception" ids become `GPL-x-only WITH y-exception`;
 *   - a few other deprecated ids with an exact successor are renamed;
 *   - `+` on any other licence is kept (`MPL-1.1+`); the evaluator treats it as its base.
 *
 * Strings that cannot denote an SPDX licence at all (missing, "UNLICENSED",
 * "SEE LICENSE IN …") are classified before any parsing: `spdx-correct` would otherwise
 * turn "UNLICENSED" (proprietary) into "Unlicense" (public domain).
 */
import parse from "spdx-expression-parse";
import spdxCorrect from "spdx-correct";
// Both are dependencies of spdx-expression-parse (not direct dependencies of this project).
import licenceIds from "spdx-license-ids/index.json" with { type: "json" };
import deprecatedLicenceIds from "spdx-license-ids/deprecated.json" with { type: "json" };
import exceptionIds from "spdx-exceptions/index.json" with { type: "json" };

/** A licence leaf: an SPDX licence id, possibly with `+` and/or a `WITH` exception. */
export interface LicenceLeaf {
  kind: "licence";
  /** Canonical, non-deprecated id where one exists (`GPL-2.0-or-later`, `MIT`, `MPL-1.1`). */
  id: string;
  /** `+` on an id that has no `-or-later` form (e.g. `MPL-1.1+`). GNU `+` is folded into `id`. */
  plus: boolean;
  /** Canonical exception id after `WITH`, if any. */
  exception: string | null;
  /** The id as it appeared in the parsed expression, with `+` if it had one (`GPL-2.0+`). */
  original: string;
}

/** `LicenseRef-…` / `DocumentRef-…:LicenseRef-…`: a licence outside the SPDX list. */
export interface LicenceRefLeaf {
  kind: "ref";
  ref: string;
}

export interface LicenceConjunction {
  kind: "and" | "or";
  left: LicenceNode;
  right: LicenceNode;
}

export type LicenceNode = LicenceLeaf | LicenceRefLeaf | LicenceConjunction;

export type NormalisedLicence =
  | {
      ok: true;
      tree: LicenceNode;
      /** The normalised expression, printed from `tree`. */
      expression: string;
      /** True when `spdx-correct` had to guess (the result is a guess, not a declaration). */
      corrected: boolean;
    }
  | {
      ok: false;
      /**
       * missing     – null, empty or blank;
       * unlicensed  – npm's "UNLICENSED": proprietary, no rights granted;
       * see-licence – "SEE LICENSE IN <file>": custom licence text;
       * unparsable  – not an SPDX expression, and not correctable.
       */
      kind: "missing" | "unlicensed" | "see-licence" | "unparsable";
    };

const canonicalLicence = new Map<string, string>();
for (const id of [...licenceIds, ...deprecatedLicenceIds]) canonicalLicence.set(id.toLowerCase(), id);
const canonicalException = new Map<string, string>();
for (const id of exceptionIds) canonicalException.set(id.toLowerCase(), id);

/** Is `id` a (current or deprecated) SPDX licence id, exact case. */
export function isSpdxLicenceId(id: string): boolean {
  return canonicalLicence.get(id.toLowerCase()) === id;
}

const GNU_FAMILY = /^(GPL|LGPL|AGPL|GFDL)-(\d\.\d)(-only|-or-later)?$/;

/** Deprecated "licence-with-exception" ids → licence WITH exception. */
const DEPRECATED_WITH_EXCEPTION: ReadonlyMap<string, readonly [string, string]> = new Map([
  ["GPL-2.0-with-GCC-exception", ["GPL-2.0-only", "GCC-exception-2.0"]],
  ["GPL-2.0-with-autoconf-exception", ["GPL-2.0-only", "Autoconf-exception-2.0"]],
  ["GPL-2.0-with-bison-exception", ["GPL-2.0-only", "Bison-exception-2.2"]],
  ["GPL-2.0-with-classpath-exception", ["GPL-2.0-only", "Classpath-exception-2.0"]],
  ["GPL-2.0-with-font-exception", ["GPL-2.0-only", "Font-exception-2.0"]],
  ["GPL-3.0-with-GCC-exception", ["GPL-3.0-only", "GCC-exception-3.1"]],
  ["GPL-3.0-with-autoconf-exception", ["GPL-3.0-only", "Autoconf-exception-3.0"]],
]);

/** Other deprecated ids with an exact successor on the SPDX list. */
const DEPRECATED_RENAMED: ReadonlyMap<string, string> = new Map([
  ["BSD-2-Clause-NetBSD", "BSD-2-Clause"],
  ["BSD-2-Clause-FreeBSD", "BSD-2-Clause-Views"],
  ["StandardML-NJ", "SMLNJ"],
  ["Nunit", "zlib-acknowledgement"],
  ["bzip2-1.0.5", "bzip2-1.0.6"],
]);

function normaliseLeaf(info: parse.LicenseInfo): LicenceNode {
  const written = info.license;
  if (/^(LicenseRef-|DocumentRef-)/.test(written)) return { kind: "ref", ref: written };

  const plus = info.plus === true;
  const original = plus ? `${written}+` : written;
  let id = written;
  let exception = info.exception ?? null;

  const withException = DEPRECATED_WITH_EXCEPTION.get(id);
  if (withException) {
    id = withException[0];
    exception ??= withException[1];
  }
  id = DEPRECATED_RENAMED.get(id) ?? id;

  const gnu = GNU_FAMILY.exec(id);
  if (gnu) {
    const base = `${gnu[1]}-${gnu[2]}`;
    const suffix = plus ? "-or-later" : (gnu[3] ?? "-only");
    const explicit = `${base}${suffix}`;
    if (isSpdxLicenceId(explicit)) return { kind: "licence", id: explicit, plus: false, exception, original };
  }
  return { kind: "licence", id, plus, exception, original };
}

function normaliseTree(info: parse.Info): LicenceNode {
  if ("conjunction" in info) {
    return { kind: info.conjunction, left: normaliseTree(info.left), right: normaliseTree(info.right) };
  }
  return normaliseLeaf(info);
}

/** Text of a leaf, as it appears in the normalised expression. */
export function leafText(leaf: LicenceLeaf | LicenceRefLeaf): string {
  if (leaf.kind === "ref") return leaf.ref;
  const id = leaf.plus ? `${leaf.id}+` : leaf.id;
  return leaf.exception === null ? id : `${id} WITH ${leaf.exception}`;
}

/** Print a tree; a compound operand is parenthesised when its operator differs from its parent's. */
export function printLicence(node: LicenceNode): string {
  if (node.kind === "licence" || node.kind === "ref") return leafText(node);
  const operand = (child: LicenceNode): string =>
    (child.kind === "and" || child.kind === "or") && child.kind !== node.kind
      ? `(${printLicence(child)})`
      : printLicence(child);
  return `${operand(node.left)} ${node.kind.toUpperCase()} ${operand(node.right)}`;
}

function tryParse(source: string): parse.Info | null {
  try {
    return parse(source);
  } catch {
    return null;
  }
}

const TOKEN = /\(|\)|[^\s()]+/g;
const OPERATOR = /^(AND|OR|WITH)$/i;

function recaseRef(token: string): string | null {
  const match = /^(?:documentref-([A-Za-z0-9.-]+):)?licenseref-([A-Za-z0-9.-]+)$/i.exec(token);
  if (!match) return null;
  const doc = match[1] === undefined ? "" : `DocumentRef-${match[1]}:`;
  return `${doc}LicenseRef-${match[2] ?? ""}`;
}

/** Canonical spelling of one licence token (with optional trailing `+`), or null. */
function recaseLicence(token: string): string | null {
  const ref = recaseRef(token);
  if (ref !== null) return ref;
  const plus = token.endsWith("+") ? "+" : "";
  const id = canonicalLicence.get((plus ? token.slice(0, -1) : token).toLowerCase());
  return id === undefined ? null : `${id}${plus}`;
}

/** Re-case every token of `source`; unknown tokens are left as they are. */
function recase(source: string): string {
  const tokens = source.match(TOKEN) ?? [];
  const out: string[] = [];
  let afterWith = false;
  for (const token of tokens) {
    if (OPERATOR.test(token)) {
      out.push(token.toUpperCase());
      afterWith = token.toUpperCase() === "WITH";
      continue;
    }
    if (token === "(" || token === ")") {
      out.push(token);
    } else if (afterWith) {
      out.push(canonicalException.get(token.toLowerCase()) ?? token);
    } else {
      out.push(recaseLicence(token) ?? token);
    }
    afterWith = false;
  }
  return out.join(" ");
}

/**
 * `spdx-correct` on one licence phrase, rejecting guesses whose licence family appears in
 * the input only inside a longer word ("EUPL" → "UPL-1.0").
 */
function correctPhrase(phrase: string): string | null {
  let corrected: string | null;
  try {
    corrected = spdxCorrect(phrase, { upgrade: false });
  } catch {
    return null;
  }
  if (corrected === null) return null;
  const family = /^[A-Za-z]+/.exec(corrected)?.[0]?.toUpperCase();
  if (family !== undefined) {
    const upper = phrase.toUpperCase();
    let seen = false;
    let atWordStart = false;
    for (let at = upper.indexOf(family); at !== -1; at = upper.indexOf(family, at + 1)) {
      seen = true;
      if (at === 0 || !/[A-Z]/.test(upper[at - 1] ?? "")) atWordStart = true;
    }
    if (seen && !atWordStart) return null;
  }
  return corrected;
}

/** Correct each operand phrase of a compound expression separately. */
function correctOperands(source: string): string | null {
  const tokens = source.match(TOKEN) ?? [];
  const out: string[] = [];
  let phrase: string[] = [];
  let afterWith = false;
  const flush = (): boolean => {
    if (phrase.length === 0) return true;
    const text = phrase.join(" ");
    phrase = [];
    if (afterWith) {
      const exception = canonicalException.get(text.toLowerCase());
      if (exception === undefined) return false;
      out.push(exception);
      return true;
    }
    const fixed = recaseLicence(text) ?? correctPhrase(text);
    if (fixed === null) return false;
    out.push(fixed);
    return true;
  };
  for (const token of tokens) {
    if (OPERATOR.test(token) || token === "(" || token === ")") {
      if (!flush()) return null;
      afterWith = token.toUpperCase() === "WITH";
      out.push(OPERATOR.test(token) ? token.toUpperCase() : token);
    } else {
      phrase.push(token);
    }
  }
  if (!flush()) return null;
  return out.join(" ");
}

function ok(info: parse.Info, corrected: boolean): NormalisedLicence {
  const tree = normaliseTree(info);
  return { ok: true, tree, expression: printLicence(tree), corrected };
}

/** Normalise a declared licence string (see the module comment for the steps). */
export function normaliseLicence(declared: string | null): NormalisedLicence {
  const source = (declared ?? "").trim();
  if (source === "") return { ok: false, kind: "missing" };
  if (/^unlicen[cs]ed$/i.test(source)) return { ok: false, kind: "unlicensed" };
  if (/^see\s+licen[cs]e\s+in\b/i.test(source)) return { ok: false, kind: "see-licence" };

  const direct = tryParse(source);
  if (direct) return ok(direct, false);

  const recased = tryParse(recase(source));
  if (recased) return ok(recased, false);

  const compound = source.match(TOKEN)?.some((t) => t === "(" || t === ")" || OPERATOR.test(t)) ?? false;
  const correctedSource = compound ? correctOperands(source) : correctPhrase(source);
  const corrected = correctedSource === null ? null : tryParse(correctedSource);
  if (corrected) return ok(corrected, true);

  return { ok: false, kind: "unparsable" };
}
