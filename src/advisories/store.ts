/**
 * The offline advisory database: import OSV documents into `advisory` / `advisory_affected`
 * (one `advisory_import` row per run) and look advisories up by package name.
 */
import type { Db, Prisma } from "../db/client.ts";
import { advisoryUrlOf, cweIdsOf, fixedVersionsOf, normaliseOsv, parseRanges, severities, type AffectedPackage, type NormalisedAdvisory, type Severity } from "./osv.ts";
import type { OsvSourceRecord } from "./read-sources.ts";

export interface ImportResult {
  /** Distinct advisories written (withdrawn ones included). */
  imported: number;
  /** Valid documents that affect no npm package. */
  skipped: number;
  /** `<source>: <reason>` for unreadable, malformed or unwritable documents (at most MAX_ERROR_MESSAGES, then a summary line). */
  errors: string[];
  /** Number of failed documents (errors.length can be capped). */
  failed: number;
}

export interface ImportOptions {
  /** Recorded in advisory_import.source (e.g. the path imported). Default "stream". */
  source?: string;
  /** Advisories per transaction. Default 500. */
  batchSize?: number;
  /** Called after each written batch. */
  onProgress?: (progress: { processed: number; imported: number; skipped: number; failed: number }) => void;
}

const DEFAULT_BATCH_SIZE = 500;
const MAX_ERROR_MESSAGES = 1000;

interface Pending {
  source: string;
  advisory: NormalisedAdvisory;
}

/**
 * Imports OSV documents. Each advisory is replaced as a whole (its row and its affected rows) by
 * id, in batches of `batchSize` per transaction; a withdrawn advisory is stored with `withdrawn`
 * set. A bad document is reported in `errors` and the import goes on. When a batch fails, its
 * advisories are retried one by one so one unstorable document cannot sink 499 good ones; if none
 * of them can be written either (database down, schema missing) the error is thrown.
 * Writes one advisory_import row at the end of the run.
 */
export async function importAdvisories(
  db: Db,
  docs: AsyncIterable<OsvSourceRecord>,
  importedBy: string,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const written = new Set<string>();
  const errors: string[] = [];
  let failed = 0;
  let skipped = 0;
  let processed = 0;
  const fail = (source: string, reason: string): void => {
    failed++;
    if (errors.length < MAX_ERROR_MESSAGES) errors.push(`${source}: ${reason}`);
  };

  let batch = new Map<string, Pending>();
  const flush = async (): Promise<void> => {
    if (batch.size === 0) return;
    const items = [...batch.values()];
    batch = new Map();
    try {
      await writeAdvisories(db, items.map((p) => p.advisory));
      for (const p of items) written.add(p.advisory.id);
    } catch (batchError) {
      if (items.length === 1) {
        fail(items[0]!.source, `cannot store ${items[0]!.advisory.id}: ${message(batchError)}`);
      } else {
        let ok = 0;
        for (const p of items) {
          try {
            await writeAdvisories(db, [p.advisory]);
            written.add(p.advisory.id);
            ok++;
          } catch (err) {
            fail(p.source, `cannot store ${p.advisory.id}: ${message(err)}`);
          }
        }
        if (ok === 0) throw batchError;
      }
    }
    options.onProgress?.({ processed, imported: written.size, skipped, failed });
  };

  for await (const record of docs) {
    processed++;
    if (record.error !== undefined) {
      fail(record.source, record.error);
      continue;
    }
    let advisory: NormalisedAdvisory | null;
    try {
      advisory = normaliseOsv(sanitiseForPostgres(record.doc));
    } catch (err) {
      fail(record.source, message(err));
      continue;
    }
    if (advisory === null) {
      skipped++;
      continue;
    }
    batch.set(advisory.id, { source: record.source, advisory }); // a repeated id: the later document wins
    if (batch.size >= batchSize) await flush();
  }
  await flush();

  if (failed > errors.length) errors.push(`... and ${failed - errors.length} more errors`);
  await db.advisoryImport.create({ data: { source: options.source ?? "stream", count: written.size, importedBy } });
  return { imported: written.size, skipped, errors, failed };
}

/** Replaces the advisories (and their affected rows) in one transaction. */
async function writeAdvisories(db: Db, advisories: NormalisedAdvisory[]): Promise<void> {
  const ids = advisories.map((a) => a.id);
  await db.$transaction([
    // advisory_affected rows go with their advisory (ON DELETE CASCADE)
    db.advisory.deleteMany({ where: { id: { in: ids } } }),
    db.advisory.createMany({
      data: advisories.map((a) => ({
        id: a.id,
        aliases: a.aliases,
        summary: a.summary,
        severity: a.severity,
        cvssVector: a.cvssVector,
        cvssScore: a.cvssScore,
        malicious: a.malicious,
        published: a.published,
        modified: a.modified,
        withdrawn: a.withdrawn,
        data: a.data as Prisma.InputJsonValue,
      })),
    }),
    db.advisoryAffected.createMany({
      data: advisories.flatMap((a) =>
        a.affected.map((entry) => ({
          advisoryId: a.id,
          packageName: entry.packageName,
          ranges: entry.ranges as unknown as Prisma.InputJsonValue,
          versions: entry.versions,
        })),
      ),
    }),
  ]);
}

/**
 * PostgreSQL rejects NUL in text and jsonb, and jsonb rejects unpaired surrogate escapes: drop
 * the former and replace the latter with U+FFFD, in keys and values alike.
 */
export function sanitiseForPostgres(value: unknown): unknown {
  if (typeof value === "string") return sanitiseString(value);
  if (Array.isArray(value)) return value.map(sanitiseForPostgres);
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[sanitiseString(k)] = sanitiseForPostgres(v);
    return out;
  }
  return value;
}

const unpairedSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function sanitiseString(s: string): string {
  return s.replaceAll("\u0000", "").replace(unpairedSurrogate, "\ufffd");
}

// ---------------------------------------------------------------------------------------------
// Lookups

/** An advisory as stored, with `affected` (and `fixedVersions`) narrowed to one package. */
export interface NormalisedAdvisoryRow extends NormalisedAdvisory {
  importedAt: Date;
}

/**
 * Non-withdrawn advisories with an affected entry for `name` (exact npm name), by id. Their
 * `affected` holds only the entries for `name`. Throws when a stored range is corrupt (fail closed).
 */
export async function advisoriesFor(db: Db, name: string): Promise<NormalisedAdvisoryRow[]> {
  const rows = await db.advisory.findMany({
    where: { withdrawn: null, affected: { some: { packageName: name } } },
    include: { affected: { where: { packageName: name }, orderBy: { id: "asc" } } },
    orderBy: { id: "asc" },
  });
  return rows.map((row) => {
    const affected: AffectedPackage[] = row.affected.map((a) => ({
      packageName: a.packageName,
      ranges: parseRanges(a.ranges),
      versions: a.versions,
    }));
    return {
      id: row.id,
      aliases: row.aliases,
      summary: row.summary,
      severity: asSeverity(row.severity),
      cvssVector: row.cvssVector,
      cvssScore: row.cvssScore,
      malicious: row.malicious,
      published: row.published,
      modified: row.modified,
      withdrawn: row.withdrawn,
      affected,
      fixedVersions: fixedVersionsOf(affected),
      url: advisoryUrlOf(row.data),
      cwe: cweIdsOf(row.data),
      data: row.data,
      importedAt: row.importedAt,
    };
  });
}

/** When advisories were last imported (the latest run that imported at least one), or null. */
export async function advisoryDataAge(db: Db): Promise<Date | null> {
  const last = await db.advisoryImport.findFirst({
    where: { count: { gt: 0 } },
    orderBy: { importedAt: "desc" },
    select: { importedAt: true },
  });
  return last?.importedAt ?? null;
}

function asSeverity(s: string): Severity {
  return (severities as readonly string[]).includes(s) ? (s as Severity) : "unknown";
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
