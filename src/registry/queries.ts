/**
 * The registry's reads: one statement per lookup, on the (name, version) unique index, extracting
 * only the JSON fields the registry serves (scan findings can be large and are never read here).
 */
import type { Db } from "../db/client.ts";
import type { PackageStatus } from "../queue/states.ts";
import type { RegistryRow } from "./packument.ts";

interface RawRow {
  version: string;
  status: PackageStatus;
  download: unknown;
  manifest: unknown;
  published_at: string | null;
  install_scripts: unknown;
  review_reasons: unknown;
  reason_code: string | null;
  reason_message: string | null;
  last_error_code: string | null;
  last_error_message: string | null;
  updated_at: Date;
}

function toRow(r: RawRow): RegistryRow {
  return {
    version: r.version,
    status: r.status,
    download: r.download,
    manifest: r.manifest,
    publishedAt: r.published_at,
    installScripts: r.install_scripts,
    reviewReasons: Array.isArray(r.review_reasons) ? r.review_reasons.filter((x): x is string => typeof x === "string") : null,
    reasonCode: r.reason_code,
    reasonMessage: r.reason_message,
    lastErrorCode: r.last_error_code,
    lastErrorMessage: r.last_error_message,
    updatedAt: r.updated_at,
  };
}

/** Every version of `name` the gate knows, in any status. */
export async function packageRows(db: Db, name: string): Promise<RegistryRow[]> {
  const rows = await db.$queryRaw<RawRow[]>`
    SELECT version, status::text AS status,
           results->'download' AS download, results->'manifest' AS manifest,
           results->'upstream'->>'publishedAt' AS published_at,
           results->'scan'->'installScripts' AS install_scripts,
           results->'review'->'reasons' AS review_reasons,
           reason_code, reason_message, last_error_code, last_error_message, updated_at
    FROM package WHERE name = ${name}`;
  return rows.map(toRow);
}

/** One version of `name`, or null when the gate never heard of it. */
export async function packageRow(db: Db, name: string, version: string): Promise<RegistryRow | null> {
  const rows = await db.$queryRaw<RawRow[]>`
    SELECT version, status::text AS status,
           results->'download' AS download, NULL::jsonb AS manifest,
           results->'upstream'->>'publishedAt' AS published_at,
           NULL::jsonb AS install_scripts,
           results->'review'->'reasons' AS review_reasons,
           reason_code, reason_message, last_error_code, last_error_message, updated_at
    FROM package WHERE name = ${name} AND version = ${version}`;
  return rows[0] ? toRow(rows[0]) : null;
}

/** Admin-pinned dist-tags of `name`: tag → version. */
export async function distTagPins(db: Db, name: string): Promise<Record<string, string>> {
  const rows = await db.$queryRaw<{ tag: string; version: string }[]>`SELECT tag, version FROM dist_tag_pin WHERE name = ${name}`;
  return Object.fromEntries(rows.map((r) => [r.tag, r.version]));
}

/** Of `names`, those with at least one (non-withdrawn) advisory: one statement for a whole audit. */
export async function namesWithAdvisories(db: Db, names: string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await db.$queryRaw<{ name: string }[]>`
    SELECT DISTINCT aa.package_name AS name
    FROM advisory_affected aa JOIN advisory a ON a.id = aa.advisory_id
    WHERE aa.package_name = ANY(${names}::text[]) AND a.withdrawn IS NULL`;
  return rows.map((r) => r.name);
}
