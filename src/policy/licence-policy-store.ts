/**
 * The licence policy as stored in `licence_policy` (seeded with the defaults by a migration; admins
 * edit it through /api/admin/licenses). Workers read it through a short cache so a change applies to
 * packages checked a moment later.
 */
import type { Db } from "../db/client.ts";
import type { LicencePolicy, Verdict } from "./licence-evaluate.ts";

/** The policy row for licences that cannot be identified. */
export const UNKNOWN_LICENCE_KEY = "unknown";

export async function loadLicencePolicy(db: Db, unknownDefault: Verdict): Promise<LicencePolicy> {
  const rows = await db.licencePolicy.findMany({ select: { licence: true, verdict: true } });
  const verdicts = new Map<string, Verdict>();
  let unknown = unknownDefault;
  for (const r of rows) {
    if (r.licence === UNKNOWN_LICENCE_KEY) unknown = r.verdict;
    else verdicts.set(r.licence, r.verdict);
  }
  return { verdicts, unknown };
}

/** Caches the policy for `ttlMs` (default 2 s), one load in flight at a time. */
export function cachedLicencePolicy(db: Db, unknownDefault: Verdict, ttlMs = 2_000): () => Promise<LicencePolicy> {
  let at = 0;
  let current: Promise<LicencePolicy> | null = null;
  return () => {
    if (!current || Date.now() - at > ttlMs) {
      at = Date.now();
      current = loadLicencePolicy(db, unknownDefault);
      current.catch(() => (current = null));
    }
    return current;
  };
}
