/**
 * A per-name cache for the served registry's packuments, invalidated by name (NOTIFY on
 * `spm_registry`) and dropped as a whole when invalidations may have been missed (LISTEN reconnect).
 *
 * - Loads are single-flight: concurrent misses for one name share one database read.
 * - A load that was in flight when its name was invalidated is not stored (it may have read the
 *   state from before the change); its callers still get its value, since they asked before.
 * - Each entry expires after its own TTL (a safety net for a missed notification).
 * - While `enabled` is false (no LISTEN connection) nothing is stored: every call loads.
 * - At most `maxEntries` names are kept (least recently stored evicted first).
 */

export interface CacheOptions {
  maxEntries?: number;
  now?: () => number;
}

interface Entry<V> {
  value: V;
  expiresAt: number;
}

interface Flight<V> {
  promise: Promise<{ value: V; ttlMs: number }>;
  stale: boolean;
}

export class NameCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly flights = new Map<string, Flight<V>>();
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Whether values may be stored (false while invalidations cannot be received). */
  enabled = true;
  hits = 0;
  misses = 0;

  constructor(options: CacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The cached value for `name`, else the result of `load` (which says how long its value may be
   * kept; 0 or less: not at all).
   */
  async get(name: string, load: () => Promise<{ value: V; ttlMs: number }>): Promise<V> {
    const entry = this.entries.get(name);
    if (entry) {
      if (entry.expiresAt > this.now()) {
        this.hits++;
        return entry.value;
      }
      this.entries.delete(name);
    }
    this.misses++;
    const running = this.flights.get(name);
    if (running) return (await running.promise).value;
    const flight: Flight<V> = { promise: load(), stale: false };
    this.flights.set(name, flight);
    try {
      const { value, ttlMs } = await flight.promise;
      if (!flight.stale && this.enabled && ttlMs > 0) this.store(name, value, ttlMs);
      return value;
    } finally {
      if (this.flights.get(name) === flight) this.flights.delete(name);
    }
  }

  private store(name: string, value: V, ttlMs: number): void {
    this.entries.delete(name);
    this.entries.set(name, { value, expiresAt: this.now() + ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }

  /** Forget `name` (and make a load in flight for it not be stored). */
  invalidate(name: string): void {
    this.entries.delete(name);
    const flight = this.flights.get(name);
    if (flight) {
      flight.stale = true;
      this.flights.delete(name);
    }
  }

  /** Forget everything (and make every load in flight not be stored). */
  clear(): void {
    this.entries.clear();
    for (const flight of this.flights.values()) flight.stale = true;
    this.flights.clear();
  }
}
