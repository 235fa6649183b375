/**
 * Batches step outcomes into one guarded UPDATE per flush ("natural batching": while a flush is in
 * flight, new outcomes collect; the next flush takes them all). Adds no latency when idle and turns
 * N commits into one under load. A database error keeps the batch and retries it with backoff.
 */
import type { Logger } from "../logger.ts";
import { complete, type Completion, type Sql } from "./sql.ts";

interface Pending {
  completion: Completion;
  resolve: (applied: boolean) => void;
}

export class Completer {
  private buffer: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly sql: Sql,
    private readonly worker: string,
    private readonly log: Logger,
    private readonly onFlushed: (applied: Completion[], lost: Completion[]) => void,
    private readonly maxBatch = 1000,
  ) {}

  /** Queue an outcome; resolves true when applied, false when the lease had been lost. */
  push(completion: Completion): Promise<boolean> {
    return new Promise((resolve) => {
      this.buffer.push({ completion, resolve });
      this.flushing ??= this.drain();
    });
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** Flush what is buffered; give up retrying database errors after `deadline` (epoch ms). */
  async close(deadline: number): Promise<void> {
    this.closed = true;
    this.deadline = deadline;
    while (this.flushing) await this.flushing;
  }

  private deadline = Infinity;

  private async drain(): Promise<void> {
    let failures = 0;
    try {
      while (this.buffer.length > 0) {
        const batch = this.buffer.slice(0, this.maxBatch);
        try {
          const applied = await complete(this.sql, this.worker, batch.map((p) => p.completion));
          failures = 0;
          this.buffer.splice(0, batch.length);
          const ok: Completion[] = [];
          const lost: Completion[] = [];
          for (const p of batch) {
            const hit = applied.has(p.completion.id);
            (hit ? ok : lost).push(p.completion);
            p.resolve(hit);
          }
          this.onFlushed(ok, lost);
        } catch (err) {
          failures += 1;
          if (this.closed && Date.now() > this.deadline) {
            this.log.error({ err, pending: this.buffer.length }, "giving up on unflushed completions; the rescuer will requeue them");
            for (const p of this.buffer.splice(0)) p.resolve(false);
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
