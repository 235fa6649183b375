/**
 * Reading the licence a package *declares* in its packument version object
 * (the per-version manifest served by the registry, i.e. its package.json).
 *
 * Shapes seen in the wild, in order of precedence:
 *   1. `license: "MIT"`                          – the modern form, an SPDX expression (or not).
 *   2. `license: { type: "MIT", url: "…" }`      – legacy object form.
 *   3. `licence` (British spelling) with either of the above shapes – a common misspelling
 *      that npm itself ignores, but which still tells us what the author meant.
 *   4. `licenses: [{ type: "MIT" }, { type: "Apache-2.0" }]` – legacy array form.
 *
 * Several entries in a legacy `licenses` array historically meant that the package is
 * *dual/multi-licensed*: the user may pick any one of them (npm's old docs presented it as
 * the pre-SPDX way of writing `(MIT OR Apache-2.0)`). They are therefore joined with
 * " OR ". Entries that are not a single token (e.g. "Apache 2" or "MIT AND ISC") are wrapped
 * in parentheses so that the join cannot change operator precedence. Duplicate entries are
 * dropped.
 *
 * The returned string is the raw declaration (only trimmed); normalising it to SPDX is the
 * job of `evaluateLicence`.
 */

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A single licence entry: a non-empty string, or an object with a string `type`. */
function entryText(entry: unknown): string | null {
  if (typeof entry === "string") {
    const text = entry.trim();
    return text === "" ? null : text;
  }
  if (isRecord(entry) && typeof entry["type"] === "string") {
    const text = entry["type"].trim();
    return text === "" ? null : text;
  }
  return null;
}

/** Several alternatives → one disjunction. */
function joinAlternatives(entries: readonly unknown[]): string | null {
  const texts: string[] = [];
  for (const entry of entries) {
    const text = entryText(entry);
    if (text !== null && !texts.includes(text)) texts.push(text);
  }
  if (texts.length === 0) return null;
  if (texts.length === 1) return texts[0] ?? null;
  return texts.map((text) => (/\s/.test(text) ? `(${text})` : text)).join(" OR ");
}

/** `license`/`licence`/`licenses` value of any of the known shapes. */
function fieldText(value: unknown): string | null {
  if (Array.isArray(value)) return joinAlternatives(value);
  return entryText(value);
}

/**
 * The licence declared by a packument version object, or null when it declares none
 * (or the manifest is not an object).
 */
export function declaredLicence(manifest: unknown): string | null {
  if (!isRecord(manifest)) return null;
  return (
    fieldText(manifest["license"]) ??
    fieldText(manifest["licence"]) ??
    fieldText(manifest["licenses"]) ??
    fieldText(manifest["licences"])
  );
}
