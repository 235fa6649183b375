/**
 * The content store's write path (src/store/content-store.ts): a failed or refused write leaves nothing
 * in the store's temporary folder, however early the source fails.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { ContentStore } from "../src/store/content-store.ts";

const dir = mkdtempSync(join(tmpdir(), "spm-store-test-"));
const store = new ContentStore(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const leftovers = () => readdirSync(join(dir, "tmp"));

describe("ContentStore.write", () => {
  it("leaves no temporary file when the source fails before the file is even open (a reset at once)", async () => {
    for (let i = 0; i < 50; i++) {
      const failing = new Readable({
        read() {
          this.destroy(new Error("connection reset"));
        },
      });
      await expect(store.write(failing, 1024)).rejects.toThrow("connection reset");
      expect(leftovers()).toEqual([]);
    }
  });

  it("leaves no temporary file when the source is over the limit at its first chunk", async () => {
    for (let i = 0; i < 50; i++) {
      await expect(store.write(Readable.from([Buffer.alloc(2048)]), 1024)).rejects.toThrow();
      expect(leftovers()).toEqual([]);
    }
  });

  it("keeps an accepted write and discards a refused one", async () => {
    const { blob, stored } = await store.write(Readable.from([Buffer.from("hello")]), 1024);
    expect(stored).toBe(true);
    expect(blob.size).toBe(5);
    const refused = await store.write(Readable.from([Buffer.from("other")]), 1024, () => false);
    expect(refused.stored).toBe(false);
    expect(leftovers()).toEqual([]);
    expect(await store.size(refused.blob.key)).toBeNull();
    expect(await store.size(blob.key)).toBe(5);
  });
});
