/**
 * Every SQL statement of the queue, one small function per operation. Each one is a single statement
 * (one round trip, one transaction unless the caller opens one). Batches travel as one JSON parameter
 * expanded with jsonb_to_recordset, so one statement moves any number of rows.
 *
 * Every state change is guarded: `WHERE status = <expected> AND lease_token = <mine>`; a row whose
 * lease was lost (expired and taken over, released, or retried) is simply not matched.
 */
import { Prisma, type Db } from "../db/client.ts";
import type { PackageStatus } from "./states.ts";

/** Anything that can run raw SQL: the client or an interactive transaction. */
export type Sql = Pick<Db, "$queryRaw" | "$executeRaw">;

export interface ClaimedRow {
  id: number;
  name: string;
  version: string;
  status: PackageStatus;
  from_status: PackageStatus;
  attempts: number;
  lease_token: string;
  results: Record<string, unknown>;
}

/**
 * Claim up to `limit` rows from the given queued statuses (in the order given: earlier statuses are
 * drained first), moving each to the matching active status under a fresh lease.
 *
 * A claim writes no event of its own: the lease (owner, token, heartbeat) is on the row while it is
 * held, and the transition that ends it (the step's outcome, a release, or a takeover of the expired lease) is
 * recorded with its actor and `from_status` = the active status, so the trail still shows who held the
 * row in which stage. One event per step instead of two keeps the audit trail off the claim path.
 *
 * The claim commits without waiting for its WAL flush (`synchronous_commit = off` for this one
 * transaction): a claim lost in a server crash only puts the rows back in their queue, where they are
 * claimed again, and the lost lease's late completion is refused by the token guard. Every later
 * synchronous commit (the completion, any other write) flushes the WAL up to and including the claim.
 * This takes an fsync off the pickup path and off every batch.
 */
export async function claim(sql: Sql, args: ClaimArgs): Promise<ClaimedRow[]> {
  return sql.$queryRaw<ClaimedRow[]>`
    WITH claim_stages AS (
      SELECT q.status, q.ord FROM unnest(${args.queued}::package_status[]) WITH ORDINALITY AS q(status, ord)
      WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), claim_picked AS (
      SELECT c.id
      FROM claim_stages s
      CROSS JOIN LATERAL (
        SELECT p.id FROM package p
        WHERE p.status = s.status AND p.next_attempt_at <= now()
        ORDER BY p.next_attempt_at, p.id
        LIMIT ${args.limit}
        FOR UPDATE SKIP LOCKED
      ) c
      ORDER BY s.ord
      LIMIT ${args.limit}
    ), claimed AS (
      -- The picked ids go in as one array (an InitPlan), so the update is an index scan of the primary
      -- key: joined to the CTE instead, the planner hash-joins it against a sequential scan of the whole
      -- table whenever the table is small enough to look cheap (~5 ms per claim at 20,000 rows).
      -- SET reads the old (queued) status, under the row lock taken above.
      UPDATE package p SET
        status = (${args.active}::package_status[])[array_position(${args.queued}::package_status[], p.status)],
        lease_owner = ${args.worker}, lease_token = gen_random_uuid(), heartbeat_at = now(),
        -- the claim time: an expired lease is then found in this index's range (see takeOver)
        next_attempt_at = now(), updated_at = now()
      WHERE p.id = ANY(ARRAY(SELECT id FROM claim_picked))
      RETURNING p.id, p.name, p.version, p.status, p.attempts, p.lease_token, p.results
    )
    SELECT id, name, version, status::text AS status,
           ((${args.queued}::package_status[])[array_position(${args.active}::package_status[], status)])::text AS from_status,
           attempts, lease_token::text AS lease_token, results
    FROM claimed`;
}

export interface ClaimArgs {
  queued: PackageStatus[];
  active: PackageStatus[];
  limit: number;
  worker: string;
}

/** The outcome of one step, applied by `complete`. */
export interface Completion {
  id: number;
  token: string;
  from: PackageStatus;
  to: PackageStatus;
  /** An intermediate status recorded as its own event (e.g. scanning → pending_approval → approved). */
  via?: PackageStatus | null;
  attempts: number;
  /** Seconds until the row may be claimed again (retries); 0 otherwise. */
  delaySeconds?: number;
  errorCode?: string | null;
  errorMessage?: string | null;
  reasonCode?: string | null;
  reasonMessage?: string | null;
  /** Merged into `results` (top-level keys replace). */
  patch?: Record<string, unknown>;
  eventReason: string;
  eventDetails?: unknown;
  /** Actor for the final event; defaults to the worker. */
  actor?: string;
}

/**
 * Apply many step outcomes in one guarded statement. Returns the ids that were applied; the others
 * had lost their lease (or were moved by someone else) and must be discarded by the caller.
 */
export async function complete(sql: Sql, worker: string, rows: Completion[]): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const input = JSON.stringify(rows.map(completionInput));
  const applied = await sql.$queryRaw<{ ids: number[] | null }[]>`
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS i(
        id int, token uuid, from_status package_status, to_status package_status, via package_status,
        attempts int, delay_s float8, err_code text, err_msg text, reason_code text, reason_msg text,
        patch jsonb, ev_reason text, ev_details jsonb, actor text)
    ), moved AS (
      UPDATE package p SET
        status = i.to_status, attempts = COALESCE(i.attempts, 0),
        next_attempt_at = CASE WHEN i.delay_s IS NULL THEN now() ELSE now() + make_interval(secs => i.delay_s) END,
        lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL,
        last_error_code = i.err_code, last_error_message = i.err_msg,
        reason_code = i.reason_code, reason_message = i.reason_msg,
        results = CASE WHEN i.patch IS NULL THEN p.results ELSE p.results || i.patch END, updated_at = now()
      FROM input i
      WHERE p.id = i.id AND p.status = i.from_status AND p.lease_token = i.token
      RETURNING p.id, p.name, i.from_status, i.via, i.to_status, i.ev_reason, i.ev_details, i.actor
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
      SELECT id, from_status, COALESCE(via, to_status), ${worker}, ev_reason, ev_details FROM moved
      UNION ALL
      SELECT id, via, to_status, COALESCE(actor, ${worker}), ev_reason, ev_details FROM moved WHERE via IS NOT NULL
    ), approved AS (
      SELECT pg_notify(${REGISTRY_CHANNEL}, name) FROM moved WHERE to_status = 'approved'
    )
    -- the applied ids as one array (one row back, not one per package)
    SELECT array_agg(id) AS ids FROM moved WHERE (SELECT count(*) FROM approved) >= 0`;
  return new Set(applied[0]?.ids ?? []);
}

/**
 * One row of `complete`'s JSON input. Keys whose value is the default are left out (jsonb_to_recordset
 * reads a missing key as NULL, and the statement applies the defaults): a typical outcome is five keys,
 * not fifteen, which halves the bytes each batch sends and parses.
 */
function completionInput(r: Completion): Record<string, unknown> {
  const o: Record<string, unknown> = { id: r.id, token: r.token, from_status: r.from, to_status: r.to, ev_reason: r.eventReason };
  if (r.via) o.via = r.via;
  if (r.attempts) o.attempts = r.attempts;
  if (r.delaySeconds) o.delay_s = r.delaySeconds;
  if (r.errorCode != null) o.err_code = r.errorCode;
  if (r.errorMessage != null) o.err_msg = r.errorMessage;
  if (r.reasonCode != null) o.reason_code = r.reasonCode;
  if (r.reasonMessage != null) o.reason_msg = r.reasonMessage;
  if (r.patch && Object.keys(r.patch).length > 0) o.patch = r.patch;
  if (r.eventDetails != null) o.ev_details = r.eventDetails;
  if (r.actor) o.actor = r.actor;
  return o;
}

export interface Lease {
  id: number;
  token: string;
}

/** Refresh the heartbeat of every lease still held; returns the ids still held. */
export async function heartbeat(sql: Sql, leases: Lease[]): Promise<Set<number>> {
  if (leases.length === 0) return new Set();
  const input = JSON.stringify(leases);
  const rows = await sql.$queryRaw<{ id: number }[]>`
    UPDATE package p SET heartbeat_at = now()
    FROM jsonb_to_recordset(${input}::jsonb) AS i(id int, token uuid)
    WHERE p.id = i.id AND p.lease_token = i.token
    RETURNING p.id`;
  return new Set(rows.map((r) => r.id));
}

/** Put leased rows back to their queued status at once (shutdown): no attempt is charged. */
export async function release(
  sql: Sql,
  args: { worker: string; leases: Lease[]; queued: PackageStatus[]; active: PackageStatus[] },
): Promise<number> {
  if (args.leases.length === 0) return 0;
  const input = JSON.stringify(args.leases);
  const rows = await sql.$queryRaw<{ id: number }[]>`
    WITH moved AS (
      UPDATE package p SET
        status = (${args.queued}::package_status[])[array_position(${args.active}::package_status[], p.status)],
        lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL, next_attempt_at = now(), updated_at = now()
      FROM jsonb_to_recordset(${input}::jsonb) AS i(id int, token uuid)
      WHERE p.id = i.id AND p.lease_token = i.token AND p.status = ANY(${args.active}::package_status[])
      RETURNING p.id, i.token, p.status
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
      SELECT m.id, (${args.active}::package_status[])[array_position(${args.queued}::package_status[], m.status)],
             m.status, ${args.worker}, 'released on shutdown'
      FROM moved m
    )
    SELECT id FROM moved`;
  return rows.length;
}

export interface TakeOverArgs extends Omit<ClaimArgs, "queued"> {
  /** A lease whose heartbeat is older than this has expired (STUCK_AFTER_MINUTES). */
  stuckSeconds: number;
  /** A row whose attempts reach this goes to `failed` instead of being taken over. */
  maxAttempts: number;
}

/**
 * The lease of package row `p` (in an active status) has expired: no heartbeat for `stuckSeconds`.
 * A claim sets `next_attempt_at` to the claim time and a heartbeat is never older than its claim, so
 * the first condition bounds the rows read to an index range of `(status, next_attempt_at, id)`: rows
 * claimed longer ago than the threshold, not every row in progress.
 */
export function leaseExpired(stuckSeconds: number): Prisma.Sql {
  return Prisma.sql`p.next_attempt_at <= now() - make_interval(secs => ${stuckSeconds}::float8)
    AND (p.heartbeat_at IS NULL OR p.heartbeat_at < now() - make_interval(secs => ${stuckSeconds}::float8))`;
}

/** A row `takeOver` moved: taken over (a fresh lease for the caller) or failed (attempts used up). */
export interface TakenOverRow extends ClaimedRow {
  /** The worker whose lease expired. */
  previous_owner: string | null;
}

/**
 * Take over up to `limit` rows whose lease expired: in an active status with no heartbeat for
 * `stuckSeconds` (their worker crashed, froze, or lost the database). This is how a stuck row is
 * reset — there is no separate pass that moves stuck rows back to their queue and a second claim that
 * takes them again: one guarded write moves each row from the dead lease to a fresh one (attempts + 1,
 * `last_error_code = 'lease_expired'`, one event), or to `failed` when its attempts are used up.
 *
 * Expired leases are an index range (`leaseExpired`): when nothing has expired this costs one index
 * descent per stage. Rows are locked with SKIP LOCKED
 * (never waits on, or stalls, anyone); the dead worker's late writes are refused by the new token.
 * Commits without waiting for its WAL flush, like `claim`. Returns every moved row, failed ones
 * included (status `failed`, no lease).
 */
export async function takeOver(sql: Sql, args: TakeOverArgs): Promise<TakenOverRow[]> {
  return sql.$queryRaw<TakenOverRow[]>`
    WITH take_stages AS (
      SELECT a.status, a.ord FROM unnest(${args.active}::package_status[]) WITH ORDINALITY AS a(status, ord)
      WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
    ), expired AS (
      SELECT c.id, c.status, c.lease_owner
      FROM take_stages s
      CROSS JOIN LATERAL (
        SELECT p.id, p.status, p.lease_owner FROM package p
        WHERE p.status = s.status AND ${leaseExpired(args.stuckSeconds)}
        ORDER BY p.next_attempt_at, p.id
        LIMIT ${args.limit}
        FOR UPDATE SKIP LOCKED
      ) c
      ORDER BY s.ord
      LIMIT ${args.limit}
    ), moved AS (
      UPDATE package p SET
        status = CASE WHEN p.attempts + 1 >= ${args.maxAttempts} THEN 'failed'::package_status ELSE p.status END,
        attempts = p.attempts + 1,
        lease_owner = CASE WHEN p.attempts + 1 >= ${args.maxAttempts} THEN NULL ELSE ${args.worker} END,
        lease_token = CASE WHEN p.attempts + 1 >= ${args.maxAttempts} THEN NULL ELSE gen_random_uuid() END,
        heartbeat_at = CASE WHEN p.attempts + 1 >= ${args.maxAttempts} THEN NULL ELSE now() END,
        next_attempt_at = now(), updated_at = now(),
        last_error_code = 'lease_expired',
        last_error_message = 'no heartbeat from ' || COALESCE(e.lease_owner, 'unknown worker') || ' for '
          || ${Math.round(args.stuckSeconds)}::int || ' s while ' || e.status::text
      -- the ids as one array (an InitPlan): an index scan of the primary key (see claim)
      FROM expired e WHERE p.id = ANY(ARRAY(SELECT id FROM expired)) AND p.id = e.id
      RETURNING p.id, p.name, p.version, p.status, e.status AS from_status, p.attempts, p.lease_token, p.results,
                e.lease_owner AS previous_owner
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
      SELECT id, from_status, status, ${args.worker},
             CASE WHEN status = 'failed' THEN 'stuck: no heartbeat; retries used up' ELSE 'stuck: no heartbeat; lease taken over' END,
             jsonb_build_object('lease_owner', previous_owner, 'attempts', attempts)
      FROM moved
    )
    SELECT id, name, version, status::text AS status, from_status::text AS from_status, attempts,
           lease_token::text AS lease_token, results, previous_owner
    FROM moved`;
}

export interface RetryScope {
  requestId?: number;
  packageIds?: number[];
}

/** Move `failed` rows (all, of one request, or of some ids) back to `requested` with attempts reset. */
export async function retryFailed(sql: Sql, scope: RetryScope, actor: string): Promise<number> {
  const requestId = scope.requestId ?? null;
  const ids = scope.packageIds ?? null;
  const rows = await sql.$queryRaw<{ id: number }[]>`
    WITH target AS (
      SELECT p.id FROM package p
      WHERE p.status = 'failed'
        AND (${requestId}::int IS NULL OR EXISTS (
          SELECT 1 FROM request_package rp WHERE rp.package_id = p.id AND rp.request_id = ${requestId}::int))
        AND (${ids}::int[] IS NULL OR p.id = ANY(${ids}::int[]))
      FOR UPDATE SKIP LOCKED
    ), moved AS (
      UPDATE package p SET status = 'requested', attempts = 0, next_attempt_at = now(),
        last_error_code = NULL, last_error_message = NULL, updated_at = now()
      FROM target WHERE p.id = target.id AND p.status = 'failed'
      RETURNING p.id
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
      SELECT id, 'failed', 'requested', ${actor}, 'retry requested' FROM moved
    )
    SELECT id FROM moved`;
  return rows.length;
}

/** Wake idle workers (delivered at commit when called inside a transaction). */
export async function notifyWork(sql: Sql): Promise<void> {
  await sql.$executeRaw`SELECT pg_notify(${WORK_CHANNEL}, '')`;
}

export const WORK_CHANNEL = "spm_work";
/** Payload: a package name whose set of approved versions changed (registry caches listen). */
export const REGISTRY_CHANNEL = "spm_registry";

/** Record that a worker is alive (one row per worker). */
export async function touchWorker(
  sql: Sql,
  w: { id: string; hostname: string; pid: number; info: Record<string, unknown> },
): Promise<void> {
  const info = JSON.stringify(w.info);
  await sql.$executeRaw`
    INSERT INTO worker (id, hostname, pid, info) VALUES (${w.id}, ${w.hostname}, ${w.pid}, ${info}::jsonb)
    ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), info = EXCLUDED.info`;
}

export interface EnqueueRow {
  name: string;
  version: string;
  integrity: string | null;
  resolved: string | null;
}

/**
 * Enqueue a request's packages: insert the name@versions not seen before (status `requested`, with
 * their creation event), then link every one to the request. Two statements, so that the link sees
 * rows a concurrent upload committed meanwhile; run both in the request's transaction.
 */
export async function enqueuePackages(
  sql: Sql,
  args: { requestId: number; actor: string; rows: EnqueueRow[] },
): Promise<{ inserted: number; linked: number }> {
  const input = JSON.stringify(args.rows);
  const inserted = await sql.$queryRaw<{ n: number }[]>`
    WITH input AS (
      SELECT DISTINCT name, version FROM jsonb_to_recordset(${input}::jsonb) AS i(name text, version text)
    ), ins AS (
      INSERT INTO package (name, version) SELECT name, version FROM input ORDER BY name, version
      ON CONFLICT (name, version) DO NOTHING
      RETURNING id
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
      SELECT id, NULL, 'requested', ${args.actor}, 'uploaded', jsonb_build_object('request_id', ${args.requestId}::int) FROM ins
    )
    SELECT count(*)::int AS n FROM ins`;
  const linked = await sql.$queryRaw<{ n: number }[]>`
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS i(name text, version text, integrity text, resolved text)
    ), links AS (
      INSERT INTO request_package (request_id, package_id, integrity, resolved)
      SELECT ${args.requestId}::int, p.id, i.integrity, i.resolved
      FROM input i JOIN package p ON p.name = i.name AND p.version = i.version
      ON CONFLICT DO NOTHING
      RETURNING package_id
    )
    SELECT count(*)::int AS n FROM links`;
  return { inserted: inserted[0]?.n ?? 0, linked: linked[0]?.n ?? 0 };
}

export interface DecidedRow {
  id: number;
  name: string;
  from_status: PackageStatus;
  /** The status the row went to: `licence_checked` when an override resumed the pipeline. */
  to_status: PackageStatus;
}

/**
 * A person's decision on packages: move the rows among `ids` whose status is in `from` to `to`
 * (rows in any other state are not touched), with one event each (actor, reason with the comment,
 * details `{ comment }`), in one guarded statement. An approval records `results.approval`
 * `{ by, at, comment, from, overrode }` (overrode: the rejection it overrides, if any) and drops
 * `results.rejection`; a rejection records `results.rejection` `{ by, at, comment, from, revokedApproval }`
 * and drops `results.approval`. Registry caches are notified of every name decided: its approved
 * versions, or the reason its refusals give, changed.
 */
export async function decide(
  sql: Sql,
  args: {
    ids: number[];
    to: "approved" | "rejected";
    from: PackageStatus[];
    actor: string;
    comment: string | null;
    reasonCode: string | null;
    reasonMessage: string | null;
  },
): Promise<DecidedRow[]> {
  if (args.ids.length === 0 || args.from.length === 0) return [];
  return sql.$queryRaw<DecidedRow[]>`
    WITH target AS (
      SELECT p.id, p.status, p.reason_code, p.reason_message, p.results -> 'approval' AS approval,
        -- Overriding a rejection made before anything was stored (e.g. licence_denied) cannot approve
        -- bytes nobody verified: the row resumes the pipeline (download, scan) with the override noted.
        (${args.to}::package_status = 'approved' AND p.status = 'rejected'
          AND p.results #>> '{download,storageKey}' IS NULL) AS resume
      FROM package p
      WHERE p.id = ANY(${args.ids}::int[]) AND p.status = ANY(${args.from}::package_status[])
      ORDER BY p.id
      FOR UPDATE
    ), moved AS (
      UPDATE package p SET
        status = CASE WHEN t.resume THEN 'licence_checked'::package_status ELSE ${args.to}::package_status END,
        next_attempt_at = now(), attempts = 0,
        reason_code = ${args.reasonCode}::text, reason_message = ${args.reasonMessage}::text,
        results = CASE WHEN t.resume
          THEN (p.results - 'rejection') || jsonb_build_object('override', jsonb_build_object(
            'by', ${args.actor}::text, 'at', now(), 'comment', ${args.comment}::text,
            'overrode', jsonb_build_object('code', t.reason_code, 'message', t.reason_message)))
          WHEN ${args.to}::package_status = 'approved'
          THEN (p.results - 'rejection') || jsonb_build_object('approval', jsonb_build_object(
            'by', ${args.actor}::text, 'at', now(), 'comment', ${args.comment}::text, 'from', t.status,
            'overrode', CASE WHEN t.status = 'rejected'
              THEN jsonb_build_object('code', t.reason_code, 'message', t.reason_message) END))
          ELSE (p.results - 'approval') || jsonb_build_object('rejection', jsonb_build_object(
            'by', ${args.actor}::text, 'at', now(), 'comment', ${args.comment}::text, 'from', t.status,
            'revokedApproval', t.approval))
          END,
        updated_at = now()
      FROM target t
      WHERE p.id = t.id AND p.status = t.status
      RETURNING p.id, p.name, t.status AS from_status, p.status AS to_status, t.reason_code AS prev_code, t.resume
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
      SELECT id, from_status, to_status, ${args.actor}::text,
        CASE
          WHEN resume
            THEN 'rejection overridden (' || COALESCE(prev_code, 'no reason code') || '); resuming the pipeline to download and scan'
          WHEN ${args.to}::package_status = 'approved' AND from_status = 'rejected'
            THEN 'rejection overridden (' || COALESCE(prev_code, 'no reason code') || ')'
          WHEN ${args.to}::package_status = 'approved' THEN 'approved by reviewer'
          WHEN from_status = 'approved' THEN 'approval revoked'
          ELSE 'rejected by reviewer'
        END || COALESCE(': ' || ${args.comment}::text, ''),
        jsonb_build_object('comment', ${args.comment}::text)
          || CASE WHEN from_status = 'rejected' THEN jsonb_build_object('overrode', prev_code) ELSE '{}'::jsonb END
      FROM moved
    ), notified AS (
      SELECT pg_notify(${REGISTRY_CHANNEL}, name) FROM moved
      UNION ALL
      SELECT pg_notify(${WORK_CHANNEL}, '') FROM moved WHERE resume
    )
    SELECT id, name, from_status::text AS from_status, to_status::text AS to_status FROM moved
    WHERE (SELECT count(*) FROM notified) >= 0
    ORDER BY id`;
}

/**
 * Put the rows a worker process held back to their queue once its supervisor has seen the process
 * exit (`npm start`), instead of leaving them until their leases expire. Guarded by the dead worker's
 * id and the in-progress statuses: `owner` must be that process's own id, never shared. One attempt is
 * charged (the step may be what killed it, e.g. memory on a hostile tarball), and a row whose attempts
 * are used up goes to `failed`; one event per row.
 */
export async function requeueDeadWorker(
  sql: Sql,
  args: { owner: string; actor: string; reason: string; queued: PackageStatus[]; active: PackageStatus[]; maxAttempts: number },
): Promise<number> {
  const rows = await sql.$queryRaw<{ id: number }[]>`
    WITH held AS (
      SELECT id, status FROM package WHERE lease_owner = ${args.owner} AND status = ANY(${args.active}::package_status[])
      FOR UPDATE
    ), moved AS (
      UPDATE package p SET
        status = CASE WHEN p.attempts + 1 >= ${args.maxAttempts} THEN 'failed'::package_status
                 ELSE (${args.queued}::package_status[])[array_position(${args.active}::package_status[], p.status)] END,
        attempts = p.attempts + 1,
        lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL, next_attempt_at = now(), updated_at = now(),
        last_error_code = 'worker_exited', last_error_message = ${args.reason}
      FROM held h WHERE p.id = h.id AND p.status = h.status
      RETURNING p.id, h.status AS from_status, p.status AS to_status
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason, details)
      SELECT id, from_status, to_status, ${args.actor}, ${args.reason}, jsonb_build_object('lease_owner', ${args.owner}::text)
      FROM moved
    )
    SELECT id FROM moved`;
  return rows.length;
}

/**
 * Put every in-progress row back to its queue (no attempt charged). Only for a database no worker
 * can be using: `npm start`'s embedded database before it launches its worker. A previous run that was
 * killed (a second Ctrl-C, a crash) left its worker's rows in progress; their leases would expire and
 * be taken over only after STUCK_AFTER_MINUTES.
 */
export async function requeueOrphans(
  sql: Sql,
  args: { actor: string; queued: PackageStatus[]; active: PackageStatus[] },
): Promise<number> {
  const rows = await sql.$queryRaw<{ id: number }[]>`
    WITH moved AS (
      UPDATE package p SET
        status = (${args.queued}::package_status[])[array_position(${args.active}::package_status[], p.status)],
        lease_owner = NULL, lease_token = NULL, heartbeat_at = NULL, next_attempt_at = now(), updated_at = now()
      WHERE p.status = ANY(${args.active}::package_status[])
      RETURNING p.id, p.status
    ), events AS (
      INSERT INTO package_event (package_id, from_status, to_status, actor, reason)
      SELECT m.id, (${args.active}::package_status[])[array_position(${args.queued}::package_status[], m.status)],
             m.status, ${args.actor}, 'requeued at start: the previous run stopped mid-step'
      FROM moved m
    )
    SELECT id FROM moved`;
  return rows.length;
}
