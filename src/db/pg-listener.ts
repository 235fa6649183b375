/**
 * LISTEN on one PostgreSQL channel over one dedicated, long-lived connection (never a pooled one).
 * Workers listen for work (`spm_work`); the API's registry cache listens for approvals (`spm_registry`).
 *
 * Reconnects with backoff when the connection drops (e.g. a PostgreSQL restart). Notifications sent
 * while it was down are lost, so `onConnect` tells the owner whether this is a REconnect (a cache
 * must then drop everything it holds) and `onDisconnect` tells it that invalidations can no longer
 * be received (a cache must stop serving from memory until the connection is back).
 */
import pg from "pg";

/** The few logger methods used (pino and Fastify's logger both fit). */
export interface ListenerLog {
  warn(obj: unknown, msg?: string): void;
  info(msg: string): void;
}

export interface PgListenerOptions {
  url: string;
  /** A plain identifier (letters, digits, underscore). */
  channel: string;
  /** Called with each notification's payload ("" when none was given). */
  onNotify: (payload: string) => void;
  /** Called once LISTEN is in place; `reconnected` is false only for the first connection. */
  onConnect?: (reconnected: boolean) => void;
  /** Called when an established LISTEN connection is lost. */
  onDisconnect?: () => void;
  log: ListenerLog;
  /** Backoff cap in ms (default 10 s). */
  maxDelayMs?: number;
  /** Give up one connection attempt after this long (default 5 s); `start()` never waits longer. */
  connectTimeoutMs?: number;
}

export class PgListener {
  private client: pg.Client | null = null;
  private closed = false;
  private failures = 0;
  private everConnected = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: PgListenerOptions) {
    if (!/^[a-z_][a-z0-9_]*$/i.test(opts.channel)) throw new Error(`invalid channel name ${opts.channel}`);
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /** Connects (or schedules retries); resolves after the first attempt either way. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.opts.url, keepAlive: true, connectionTimeoutMillis: this.opts.connectTimeoutMs ?? 5_000 });
    client.on("notification", (msg) => {
      if (msg.channel === this.opts.channel) this.opts.onNotify(msg.payload ?? "");
    });
    client.on("error", (err) => {
      this.opts.log.warn({ err, channel: this.opts.channel }, "LISTEN connection error");
      this.drop(client);
    });
    client.on("end", () => this.drop(client));
    try {
      await client.connect();
      await client.query(`LISTEN "${this.opts.channel}"`);
      if (this.closed) {
        client.removeAllListeners("end");
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      if (this.failures > 0) this.opts.log.info(`LISTEN ${this.opts.channel}: connection restored`);
      this.failures = 0;
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.opts.onConnect?.(reconnected);
    } catch (err) {
      this.opts.log.warn({ err, channel: this.opts.channel }, "LISTEN connect failed");
      this.drop(client);
    }
  }

  private drop(client: pg.Client): void {
    const wasCurrent = this.client === client;
    if (wasCurrent) this.client = null;
    client.removeAllListeners("end");
    client.end().catch(() => undefined);
    if (wasCurrent) this.opts.onDisconnect?.();
    if (this.closed || this.timer) return;
    this.failures += 1;
    const delay = Math.min(this.opts.maxDelayMs ?? 10_000, 100 * 2 ** Math.min(this.failures, 7));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners("end");
      await c.end().catch(() => undefined);
    }
  }
}
