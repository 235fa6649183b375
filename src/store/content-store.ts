/**
 * Content-addressed tarball store: `<dir>/sha512/<aa>/<bb>/<hex>`, keyed by the SHA-512 of the bytes.
 * Writes stream to a temporary file while hashing and land with an atomic rename, so a reader never
 * sees a partial file and two writers of the same content cannot corrupt it.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createReadStream, createWriteStream, mkdirSync } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import ssri from "ssri";
import { hashOf, hexOf } from "./sri.ts";

export interface StoredBlob {
  key: string;
  size: number;
  /** `sha512-…` of the bytes. */
  integrity: string;
  /** hex sha1, for npm's `dist.shasum`. */
  sha1: string;
}

export class TooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`larger than ${limit} bytes`);
  }
}

export class ContentStore {
  /** Opening a store writes nothing (the API mounts it read-only); `write` creates what it needs. */
  constructor(readonly dir: string) {}

  /** The store key of an SRI string's sha512 hash (hex), or null when it has none. */
  static keyOf(integrity: string): string | null {
    return hexOf(integrity, "sha512");
  }

  path(key: string): string {
    if (!/^[0-9a-f]{128}$/.test(key)) throw new Error(`bad store key ${key}`);
    return join(this.dir, "sha512", key.slice(0, 2), key.slice(2, 4), key);
  }

  async size(key: string): Promise<number | null> {
    try {
      return (await stat(this.path(key))).size;
    } catch {
      return null;
    }
  }

  /**
   * Re-hash a stored blob (streaming): its digests, or null when it is missing or its bytes no longer
   * match its key (a corrupted store entry is removed so it gets downloaded again).
   */
  async rehash(key: string): Promise<StoredBlob | null> {
    const path = this.path(key);
    let computed: ssri.Integrity;
    let size = 0;
    try {
      const stream = createReadStream(path);
      stream.on("data", (chunk) => (size += chunk.length));
      computed = await ssri.fromStream(stream, { algorithms: ["sha512", "sha1"] });
    } catch {
      return null;
    }
    const sha512 = hashOf(computed, "sha512");
    const sha1 = hashOf(computed, "sha1");
    if (!sha512 || !sha1 || Buffer.from(sha512.digest, "base64").toString("hex") !== key) {
      await rm(path, { force: true });
      return null;
    }
    return { key, size, integrity: sha512.toString(), sha1: Buffer.from(sha1.digest, "base64").toString("hex") };
  }

  read(key: string): Readable {
    return createReadStream(this.path(key));
  }

  /**
   * Stream `source` into the store, hashing as it goes and refusing more than `maxBytes`.
   * `accept` sees the computed digests before the file lands; returning false discards it.
   */
  async write(
    source: Readable,
    maxBytes: number,
    accept: (blob: Omit<StoredBlob, "key">) => boolean = () => true,
  ): Promise<{ blob: StoredBlob; stored: boolean }> {
    mkdirSync(join(this.dir, "tmp"), { recursive: true });
    const tmp = join(this.dir, "tmp", `${Date.now()}-${randomBytes(6).toString("hex")}`);
    let size = 0;
    const limiter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > maxBytes) cb(new TooLargeError(maxBytes));
        else cb(null, chunk);
      },
    });
    const hasher = ssri.integrityStream({ algorithms: ["sha512", "sha1"] });
    let computed: ssri.Integrity | undefined;
    hasher.on("integrity", (i: ssri.Integrity) => (computed = i));
    const out = createWriteStream(tmp, { mode: 0o644 });
    try {
      await pipeline(source, limiter, hasher, out);
      if (!computed) throw new Error("no digest computed");
      const sha512 = hashOf(computed, "sha512");
      const sha1 = hashOf(computed, "sha1");
      if (!sha512 || !sha1) throw new Error("digest missing");
      const key = Buffer.from(sha512.digest, "base64").toString("hex");
      const blob: StoredBlob = { key, size, integrity: sha512.toString(), sha1: Buffer.from(sha1.digest, "base64").toString("hex") };
      if (!accept(blob)) {
        await rm(tmp, { force: true });
        return { blob, stored: false };
      }
      const dest = this.path(key);
      mkdirSync(join(dest, ".."), { recursive: true });
      await rename(tmp, dest);
      return { blob, stored: true };
    } catch (err) {
      // A source that fails at once can fail the pipeline while the file is still being opened (on
      // libuv's thread pool): the destroyed stream still opens it, then closes it. Removing it before
      // that would leave it behind (seen under load), so wait for the stream to close first.
      if (!out.closed) await once(out, "close").catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
