import { permanent } from "./step.ts";
import type { UpstreamFacts } from "./context.ts";
import type { Packument } from "../upstream/registry-client.ts";

/** The version's manifest from a packument; a missing version fails permanently (`version_not_found`). */
export function versionManifest(packument: Packument, name: string, version: string): Record<string, unknown> {
  const manifest = packument.versions?.[version];
  if (!manifest || typeof manifest !== "object") {
    const known = Object.keys(packument.versions ?? {}).length;
    throw permanent("version_not_found", `${name}@${version} is not on the upstream registry (${known} other versions are)`);
  }
  return manifest;
}

export function upstreamFacts(packument: Packument, manifest: Record<string, unknown>, version: string): UpstreamFacts {
  const dist = (manifest.dist ?? {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" && v.length > 0 ? v : null);
  return {
    tarball: str(dist.tarball),
    integrity: str(dist.integrity),
    shasum: str(dist.shasum),
    publishedAt: str(packument.time?.[version]),
    deprecated: str(manifest.deprecated),
  };
}

/**
 * Fields of a version manifest that installers need; served back by the registry for approved versions.
 * The worker's packument cache keeps these (src/upstream/registry-client.ts, `compactPackument`).
 */
export const INSTALL_FIELDS = [
  "name",
  "version",
  "description",
  "license",
  "dependencies",
  "optionalDependencies",
  "peerDependencies",
  "peerDependenciesMeta",
  "bundleDependencies",
  "bundledDependencies",
  "bin",
  "directories",
  "engines",
  "os",
  "cpu",
  "libc",
  "deprecated",
  "funding",
  "hasInstallScript",
  "gypfile",
  "_hasShrinkwrap",
] as const;

export function installManifest(manifest: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of INSTALL_FIELDS) if (manifest[k] !== undefined) out[k] = manifest[k];
  return out;
}
