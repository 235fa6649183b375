/**
 * A cache for the served registry, invalidated by package name (NOTIFY on `spm_registry`) and dropped
 * as a whole when invalidations may have been missed (LISTEN reconnect). Entries are keyed by a
 * string and belong to a group, the package name: a packument is keyed by its name (the group is the
 * key), a version lookup by `name@version` within the group `name`. Invalidating a name forgets every
 * entry of its group.
 *
 * - Loads are single-flight: concurrent misses for one key share one database read.
 * - A load that was in flight when its group was invalidated is not stored (it may have read the
 *   state from before the change); its callers still get its value, since they asked before.
 * - Each entry expires after its own TTL (a safety net for a missed notification).
 * - While `enabled` is false (no LISTEN connection) nothing is stored: every call loads.
 * - At most `maxEntries` keys are kept (least recently stored evicted first).
 */

export interface CacheOptions {
  maxEntries?: number;
  now?: () => number;
}

interface Entry<V> {
  value: V;
  expiresAt: number;
  group: string;
}

interface Flight<V> {
  promise: Promise<{ value: V; ttlMs: number }>;
  stale: boolean;
  group: string;
}

export class NameCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly flights = new Map<string, Flight<V>>();
  /** group → keys with an entry or a flight in that group (only groups that differ from their key). */
  private readonly groups = new Map<string, Set<string>>();
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
   * The cached value for `key`, else the result of `load` (which says how long its value may be
   * kept; 0 or less: not at all). `group` (default: the key itself) is the name whose invalidation
   * forgets this entry.
   */
  async get(key: string, load: () => Promise<{ value: V; ttlMs: number }>, group: string = key): Promise<V> {
    const entry = this.entries.get(key);
    if (entry) {
      if (entry.expiresAt > this.now()) {
        this.hits++;
        return entry.value;
      }
      this.entries.delete(key);
      this.untrack(key, entry.group);
    }
    this.misses++;
    const running = this.flights.get(key);
    if (running) return (await running.promise).value;
    const flight: Flight<V> = { promise: load(), stale: false, group };
    this.flights.set(key, flight);
    this.track(key, group);
    try {
      const { value, ttlMs } = await flight.promise;
      if (!flight.stale && this.enabled && ttlMs > 0) this.store(key, group, value, ttlMs);
      return value;
    } finally {
      if (this.flights.get(key) === flight) {
        this.flights.delete(key);
        this.untrack(key, group);
      }
    }
  }

  private track(key: string, group: string): void {
    if (key === group) return;
    let keys = this.groups.get(group);
    if (!keys) this.groups.set(group, (keys = new Set()));
    keys.add(key);
  }

  /** Drop `key` from its group's index once it has neither an entry nor a flight. */
  private untrack(key: string, group: string): void {
    if (key === group || this.entries.has(key) || this.flights.has(key)) return;
    const keys = this.groups.get(group);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.groups.delete(group);
  }

  private store(key: string, group: string, value: V, ttlMs: number): void {
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs, group });
    this.track(key, group);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      const [oldKey, old] = oldest.value;
      this.entries.delete(oldKey);
      this.untrack(oldKey, old.group);
    }
  }

  private forget(key: string): void {
    this.entries.delete(key);
    const flight = this.flights.get(key);
    if (flight) {
      flight.stale = true;
      this.flights.delete(key);
    }
  }

  /** Forget `name` and every entry of its group (and make loads in flight for them not be stored). */
  invalidate(name: string): void {
    this.forget(name);
    const keys = this.groups.get(name);
    if (!keys) return;
    this.groups.delete(name);
    for (const key of keys) this.forget(key);
  }

  /** Forget everything (and make every load in flight not be stored). */
  clear(): void {
    this.entries.clear();
    for (const flight of this.flights.values()) flight.stale = true;
    this.flights.clear();
    this.groups.clear();
  }
}
