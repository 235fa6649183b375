/**
 * Read-side queries behind the status endpoints. Each is one statement shaped to use the package
 * index (status, next_attempt_at, id) so they stay cheap at 1M rows.
 *
 * Per-request queries look each of the request's packages up by primary key (a LATERAL subquery with
 * OFFSET 0, which the planner keeps as a nested loop): their cost follows the request's size, not the
 * table's. Left to itself the planner hash-joins a 5,000-package request with a sequential scan of
 * the whole (wide: results documents) package table, twice as slow at 100k rows and worse beyond.
 */
import type { Db } from "../db/client.ts";
import { leaseExpired } from "../queue/sql.ts";
import { ACTIVE_STATUSES, ALL_STATUSES, QUEUED_STATUSES, SETTLED_STATUSES, STAGES, type PackageStatus } from "../queue/states.ts";

export type StatusCounts = Record<PackageStatus, number>;

function emptyCounts(): StatusCounts {
  return Object.fromEntries(ALL_STATUSES.map((s) => [s, 0])) as StatusCounts;
}

function toCounts(rows: { status: PackageStatus; n: number }[]): StatusCounts {
  const counts = emptyCounts();
  for (const r of rows) counts[r.status] = r.n;
  return counts;
}

export async function globalCounts(db: Db): Promise<StatusCounts> {
  return toCounts(await db.$queryRaw<{ status: PackageStatus; n: number }[]>`
    SELECT status::text AS status, count(*)::int AS n FROM package GROUP BY status`);
}

export interface StageQueue {
  stage: string;
  queued_status: PackageStatus;
  queued: number;
  ready: number;
  in_progress: number;
  oldest_queued_seconds: number | null;
}

/** Depth and oldest waiting age per stage (the age of the row that has waited longest to be claimed). */
export async function stageQueues(db: Db, counts: StatusCounts): Promise<StageQueue[]> {
  const rows = await db.$queryRaw<{ status: PackageStatus; oldest: number | null; ready: number }[]>`
    SELECT s.status::text AS status,
      (SELECT extract(epoch FROM now() - min(p.next_attempt_at))::float8 FROM package p
        WHERE p.status = s.status AND p.next_attempt_at <= now()) AS oldest,
      (SELECT count(*)::int FROM package p WHERE p.status = s.status AND p.next_attempt_at <= now()) AS ready
    FROM unnest(${[...QUEUED_STATUSES]}::package_status[]) AS s(status)`;
  const byStatus = new Map(rows.map((r) => [r.status, r]));
  return STAGES.map((s) => ({
    stage: s.name,
    queued_status: s.queued,
    queued: counts[s.queued],
    ready: byStatus.get(s.queued)?.ready ?? 0,
    in_progress: counts[s.active],
    oldest_queued_seconds: byStatus.get(s.queued)?.oldest == null ? null : Math.round(byStatus.get(s.queued)!.oldest!),
  }));
}

/**
 * Rows in progress whose heartbeat is older than the stuck threshold: expired leases, which the next
 * worker of their stage takes over. Reads only the rows claimed that long ago (`leaseExpired`).
 */
export async function stuckCount(db: Db, stuckSeconds: number): Promise<number> {
  const [row] = await db.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM package p
    WHERE p.status = ANY(${[...ACTIVE_STATUSES]}::package_status[]) AND ${leaseExpired(stuckSeconds)}`;
  return row?.n ?? 0;
}

export async function recentWorkers(db: Db, withinSeconds = 60) {
  return db.worker.findMany({
    where: { lastSeenAt: { gt: new Date(Date.now() - withinSeconds * 1000) } },
    orderBy: { startedAt: "asc" },
  });
}

export async function recentTransitions(db: Db, limit = 20) {
  const events = await db.packageEvent.findMany({ orderBy: { id: "desc" }, take: limit });
  // the audit trail is keyed by package id, not a relation (it outlives package rows)
  const packages = await db.package.findMany({
    where: { id: { in: [...new Set(events.map((e) => e.packageId))] } },
    select: { id: true, name: true, version: true },
  });
  const spec = new Map(packages.map((p) => [p.id, `${p.name}@${p.version}`]));
  return events.map((e) => ({
    package_id: e.packageId,
    package: spec.get(e.packageId) ?? `#${e.packageId}`,
    from: e.fromStatus,
    to: e.toStatus,
    actor: e.actor,
    reason: e.reason,
    at: e.at.toISOString(),
  }));
}

export async function requestCounts(db: Db, requestId: number): Promise<StatusCounts> {
  return toCounts(await db.$queryRaw<{ status: PackageStatus; n: number }[]>`
    SELECT p.status::text AS status, count(*)::int AS n
    FROM request_package rp
    CROSS JOIN LATERAL (SELECT status FROM package WHERE id = rp.package_id OFFSET 0) p
    WHERE rp.request_id = ${requestId}::int
    GROUP BY p.status`);
}

export interface Progress {
  total: number;
  settled: number;
  percent_complete: number;
  /** True when the pipeline has nothing left to do for the request: every package is approved, rejected, failed or awaiting review. */
  done: boolean;
}

export function progress(counts: StatusCounts): Progress {
  const total = ALL_STATUSES.reduce((n, s) => n + counts[s], 0);
  const settled = SETTLED_STATUSES.reduce((n, s) => n + counts[s], 0);
  return {
    total,
    settled,
    percent_complete: total === 0 ? 100 : Math.floor((settled / total) * 1000) / 10,
    done: settled === total,
  };
}

export interface RequestPackageRow {
  id: number;
  name: string;
  version: string;
  status: PackageStatus;
  attempts: number;
  last_error: { code: string; message: string | null } | null;
  reason: { code: string; message: string | null } | null;
  updated_at: string;
}

export async function requestPackages(
  db: Db,
  requestId: number,
  opts: { status?: PackageStatus; limit: number; offset: number },
): Promise<RequestPackageRow[]> {
  const status = opts.status ?? null;
  const rows = await db.$queryRaw<
    {
      id: number;
      name: string;
      version: string;
      status: PackageStatus;
      attempts: number;
      last_error_code: string | null;
      last_error_message: string | null;
      reason_code: string | null;
      reason_message: string | null;
      updated_at: Date;
    }[]
  >`
    SELECT p.id, p.name, p.version, p.status::text AS status, p.attempts, p.last_error_code, p.last_error_message,
           p.reason_code, p.reason_message, p.updated_at
    FROM request_package rp
    CROSS JOIN LATERAL (
      SELECT id, name, version, status, attempts, last_error_code, last_error_message, reason_code, reason_message, updated_at
      FROM package WHERE id = rp.package_id OFFSET 0
    ) p
    WHERE rp.request_id = ${requestId}::int AND (${status}::package_status IS NULL OR p.status = ${status}::package_status)
    ORDER BY p.name, p.version
    LIMIT ${opts.limit} OFFSET ${opts.offset}`;
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    version: r.version,
    status: r.status,
    attempts: r.attempts,
    last_error: r.last_error_code ? { code: r.last_error_code, message: r.last_error_message } : null,
    reason: r.reason_code ? { code: r.reason_code, message: r.reason_message } : null,
    updated_at: r.updated_at.toISOString(),
  }));
}

/** Per request: whether the pipeline is done with it (used by the request list). */
export async function requestsDone(db: Db, ids: number[]): Promise<Map<number, { settled: number; total: number }>> {
  if (ids.length === 0) return new Map();
  const rows = await db.$queryRaw<{ request_id: number; settled: number; total: number }[]>`
    SELECT rp.request_id, count(*) FILTER (WHERE p.status = ANY(${[...SETTLED_STATUSES]}::package_status[]))::int AS settled,
           count(*)::int AS total
    FROM request_package rp
    CROSS JOIN LATERAL (SELECT status FROM package WHERE id = rp.package_id OFFSET 0) p
    WHERE rp.request_id = ANY(${ids}::int[])
    GROUP BY rp.request_id`;
  return new Map(rows.map((r) => [r.request_id, { settled: r.settled, total: r.total }]));
}
