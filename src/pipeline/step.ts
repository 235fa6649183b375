/**
 * The contract between the queue engine and the pipeline's steps. A step gets a claimed row and
 * returns an outcome; it never writes the row's status itself (the engine applies the outcome with a
 * guarded transition). Steps must be idempotent: a row may be delivered again after a crash.
 */
import type { PipelineCode } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { ClaimedRow } from "../queue/sql.ts";
import type { PackageStatus } from "../queue/states.ts";

export type StepOutcome =
  /** Success: move to the stage's `done` status (or `to`, through `via`). */
  | {
      kind: "advance";
      patch?: Record<string, unknown>;
      to?: PackageStatus;
      via?: PackageStatus;
      reason?: string;
      details?: unknown;
      reasonCode?: string;
      reasonMessage?: string;
      actor?: string;
    }
  /** A policy decision: the package is rejected with a stable code and a message a person can act on. */
  | { kind: "reject"; code: PipelineCode; message: string; patch?: Record<string, unknown>; details?: unknown }
  /** Not now (e.g. upstream circuit open): back to the queue after `delaySeconds`, no attempt charged. */
  | { kind: "defer"; code: PipelineCode; message: string; delaySeconds: number };

export interface StepContext {
  log: Logger;
  /** Aborted when the lease is lost or the worker is shutting down hard. */
  signal: AbortSignal;
}

export type Step<C extends StepContext = StepContext> = (row: ClaimedRow, ctx: C) => Promise<StepOutcome>;

/** An error a step throws. `permanent` errors fail the row at once; others are retried with backoff. */
export class StepError extends Error {
  constructor(
    readonly code: PipelineCode,
    message: string,
    readonly permanent = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StepError";
  }
}

/**
 * Thrown when a step cannot run now through no fault of the package (e.g. the upstream circuit is open): the
 * engine turns it into a `defer` outcome (back to the queue after `delaySeconds`, no attempt charged).
 */
export class DeferStepError extends StepError {
  constructor(
    code: PipelineCode,
    message: string,
    readonly delaySeconds: number,
  ) {
    super(code, message, false);
    this.name = "DeferStepError";
  }
}

export function permanent(code: PipelineCode, message: string): StepError {
  return new StepError(code, message, true);
}

export function transient(code: PipelineCode, message: string, cause?: unknown): StepError {
  return new StepError(code, message, false, { cause });
}
