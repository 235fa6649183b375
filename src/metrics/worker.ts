/**
 * A worker's metrics: counters per stage fed by the queue runner's events, the step duration and
 * completion batch histograms, and gauges read at scrape time (in-flight steps, last poll, circuit
 * breaker state). `createWorkerMetrics(registry)` registers them on the worker's own registry.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../logger.ts";
import type { RunnerEvents } from "../queue/runner.ts";
import type { ClaimedRow, Completion, TakenOverRow } from "../queue/sql.ts";
import { STAGE_NAMES, stageByActive, type StageName } from "../queue/states.ts";
import type { CircuitState } from "../upstream/circuit-breaker.ts";

/** What an applied completion did, as a metric label. */
export type StepOutcomeLabel = "succeeded" | "rejected" | "retried" | "deferred" | "failed";

export const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * The stage a completion belongs to (from its active status) and what it did: `rejected`, `failed`,
 * back to a queue (`deferred` when the upstream circuit was open, `retried` otherwise), or
 * `succeeded` (the stage's done status, or pending_approval / approved from the scan). Null when
 * `from` is not an active status (no stage ran).
 */
export function classifyCompletion(c: Pick<Completion, "from" | "to" | "errorCode">): { stage: StageName; outcome: StepOutcomeLabel } | null {
  const stage = stageByActive(c.from);
  if (!stage) return null;
  if (c.to === "rejected") return { stage: stage.name, outcome: "rejected" };
  if (c.to === "failed") return { stage: stage.name, outcome: "failed" };
  // Back to this stage's queue (advancing always moves to a later status).
  if (c.to === stage.queued) return { stage: stage.name, outcome: c.errorCode === "circuit_open" ? "deferred" : "retried" };
  return { stage: stage.name, outcome: "succeeded" };
}

export interface WorkerMetricsSources {
  /** Steps running now (the runner's `inFlight`). */
  inFlight?: () => number;
  /** Epoch ms of the last poll that reached the database (0: none yet). */
  lastPoll?: () => number;
  circuitState?: () => CircuitState;
}

export interface WorkerMetrics {
  registry: Registry;
  /** Runner hooks that feed the counters and histograms; compose them with any others. */
  events: RunnerEvents;
  /** Where the scrape-time gauges read from (the runner and breaker exist after the metrics). */
  bind(sources: WorkerMetricsSources): void;
}

const STEP_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export function createWorkerMetrics(registry: Registry, log?: Logger): WorkerMetrics {
  const registers = [registry];
  const perStage = (name: string, help: string) => new Counter({ name, help, labelNames: ["stage"] as const, registers });
  const claimed = perStage("spm_worker_claimed_total", "Rows claimed, per stage");
  const succeeded = perStage("spm_worker_succeeded_total", "Steps that advanced their row (applied), per stage");
  const rejected = perStage("spm_worker_rejected_total", "Rows rejected by policy (applied), per stage");
  const retried = perStage("spm_worker_retried_total", "Rows sent back to their queue with backoff after an error (applied), per stage");
  const failed = perStage("spm_worker_failed_total", "Rows moved to failed: permanent error or retries used up (applied), per stage");
  const deferred = perStage("spm_worker_deferred_total", "Rows sent back to their queue because the upstream circuit was open (applied), per stage");
  const leaseLost = perStage("spm_worker_lease_lost_total", "Steps whose lease was lost (result discarded), per stage");
  const byOutcome: Record<StepOutcomeLabel, Counter<"stage">> = { succeeded, rejected, retried, failed, deferred };
  const expired = new Counter({
    name: "spm_worker_expired_leases_total",
    help: "Expired leases (no heartbeat for STUCK_AFTER_MINUTES) this worker found, per stage: taken over, or failed with attempts used up",
    labelNames: ["stage", "outcome"] as const,
    registers,
  });
  const stepDuration = new Histogram({
    name: "spm_step_duration_seconds",
    help: "Step run time, by stage and outcome",
    labelNames: ["stage", "outcome"] as const,
    buckets: STEP_BUCKETS,
    registers,
  });
  const batchSize = new Histogram({
    name: "spm_completion_batch_size",
    help: "Outcomes applied per completion flush (one guarded UPDATE)",
    buckets: BATCH_BUCKETS,
    registers,
  });
  for (const stage of STAGE_NAMES) {
    for (const c of [claimed, leaseLost, ...Object.values(byOutcome)]) c.inc({ stage }, 0);
    for (const outcome of ["taken_over", "failed"]) expired.inc({ stage, outcome }, 0);
  }

  let sources: WorkerMetricsSources = {};
  new Gauge({
    name: "spm_worker_in_flight",
    help: "Steps running in this worker now",
    registers,
    collect() {
      this.set(sources.inFlight?.() ?? 0);
    },
  });
  new Gauge({
    name: "spm_worker_last_poll_timestamp_seconds",
    help: "Unix time of the worker's last poll that reached the database (0: none yet)",
    registers,
    collect() {
      this.set((sources.lastPoll?.() ?? 0) / 1000);
    },
  });
  new Gauge({
    name: "spm_upstream_circuit_state",
    help: "The upstream circuit breaker: 0 closed, 1 half-open, 2 open",
    registers,
    collect() {
      this.set(CIRCUIT_STATE_VALUE[sources.circuitState?.() ?? "closed"]);
    },
  });

  // A claimed row's stage, kept until its outcome is applied or its lease lost (lease-lost hooks only carry ids).
  const stageOf = new Map<number, StageName>();
  const safe =
    <A extends unknown[]>(what: string, fn: (...args: A) => void) =>
    (...args: A): void => {
      try {
        fn(...args);
      } catch (err) {
        // Metrics must never break the runner's loop.
        log?.debug({ err, hook: what }, "metrics hook failed");
      }
    };

  const events: RunnerEvents = {
    claimed: safe("claimed", (rows: ClaimedRow[]) => {
      for (const row of rows) {
        const stage = stageByActive(row.status);
        if (!stage) continue;
        stageOf.set(row.id, stage.name);
        claimed.inc({ stage: stage.name });
      }
    }),
    takenOver: safe("takenOver", (rows: TakenOverRow[]) => {
      for (const row of rows) {
        const stage = stageByActive(row.from_status);
        if (stage) expired.inc({ stage: stage.name, outcome: row.status === "failed" ? "failed" : "taken_over" });
      }
    }),
    stepFinished: safe("stepFinished", (_row: ClaimedRow, completion: Completion, ms: number) => {
      const c = classifyCompletion(completion);
      if (c) stepDuration.observe({ stage: c.stage, outcome: c.outcome }, ms / 1000);
    }),
    applied: safe("applied", (completions: Completion[]) => {
      if (completions.length === 0) return;
      batchSize.observe(completions.length);
      for (const completion of completions) {
        stageOf.delete(completion.id);
        const c = classifyCompletion(completion);
        if (c) byOutcome[c.outcome].inc({ stage: c.stage });
      }
    }),
    leaseLost: safe("leaseLost", (ids: number[]) => {
      for (const id of ids) {
        const stage = stageOf.get(id);
        stageOf.delete(id);
        if (stage) leaseLost.inc({ stage });
      }
    }),
  };

  return {
    registry,
    events,
    bind(next) {
      sources = { ...sources, ...next };
    },
  };
}

/** One set of runner hooks that calls each given set in turn (a throwing hook does not stop the others). */
export function composeEvents(...sets: (RunnerEvents | undefined)[]): RunnerEvents {
  const list = sets.filter((s): s is RunnerEvents => s !== undefined);
  const each =
    <K extends keyof RunnerEvents>(key: K) =>
    (...args: Parameters<NonNullable<RunnerEvents[K]>>): void => {
      const failures: unknown[] = [];
      for (const s of list) {
        const fn = s[key] as ((...a: typeof args) => void) | undefined;
        try {
          fn?.(...args);
        } catch (err) {
          failures.push(err);
        }
      }
      if (failures.length > 0) throw failures[0];
    };
  return {
    claimed: each("claimed"),
    takenOver: each("takenOver"),
    stepStarted: each("stepStarted"),
    stepFinished: each("stepFinished"),
    applied: each("applied"),
    leaseLost: each("leaseLost"),
    pollError: each("pollError"),
  };
}
