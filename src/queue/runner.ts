/**
 * The queue engine: claims batches of rows, runs their steps with bounded concurrency, heartbeats
 * the leases it holds, and applies outcomes in batches through guarded transitions.
 *
 * Guarantees: at-least-once delivery (a crashed worker's expired leases are taken over by the next
 * worker that looks: `takeOver`), exactly-once effects (a transition applies only while the lease token
 * matches, so a late write is refused).
 */
import type { Logger } from "../logger.ts";
import { DeferStepError, StepError, type Step, type StepContext, type StepOutcome } from "../pipeline/step.ts";
import { pipelineCodes } from "../errors.ts";
import { backoffSeconds } from "./backoff.ts";
import { Completer } from "./completer.ts";
import { claim, heartbeat, release, takeOver, type ClaimedRow, type Completion, type Sql, type TakenOverRow } from "./sql.ts";
import type { PackageStatus, StageStates } from "./states.ts";

export interface RunnerStage<C extends StepContext = StepContext> {
  states: StageStates;
  step: Step<C>;
}

export interface RunnerOptions<C extends StepContext = StepContext> {
  sql: Sql;
  log: Logger;
  workerId: string;
  /** Stages in claim priority order (earlier first). */
  stages: RunnerStage<C>[];
  concurrency: number;
  /** Rows claimed per poll at most. */
  batchSize: number;
  /** Claims in flight at once while there is a backlog (default: `defaultClaimsInFlight`). */
  maxClaimsInFlight?: number;
  pollIntervalMs: number;
  heartbeatMs: number;
  /** A lease with no heartbeat for this long has expired and is taken over (STUCK_AFTER_MINUTES). */
  stuckSeconds: number;
  /** How often to look for expired leases (default: `heartbeatMs`). */
  takeoverCheckMs?: number;
  maxAttempts: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  /** Builds the context handed to a step (logger bound to the package, abort signal, services). */
  context: (row: ClaimedRow, base: StepContext) => C;
  events?: RunnerEvents;
}

/** Hooks for metrics and tests. */
export interface RunnerEvents {
  claimed?(rows: ClaimedRow[]): void;
  /** Rows whose expired lease this worker took over (also reported to `claimed`), or failed (attempts used up). */
  takenOver?(rows: TakenOverRow[]): void;
  stepStarted?(row: ClaimedRow): void;
  stepFinished?(row: ClaimedRow, outcome: Completion, ms: number): void;
  applied?(completions: Completion[]): void;
  leaseLost?(ids: number[]): void;
  pollError?(err: unknown): void;
}

export class QueueRunner<C extends StepContext = StepContext> {
  private readonly inflight = new Map<number, Flight>();
  private readonly completer: Completer;
  private readonly queued: PackageStatus[];
  private readonly active: PackageStatus[];
  private readonly byActive: Map<PackageStatus, RunnerStage<C>>;
  private readonly maxClaims: number;
  /** Rows whose step has not finished yet: what `concurrency` bounds. */
  private busy = 0;
  /** Slots reserved by claims in flight. */
  private reserved = 0;
  /** The last claim returned a full batch: more work is likely waiting. */
  private backlog = false;
  /** A claim loop is waiting for a step slot (or write room) to free up. */
  private saturated = false;
  private stopping = false;
  private loopDone: Promise<unknown> | null = null;
  private readonly waiters = new Set<() => void>();
  private wakeScheduled = false;
  private pendingWake = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private lastPollAt = 0;
  private dbFailures = 0;
  /** When to look for expired leases next (0: now; Infinity: a look is in flight). */
  private nextTakeoverAt = 0;

  constructor(private readonly opts: RunnerOptions<C>) {
    this.queued = opts.stages.map((s) => s.states.queued);
    this.active = opts.stages.map((s) => s.states.active);
    this.byActive = new Map(opts.stages.map((s) => [s.states.active, s]));
    this.maxClaims = Math.max(1, opts.maxClaimsInFlight ?? defaultClaimsInFlight(opts.concurrency, opts.batchSize));
    this.completer = new Completer(opts.sql, opts.workerId, opts.log, (applied, lost) => this.flushed(applied, lost));
  }

  /** Epoch ms of the last poll that reached the database: the worker's liveness signal. */
  get lastPoll(): number {
    return this.lastPollAt;
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  start(): void {
    if (this.loopDone) return;
    this.heartbeatTimer = setInterval(() => void this.beat(), this.opts.heartbeatMs);
    this.heartbeatTimer.unref();
    this.loopDone = Promise.all(Array.from({ length: this.maxClaims }, (_, i) => this.loop(i)));
  }

  /**
   * Poll now (a NOTIFY arrived, or work became available). Wake-ups are delivered on the next turn of
   * the event loop, so that the steps a completion flush finished all give their slots back first and
   * the next claim takes one batch instead of one row per finished step.
   */
  wake(): void {
    this.pendingWake = true;
    this.nudge();
  }

  /** Let waiting claim loops look again (a slot freed up, or a backlog appeared), without asking for a poll. */
  private nudge(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      for (const w of [...this.waiters]) w();
    });
  }

  /**
   * Stop claiming, let running steps finish within `graceMs`, abort the rest, flush outcomes and
   * release every lease still held back to its queued status.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.wake();
    await this.loopDone;
    const deadline = Date.now() + graceMs;
    while (this.running().length > 0 && Date.now() < deadline) await sleep(Math.min(50, deadline - Date.now()));
    const left = this.running();
    for (const f of left) {
      f.done = true;
      f.abort(new Error("worker shutting down"));
    }
    await this.completer.close(Date.now() + Math.max(graceMs, 5_000));
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (left.length > 0) {
      try {
        const n = await release(this.opts.sql, {
          worker: this.opts.workerId,
          leases: left.map((f) => ({ id: f.row.id, token: f.row.lease_token })),
          queued: this.queued,
          active: this.active,
        });
        this.opts.log.info({ released: n }, "released unfinished rows back to their queue");
      } catch (err) {
        this.opts.log.error({ err, rows: left.length }, "could not release rows; they will be taken over once their leases expire");
      }
    }
    for (const f of left) {
      this.inflight.delete(f.row.id);
      this.freeSlot(f);
    }
  }

  private running(): Flight[] {
    return [...this.inflight.values()].filter((f) => !f.done);
  }

  /** Step slots free for a new claim: bounded by `concurrency`, and by the outcomes still to be written. */
  private free(): number {
    const awaitingWrite = this.inflight.size - this.busy;
    const writeRoom = Math.max(1_000, 2 * this.opts.concurrency) - awaitingWrite;
    return Math.min(this.opts.concurrency - this.busy, writeRoom) - this.reserved;
  }

  /**
   * Claim loop `index`. Loop 0 polls; loops 1… only help while there is a backlog (the last claim was
   * full), so an idle worker sends one poll per interval, and a busy one keeps several claims in flight.
   */
  private async loop(index: number): Promise<void> {
    while (!this.stopping) {
      const free = this.free();
      if (free <= 0) {
        // Saturated: sleep until a step finishes (freeing its slot nudges us). A pending wake-up for
        // new work is moot until then, and must not turn this into a busy loop.
        this.saturated = true;
        this.pendingWake = false;
        await this.idle(this.opts.pollIntervalMs, false);
        continue;
      }
      if (index > 0 && !this.backlog) {
        await this.idle(this.opts.pollIntervalMs, false);
        continue;
      }
      this.saturated = false;
      const limit = Math.min(free, this.opts.batchSize);
      this.pendingWake = false;
      this.reserved += limit;
      // Now and then, and first of all, the claim looks for expired leases instead of queued rows.
      const takingOver = Date.now() >= this.nextTakeoverAt;
      if (takingOver) this.nextTakeoverAt = Infinity;
      let rows: ClaimedRow[];
      /** Rows a takeover moved, failed ones included. */
      let moved = 0;
      try {
        if (takingOver) {
          const { stuckSeconds, maxAttempts, workerId: worker } = this.opts;
          const taken = await takeOver(this.opts.sql, { active: this.active, limit, worker, stuckSeconds, maxAttempts });
          moved = taken.length;
          rows = this.tookOver(taken);
        } else {
          rows = await claim(this.opts.sql, { queued: this.queued, active: this.active, limit, worker: this.opts.workerId });
        }
        this.lastPollAt = Date.now();
        this.dbFailures = 0;
      } catch (err) {
        this.dbFailures += 1;
        this.backlog = false;
        if (takingOver) this.nextTakeoverAt = Date.now() + this.takeoverCheckMs;
        this.opts.events?.pollError?.(err);
        const delay = Math.min(this.opts.pollIntervalMs, 200 * 2 ** Math.min(this.dbFailures, 6));
        this.opts.log.warn({ err, retryInMs: delay }, "claim failed (database unavailable?)");
        await this.idle(delay, false);
        continue;
      } finally {
        this.reserved -= limit;
      }
      if (rows.length > 0) {
        this.opts.events?.claimed?.(rows);
        for (const row of rows) this.run(row);
      }
      if (takingOver) {
        // More expired leases are likely waiting after a full batch: look again at once. Either way,
        // claim queued rows next, without sleeping.
        this.nextTakeoverAt = moved === limit ? 0 : Date.now() + this.takeoverCheckMs;
        this.backlog ||= moved === limit;
        continue;
      }
      // A full batch means more work is likely waiting: claim again at once (and let helpers join).
      this.backlog = rows.length === limit;
      if (this.backlog) {
        if (this.maxClaims > 1) this.nudge();
        continue;
      }
      // idle until the next poll, or the next look for expired leases if that comes first
      if (!this.pendingWake) await this.idle(Math.min(this.opts.pollIntervalMs, Math.max(0, this.nextTakeoverAt - Date.now())));
    }
  }

  private get takeoverCheckMs(): number {
    return this.opts.takeoverCheckMs ?? this.opts.heartbeatMs;
  }

  /** Report taken-over and failed rows; the taken-over ones are this worker's to run. */
  private tookOver(rows: TakenOverRow[]): ClaimedRow[] {
    if (rows.length === 0) return rows;
    this.opts.events?.takenOver?.(rows);
    const live = rows.filter((r) => r.status !== "failed");
    const failed = rows.length - live.length;
    const owners = [...new Set(rows.map((r) => r.previous_owner ?? "unknown"))];
    this.opts.log.warn(
      { count: live.length, failed, previousOwners: owners, packageIds: rows.slice(0, 20).map((r) => r.id) },
      `took over expired leases (no heartbeat for ${Math.round(this.opts.stuckSeconds)} s)`,
    );
    return live;
  }

  /** Sleep up to `ms` or until woken; returns at once when a wake-up is pending (unless `respectPending` is false). */
  private idle(ms: number, respectPending = true): Promise<void> {
    if (this.stopping || (respectPending && this.pendingWake)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /**
   * The row's step is over (finished, abandoned or aborted): give its slot back, once. Only a loop
   * waiting for a slot needs to hear of it; an idle worker is not made to poll for every finished step.
   */
  private freeSlot(flight: Flight): void {
    if (flight.slotFreed) return;
    flight.slotFreed = true;
    this.busy -= 1;
    if (this.saturated) this.nudge();
  }

  /**
   * Start one row's step. Hot path (once per row): the row's Flight is also the step's base context
   * (its `log` and `signal` are prototype getters, made on first use), and the step's promise is
   * followed with one `.then` instead of an async function, whose frame and await machinery cost more
   * than the step itself when the step is quick.
   */
  private run(row: ClaimedRow): void {
    const stage = this.byActive.get(row.status);
    const flight = new Flight(row, stage?.states.name, this.opts.log);
    this.inflight.set(row.id, flight);
    this.busy += 1;
    this.opts.events?.stepStarted?.(row);
    if (!stage) return this.stepFailed(flight, undefined, new StepError("step_error", `no step for status ${row.status}`));
    let pending: Promise<StepOutcome>;
    try {
      pending = stage.step(row, this.opts.context(row, flight));
    } catch (err) {
      return this.stepFailed(flight, stage.states, err);
    }
    pending.then(
      (outcome) => this.stepReturned(flight, stage.states, outcome),
      (err: unknown) => this.stepFailed(flight, stage.states, err),
    );
  }

  private stepReturned(flight: Flight, states: StageStates, outcome: StepOutcome): void {
    let completion: Completion;
    try {
      completion = this.fromOutcome(flight.row, states, outcome);
    } catch (err) {
      completion = this.fromError(flight.row, states, err, flight.log);
    }
    this.handOver(flight, completion);
  }

  private stepFailed(flight: Flight, states: StageStates | undefined, err: unknown): void {
    this.handOver(flight, this.fromError(flight.row, states, err, flight.log));
  }

  /** The row's step is over: hand its outcome to the completer (or drop it, if the lease is gone). */
  private handOver(flight: Flight, completion: Completion): void {
    const { row } = flight;
    if (flight.done) {
      // Lease lost or shutting down: the result is discarded.
      this.finish(flight);
      return;
    }
    flight.done = true;
    // The step is over: its slot goes to the next row while the outcome waits for its batched write.
    this.freeSlot(flight);
    try {
      this.opts.events?.stepFinished?.(row, completion, performance.now() - flight.started);
    } catch (e) {
      flight.log.error({ err: e }, "stepFinished hook failed");
    }
    this.completer.push(completion, (applied) => {
      if (!applied) flight.log.warn({ to: completion.to }, "lease lost before completion; result discarded");
      this.finish(flight);
    });
  }

  private finish(flight: Flight): void {
    // the same row may have been claimed again meanwhile (its lease expired and was taken over while its step ran)
    if (this.inflight.get(flight.row.id) === flight) this.inflight.delete(flight.row.id);
    this.freeSlot(flight);
    if (this.saturated) this.nudge(); // write room freed up
  }

  // Hot path (once per row): plain object literals, no `{ ...base, … }` spread, which V8 builds on a
  // slow path (several µs per object, and the result is slower to read and to serialise).
  private fromOutcome(row: ClaimedRow, states: StageStates, outcome: StepOutcome): Completion {
    const { id, lease_token: token, status: from } = row;
    switch (outcome.kind) {
      case "advance":
        return {
          id,
          token,
          from,
          to: outcome.to ?? states.done,
          via: outcome.via ?? null,
          attempts: 0,
          patch: outcome.patch,
          reasonCode: outcome.reasonCode ?? null,
          reasonMessage: outcome.reasonMessage ?? null,
          eventReason: outcome.reason ?? `${states.name} done`,
          eventDetails: outcome.details,
          actor: outcome.actor,
        };
      case "reject":
        return {
          id,
          token,
          from,
          to: "rejected",
          attempts: 0,
          patch: outcome.patch,
          reasonCode: outcome.code,
          reasonMessage: outcome.message,
          eventReason: `${outcome.code}: ${outcome.message}`,
          eventDetails: outcome.details,
        };
      case "defer":
        return {
          id,
          token,
          from,
          to: states.queued,
          attempts: row.attempts,
          delaySeconds: outcome.delaySeconds,
          errorCode: outcome.code,
          errorMessage: outcome.message,
          eventReason: `deferred: ${outcome.message}`,
        };
    }
  }

  private fromError(row: ClaimedRow, states: StageStates | undefined, err: unknown, log: Logger): Completion {
    if (err instanceof DeferStepError && states) {
      log.debug({ code: err.code, retryInS: Math.round(err.delaySeconds * 10) / 10 }, "step deferred");
      return this.fromOutcome(row, states, { kind: "defer", code: err.code, message: err.message, delaySeconds: err.delaySeconds });
    }
    const code = err instanceof StepError ? err.code : "step_error";
    const message = err instanceof Error ? err.message : String(err);
    const isPermanent = err instanceof StepError ? err.permanent || pipelineCodes[code] === "permanent" : false;
    const attempts = row.attempts + 1;
    const exhausted = attempts >= this.opts.maxAttempts;
    const base = { id: row.id, token: row.lease_token, from: row.status, attempts, errorCode: code, errorMessage: message };
    if (isPermanent || exhausted || !states) {
      log.warn({ code, message, attempts }, "step failed");
      return { ...base, to: "failed", eventReason: isPermanent ? `${code}: ${message}` : `retries used up (${attempts}): ${code}: ${message}` };
    }
    const delaySeconds = backoffSeconds(attempts - 1, this.opts.retryBaseSeconds, this.opts.retryMaxSeconds);
    log.info({ code, message, attempts, retryInS: Math.round(delaySeconds * 10) / 10 }, "step failed; will retry");
    return { ...base, to: states.queued, delaySeconds, eventReason: `retry ${attempts}/${this.opts.maxAttempts - 1}: ${code}: ${message}` };
  }

  private flushed(applied: Completion[], lost: Completion[]): void {
    if (applied.length > 0) this.opts.events?.applied?.(applied);
    if (lost.length > 0) this.opts.events?.leaseLost?.(lost.map((c) => c.id));
    // Rows moved to a queued status may be ours to claim next; delayed retries wake us when due.
    for (const c of applied) {
      if (c.delaySeconds && c.delaySeconds > 0 && this.queued.includes(c.to)) {
        setTimeout(() => this.wake(), c.delaySeconds * 1000 + 5).unref();
      }
    }
    if (applied.some((c) => this.queued.includes(c.to))) this.wake();
  }

  private async beat(): Promise<void> {
    const held = this.running();
    if (held.length === 0) return;
    try {
      const alive = await heartbeat(
        this.opts.sql,
        held.map((f) => ({ id: f.row.id, token: f.row.lease_token })),
      );
      const lost = held.filter((f) => !alive.has(f.row.id) && !f.done);
      if (lost.length > 0) {
        for (const f of lost) {
          f.done = true;
          f.abort(new Error("lease lost"));
        }
        this.opts.events?.leaseLost?.(lost.map((f) => f.row.id));
        this.opts.log.warn({ ids: lost.map((f) => f.row.id) }, "leases lost (taken over after expiring, or retried); abandoning those steps");
      }
    } catch (err) {
      this.opts.log.warn({ err }, "heartbeat failed");
    }
  }
}

/**
 * How many claims a busy worker keeps in flight: enough that about 100 rows are being claimed at once
 * (small batches need several claims to hide their round trips), never more than the step slots can
 * take, 1 to 4. More is slower, not faster: concurrent claims start at the same end of the same index
 * and each one steps over the rows the others have locked (SKIP LOCKED still visits them), so at 100
 * rows per claim one claim at a time drains ~10 % faster than four (scripts/bench/drain.ts). Claims
 * commit asynchronously, so one after another costs no fsync wait.
 */
export function defaultClaimsInFlight(concurrency: number, batchSize: number): number {
  return Math.max(1, Math.min(4, Math.floor(concurrency / batchSize), Math.round(100 / batchSize)));
}

/**
 * One claimed row while its step runs and its outcome waits to be written; also the step's base
 * context. Its logger and abort signal are made on first use: a pino child and an AbortController (an
 * EventTarget) cost several µs each, and most steps never log nor look at their signal.
 */
class Flight implements StepContext {
  done = false;
  /** The row no longer holds one of the `concurrency` step slots (its step has finished). */
  slotFreed = false;
  readonly started = performance.now();
  private logger: Logger | null = null;
  private controller: AbortController | null = null;
  private aborted = false;
  private reason: unknown = undefined;

  constructor(
    readonly row: ClaimedRow,
    private readonly stageName: string | undefined,
    private readonly parentLog: Logger,
  ) {}

  get log(): Logger {
    return (this.logger ??= this.parentLog.child({ packageId: this.row.id, pkg: `${this.row.name}@${this.row.version}`, stage: this.stageName }));
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}
