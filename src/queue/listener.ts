/**
 * LISTEN for work notifications on one dedicated, long-lived connection (never a pooled one).
 * Reconnects with backoff when the connection drops (e.g. a PostgreSQL restart); each reconnect
 * also wakes the worker, since notifications sent meanwhile were lost.
 */
import pg from "pg";
import type { Logger } from "../logger.ts";
import { WORK_CHANNEL } from "./sql.ts";

export class WorkListener {
  private client: pg.Client | null = null;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly onWake: () => void,
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.client !== null;
  }

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, keepAlive: true });
    client.on("notification", () => this.onWake());
    client.on("error", (err) => {
      this.log.warn({ err }, "LISTEN connection error");
      this.drop(client);
    });
    client.on("end", () => this.drop(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${WORK_CHANNEL}`);
      this.client = client;
      if (this.failures > 0) this.log.info("LISTEN connection restored");
      this.failures = 0;
      this.onWake();
    } catch (err) {
      this.log.warn({ err }, "LISTEN connect failed");
      this.drop(client);
    }
  }

  private drop(client: pg.Client): void {
    if (this.client === client) this.client = null;
    client.removeAllListeners("end");
    client.end().catch(() => undefined);
    if (this.closed || this.timer) return;
    this.failures += 1;
    const delay = Math.min(10_000, 100 * 2 ** Math.min(this.failures, 7));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners("end");
      await c.end().catch(() => undefined);
    }
  }
}
