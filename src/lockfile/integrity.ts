import { quote } from "./json.ts";

/**
 * One SRI hash. The digest allows base64 and base64url characters, as the SRI/CSP grammar does (`base64-value`), and
 * padding only at the end. Several hashes are separated by spaces. Options (`?opt`) are not accepted.
 */
const HASH = String.raw`(?:sha1|sha256|sha384|sha512)-[A-Za-z0-9+/_-]+={0,2}`;
const SRI = new RegExp(`^${HASH}(?: +${HASH})*$`);

const STRENGTH: ReadonlyMap<string, number> = new Map([
  ["sha1", 1],
  ["sha256", 2],
  ["sha384", 3],
  ["sha512", 4],
]);

/** Loose SRI check: the shape of `sha512-<base64>` hashes, not their length or bytes. */
export function isIntegrity(value: string): boolean {
  return SRI.test(value);
}

/** algorithm → digests, of an integrity string already checked with `isIntegrity`. */
export type Digests = Map<string, Set<string>>;

export function digestsOf(integrity: string): Digests {
  const digests: Digests = new Map();
  for (const hash of integrity.split(" ")) {
    if (hash === "") continue;
    const dash = hash.indexOf("-");
    const algorithm = hash.slice(0, dash);
    const set = digests.get(algorithm) ?? new Set<string>();
    set.add(hash.slice(dash + 1));
    digests.set(algorithm, set);
  }
  return digests;
}

/**
 * Two integrity strings disagree when they share an algorithm but no digest for it. Strings with no algorithm in
 * common (old v1 files mix `sha1-` and `sha512-` for one version) cannot be compared, so they do not conflict.
 */
export function integrityConflicts(a: Digests, b: Digests): boolean {
  for (const [algorithm, digestsA] of a) {
    const digestsB = b.get(algorithm);
    if (digestsB === undefined) continue;
    let shared = false;
    for (const digest of digestsA) {
      if (digestsB.has(digest)) {
        shared = true;
        break;
      }
    }
    if (!shared) return true;
  }
  return false;
}

/** The strongest algorithm's rank (sha512 = 4 … sha1 = 1). */
export function strength(digests: Digests): number {
  let best = 0;
  for (const algorithm of digests.keys()) best = Math.max(best, STRENGTH.get(algorithm) ?? 0);
  return best;
}

export function describeIntegrity(integrity: string): string {
  return quote(integrity, 40);
}
