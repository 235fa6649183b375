/** Small typed helpers over `ssri` (its typings do not expose the per-algorithm hash lists). */
import ssri from "ssri";

export type Algorithm = "sha512" | "sha384" | "sha256" | "sha1";

/** The first hash of `algorithm` in an SRI value, or undefined. */
export function hashOf(integrity: ssri.Integrity | string, algorithm: Algorithm): ssri.Hash | undefined {
  const parsed = typeof integrity === "string" ? ssri.parse(integrity, { single: false }) : integrity;
  return (parsed as unknown as Partial<Record<Algorithm, ssri.Hash[]>>)[algorithm]?.[0];
}

/** Hex digest of `algorithm` in an SRI value, or null. */
export function hexOf(integrity: ssri.Integrity | string, algorithm: Algorithm): string | null {
  const h = hashOf(integrity, algorithm);
  return h ? Buffer.from(h.digest, "base64").toString("hex") : null;
}

/** The strongest algorithm an SRI value carries. */
export function strongest(integrity: string): Algorithm | null {
  for (const a of ["sha512", "sha384", "sha256", "sha1"] as const) if (hashOf(integrity, a)) return a;
  return null;
}
