/**
 * Batches step outcomes into one guarded UPDATE per flush ("natural batching": while a flush is in
 * flight, new outcomes collect; the next flush takes them all). A flush starts on the next turn of the
 * event loop, so the steps of one claimed batch that finish together go in one statement. Adds no
 * latency to speak of when idle and turns N commits into one under load. A database error keeps the
 * batch and retries it with backoff.
 */
import type { Logger } from "../logger.ts";
import { complete, type Completion, type Sql } from "./sql.ts";

interface Pending {
  completion: Completion;
  /** Called once: true when applied, false when the lease had been lost (or the write given up). */
  settle: (applied: boolean) => void;
}

export class Completer {
  private buffer: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private scheduled = false;
  private closed = false;
  private deadline = Infinity;

  constructor(
    private readonly sql: Sql,
    private readonly worker: string,
    private readonly log: Logger,
    private readonly onFlushed: (applied: Completion[], lost: Completion[]) => void,
    private readonly maxBatch = 1000,
  ) {}

  /**
   * Queue an outcome; `settle` is called with true when it was applied, false when the lease had been
   * lost. A callback, not a promise: this runs once per row, and the caller only needs to be told.
   */
  push(completion: Completion, settle: (applied: boolean) => void): void {
    this.buffer.push({ completion, settle });
    this.schedule();
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** Flush what is buffered; give up retrying database errors after `deadline` (epoch ms). */
  async close(deadline: number): Promise<void> {
    this.closed = true;
    this.deadline = deadline;
    if (this.buffer.length > 0) this.flushing ??= this.drain();
    while (this.flushing) await this.flushing;
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.buffer.length > 0) this.flushing ??= this.drain();
    });
  }

  private settle(batch: Pending[], applied: Set<number>): void {
    const ok: Completion[] = [];
    const lost: Completion[] = [];
    for (const p of batch) {
      const hit = applied.has(p.completion.id);
      (hit ? ok : lost).push(p.completion);
      settleSafely(p, hit, this.log);
    }
    this.onFlushed(ok, lost);
  }

  private async drain(): Promise<void> {
    let failures = 0;
    try {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.maxBatch);
        try {
          const applied = await complete(this.sql, this.worker, batch.map((p) => p.completion));
          failures = 0;
          this.settle(batch, applied);
        } catch (err) {
          this.buffer.unshift(...batch);
          failures += 1;
          if (this.closed && Date.now() > this.deadline) {
            this.log.error({ err, pending: this.buffer.length }, "giving up on unflushed completions; their leases will expire and be taken over");
            for (const p of this.buffer.splice(0)) settleSafely(p, false, this.log);
            return;
          }
          const delay = Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
          this.log.warn({ err, batch: batch.length, retryInMs: delay }, "completion flush failed; retrying");
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    } finally {
      this.flushing = null;
    }
  }
}

function settleSafely(p: Pending, applied: boolean, log: Logger): void {
  try {
    p.settle(applied);
  } catch (err) {
    log.error({ err, packageId: p.completion.id }, "completion callback failed");
  }
}
