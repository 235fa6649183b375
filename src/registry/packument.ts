/**
 * The served registry's documents, built from package rows. Only approved versions are listed;
 * every dist field describes the bytes in the gate's content store (not upstream's claims), and
 * tarball URLs point back at the gate.
 *
 * Versions the gate knows but does not serve go into `policyRestrictions` (npm-pick-manifest's
 * field for versions a registry refuses by policy): when npm resolves a spec to one of them it
 * fails with E403 "Could not download x@1.0.0 due to policy violations:" followed by our reasons,
 * instead of a bare "No matching version found". They are only ever picked when no approved
 * version satisfies the spec.
 */
import semver from "semver";
import { isInProgress, packageRefusal, refusalsText, type Refusal, type RefusalRow } from "./refusal.ts";

export const ABBREVIATED_MEDIA_TYPE = "application/vnd.npm.install-v1+json";

/** A package row as the registry reads it (see src/registry/queries.ts). */
export interface RegistryRow extends RefusalRow {
  /** results.download */
  download: unknown;
  /** results.manifest (install-relevant fields of the upstream version manifest) */
  manifest: unknown;
  /** results.upstream.publishedAt */
  publishedAt: string | null;
  /** results.scan.installScripts */
  installScripts: unknown;
  updatedAt: Date;
}

export interface StoredTarball {
  storageKey: string;
  size: number | null;
  integrity: string;
  shasum: string | null;
}

export interface ServableVersion {
  version: string;
  manifest: Record<string, unknown>;
  dist: StoredTarball;
  publishedAt: string | null;
  approvedAt: Date;
  hasInstallScript: boolean;
}

export interface PackumentModel {
  name: string;
  /** Ascending by semver. */
  versions: ServableVersion[];
  /** Known versions not served (any other status), newest first. */
  refused: RegistryRow[];
  distTags: Record<string, string>;
}

/** Fields kept in abbreviated ("corgi") version documents, as registry.npmjs.org does. */
const ABBREVIATED_FIELDS = [
  "name",
  "version",
  "deprecated",
  "dependencies",
  "optionalDependencies",
  "devDependencies",
  "bundleDependencies",
  "peerDependencies",
  "peerDependenciesMeta",
  "bin",
  "directories",
  "engines",
  "cpu",
  "os",
  "libc",
  "funding",
  "_hasShrinkwrap",
  "hasInstallScript",
] as const;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The stored tarball of a row, or null when the row has none that can be served. */
export function storedTarball(download: unknown): StoredTarball | null {
  if (!isRecord(download)) return null;
  const { storageKey, size, integrity, shasum } = download;
  if (typeof storageKey !== "string" || !/^[0-9a-f]{128}$/.test(storageKey)) return null;
  if (typeof integrity !== "string" || !integrity.startsWith("sha512-")) return null;
  return {
    storageKey,
    size: typeof size === "number" ? size : null,
    integrity,
    shasum: typeof shasum === "string" && /^[0-9a-f]{40}$/i.test(shasum) ? shasum.toLowerCase() : null,
  };
}

function hasInstallScript(manifest: Record<string, unknown>, installScripts: unknown): boolean {
  if (manifest.hasInstallScript === true) return true;
  if (isRecord(installScripts) && isRecord(installScripts.scripts)) return Object.keys(installScripts.scripts).length > 0;
  return false;
}

export function servableVersion(row: RegistryRow): ServableVersion | null {
  if (row.status !== "approved") return null;
  const dist = storedTarball(row.download);
  if (!dist) return null;
  const manifest = isRecord(row.manifest) ? row.manifest : {};
  return {
    version: row.version,
    manifest,
    dist,
    publishedAt: row.publishedAt,
    approvedAt: row.updatedAt,
    hasInstallScript: hasInstallScript(manifest, row.installScripts),
  };
}

function compareVersions(a: string, b: string): number {
  const va = semver.valid(a, { loose: true });
  const vb = semver.valid(b, { loose: true });
  if (va && vb) return semver.compare(va, vb, { loose: true }) || (a < b ? -1 : a > b ? 1 : 0);
  if (va) return 1;
  if (vb) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `latest`: the pinned version when it is served, else the highest served non-prerelease (else the highest). */
export function distTagsOf(versions: readonly string[], pins: Readonly<Record<string, string>>): Record<string, string> {
  const served = new Set(versions);
  const sorted = [...versions].sort(compareVersions);
  const stable = sorted.filter((v) => semver.valid(v, { loose: true }) !== null && semver.prerelease(v, { loose: true }) === null);
  const tags: Record<string, string> = {};
  const computedLatest = stable.at(-1) ?? sorted.at(-1);
  const pinnedLatest = pins.latest !== undefined && served.has(pins.latest) ? pins.latest : undefined;
  const latest = pinnedLatest ?? computedLatest;
  if (latest !== undefined) tags.latest = latest;
  for (const [tag, version] of Object.entries(pins)) {
    if (tag !== "latest" && served.has(version)) tags[tag] = version;
  }
  return tags;
}

export function packumentModel(name: string, rows: readonly RegistryRow[], pins: Readonly<Record<string, string>>): PackumentModel {
  const versions: ServableVersion[] = [];
  const refused: RegistryRow[] = [];
  for (const row of rows) {
    const servable = servableVersion(row);
    if (servable) versions.push(servable);
    else refused.push(row);
  }
  versions.sort((a, b) => compareVersions(a.version, b.version));
  refused.sort((a, b) => compareVersions(b.version, a.version));
  return { name, versions, refused, distTags: distTagsOf(versions.map((v) => v.version), pins) };
}

/**
 * Whether a refused version may still change state without a NOTIFY (keep such entries briefly).
 * NOTIFY comes with every move into or out of `approved`; the pipeline's own moves, a reviewer's
 * pending → rejected and a retry of a failed version are not notified, yet they change the refusal
 * text of `policyRestrictions`. Only `rejected` is stable (it leaves only by an override, notified).
 */
export function hasVolatileVersions(model: PackumentModel): boolean {
  return model.refused.some((r) => isInProgress(r.status) || r.status === "pending_approval" || r.status === "failed");
}

/** 403/404 for a name with nothing to serve; null when it has approved versions. */
export function packumentRefusal(model: PackumentModel): Refusal | null {
  return model.versions.length > 0 ? null : packageRefusal(model.name, model.refused);
}

/** The unscoped part of a name (`@s/n` → `n`). */
export function basenameOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/** `<base>/npm/<name>/-/<basename>-<version>.tgz` (base without a trailing slash). */
export function tarballUrl(base: string, name: string, version: string): string {
  return `${base}/npm/${name}/-/${basenameOf(name)}-${version}.tgz`;
}

function distOf(base: string, name: string, v: ServableVersion): Record<string, unknown> {
  const dist: Record<string, unknown> = { tarball: tarballUrl(base, name, v.version), integrity: v.dist.integrity };
  if (v.dist.shasum) dist.shasum = v.dist.shasum;
  return dist;
}

/** The full version document (`GET /npm/<name>/<version>` and the `versions` of a full packument). */
export function versionDocument(model: PackumentModel, v: ServableVersion, base: string): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const [k, value] of Object.entries(v.manifest)) {
    if (k !== "dist" && k !== "_id" && k !== "name" && k !== "version") doc[k] = value;
  }
  doc.name = model.name;
  doc.version = v.version;
  doc._id = `${model.name}@${v.version}`;
  if (v.hasInstallScript) doc.hasInstallScript = true;
  doc.dist = distOf(base, model.name, v);
  return doc;
}

function abbreviatedVersion(model: PackumentModel, v: ServableVersion, base: string): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const field of ABBREVIATED_FIELDS) if (v.manifest[field] !== undefined) doc[field] = v.manifest[field];
  doc.name = model.name;
  doc.version = v.version;
  if (v.hasInstallScript) doc.hasInstallScript = true;
  doc.dist = distOf(base, model.name, v);
  return doc;
}

function times(model: PackumentModel): { created: string; modified: string; byVersion: Record<string, string> } {
  const byVersion: Record<string, string> = {};
  let created = Infinity;
  let modified = -Infinity;
  for (const v of model.versions) {
    const published = v.publishedAt && !Number.isNaN(Date.parse(v.publishedAt)) ? new Date(v.publishedAt) : v.approvedAt;
    byVersion[v.version] = published.toISOString();
    created = Math.min(created, published.getTime());
    modified = Math.max(modified, published.getTime(), v.approvedAt.getTime());
  }
  const iso = (t: number) => new Date(Number.isFinite(t) ? t : 0).toISOString();
  return { created: iso(created), modified: iso(modified), byVersion };
}

function policyRestrictions(model: PackumentModel): Record<string, unknown> | undefined {
  if (model.refused.length === 0) return undefined;
  const versions: Record<string, unknown> = {};
  for (const r of model.refused) versions[r.version] = { name: model.name, version: r.version };
  return { message: refusalsText(model.name, model.refused), versions };
}

/** The packument (full, or abbreviated for `Accept: application/vnd.npm.install-v1+json`). */
export function renderPackument(model: PackumentModel, base: string, abbreviated: boolean): Record<string, unknown> {
  const t = times(model);
  const versions: Record<string, unknown> = {};
  for (const v of model.versions) versions[v.version] = abbreviated ? abbreviatedVersion(model, v, base) : versionDocument(model, v, base);
  const restrictions = policyRestrictions(model);
  if (abbreviated) {
    return {
      name: model.name,
      modified: t.modified,
      "dist-tags": model.distTags,
      versions,
      ...(restrictions ? { policyRestrictions: restrictions } : {}),
    };
  }
  const latest = model.distTags.latest === undefined ? undefined : model.versions.find((v) => v.version === model.distTags.latest);
  const doc: Record<string, unknown> = {
    _id: model.name,
    name: model.name,
    "dist-tags": model.distTags,
    versions,
    time: { created: t.created, modified: t.modified, ...t.byVersion },
  };
  if (latest?.manifest.description !== undefined) doc.description = latest.manifest.description;
  if (latest?.manifest.license !== undefined) doc.license = latest.manifest.license;
  if (restrictions) doc.policyRestrictions = restrictions;
  return doc;
}
