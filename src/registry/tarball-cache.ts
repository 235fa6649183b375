/**
 * The registry's in-memory tarball bytes: a byte-bounded LRU keyed by the content store key (the
 * SHA-512 of the bytes). The store is content-addressed, so an entry can never go stale: whether a
 * version may be served is decided before its bytes are looked up, and a revoked version's bytes
 * simply stop being asked for (and age out).
 *
 * Bytes enter the cache only after they were checked against the integrity the version row records
 * (the `dist.integrity` npm checks): a corrupted store file is refused, never cached. Tarballs larger
 * than `maxEntryBytes` (default an eighth of the cache) are not cached; the registry streams them
 * through `verifyingStream`, which holds back the last chunk until the whole file has hashed right.
 */
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { LRUCache } from "lru-cache";
import ssri from "ssri";
import { ContentStore } from "../store/content-store.ts";

/** The stored bytes do not match the version's recorded integrity (or the record contradicts itself). */
export class TarballIntegrityError extends Error {
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`stored tarball ${key.slice(0, 16)}… failed its integrity check: ${detail}`);
    this.name = "TarballIntegrityError";
  }
}

export interface TarballCacheOptions {
  /** Total bytes kept; 0 disables the cache. */
  maxBytes: number;
  /** Largest tarball kept (default maxBytes / 8). */
  maxEntryBytes?: number;
}

/** Throws TarballIntegrityError unless `bytes` have the SHA-512 `key` and match `integrity`. */
export function verifyTarball(key: string, integrity: string, bytes: Buffer): void {
  if (ContentStore.keyOf(integrity) !== key) throw new TarballIntegrityError(key, "the recorded integrity does not name this store key");
  if (!ssri.checkData(bytes, integrity)) {
    const found = ssri.fromData(bytes, { algorithms: ["sha512"] }).toString();
    throw new TarballIntegrityError(key, `expected ${integrity}, the ${bytes.length} stored bytes are ${found}`);
  }
}

export class TarballCache {
  /** lru-cache, bounded by total bytes; null when the cache is off (maxBytes 0). */
  private readonly entries: LRUCache<string, Buffer> | null;
  private readonly flights = new Map<string, Promise<Buffer>>();
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(options: TarballCacheOptions) {
    this.maxBytes = Math.max(0, Math.floor(options.maxBytes));
    this.maxEntryBytes = Math.min(this.maxBytes, Math.floor(options.maxEntryBytes ?? this.maxBytes / 8));
    this.entries =
      this.maxBytes > 0
        ? new LRUCache<string, Buffer>({
            maxSize: this.maxBytes,
            maxEntrySize: Math.max(1, this.maxEntryBytes),
            sizeCalculation: (bytes) => Math.max(1, bytes.length),
            dispose: (_bytes, _key, reason) => {
              if (reason === "evict") this.evictions++;
            },
          })
        : null;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.entries?.calculatedSize ?? 0;
  }

  /** Number of tarballs held. */
  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** Whether a tarball of `size` bytes would be kept. */
  fits(size: number): boolean {
    return size > 0 && size <= this.maxEntryBytes;
  }

  has(key: string): boolean {
    return this.entries?.has(key) ?? false;
  }

  /** The cached bytes of `key` (marked most recently used), or undefined. */
  get(key: string): Buffer | undefined {
    const bytes = this.entries?.get(key);
    if (bytes === undefined) this.misses++;
    else this.hits++;
    return bytes;
  }

  /**
   * Read `key` with `read`, verify it against `integrity` (TarballIntegrityError when it does not
   * match: nothing is kept) and keep it when it fits. Concurrent loads of one key share one read.
   */
  async load(key: string, integrity: string, read: () => Promise<Buffer>): Promise<Buffer> {
    const cached = this.entries?.get(key);
    if (cached) return cached;
    const running = this.flights.get(key);
    if (running) return running;
    const flight = (async () => {
      const bytes = await read();
      verifyTarball(key, integrity, bytes);
      if (this.fits(bytes.length) && !this.entries?.has(key)) this.entries?.set(key, bytes);
      return bytes;
    })();
    this.flights.set(key, flight);
    try {
      return await flight;
    } finally {
      this.flights.delete(key);
    }
  }

  clear(): void {
    this.entries?.clear();
  }
}

/**
 * A pass-through that hashes what flows through it and holds back the last chunk until the end:
 * when the SHA-512 is not `key`, it fails instead of sending that chunk, so a corrupted file is never
 * delivered whole (the client sees a short body). `onMismatch` is told first.
 */
export function verifyingStream(key: string, onMismatch: (err: TarballIntegrityError) => void): Transform {
  const hash = createHash("sha512");
  let held: Buffer | null = null;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      const out = held;
      held = chunk;
      cb(null, out ?? undefined);
    },
    flush(cb: TransformCallback) {
      const hex = hash.digest("hex");
      if (hex !== key) {
        const err = new TarballIntegrityError(key, `the stored bytes hash to sha512 ${hex.slice(0, 16)}…`);
        onMismatch(err);
        cb(err);
        return;
      }
      cb(null, held ?? undefined);
    },
  });
}
