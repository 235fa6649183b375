/**
 * Reads OSV documents from disk for the offline import: one `.json` file, a directory searched
 * recursively for `*.json`, or a `.zip` such as OSV's per-ecosystem `all.zip` (one JSON document
 * per entry), streamed entry by entry with yauzl so the archive is never held in memory.
 *
 * A file that cannot be read or parsed does not end the import: it is yielded as an error record
 * (`{ source, error }`) and the caller collects it. Only a problem with `path` itself (missing,
 * unreadable, not a zip archive after all) throws.
 */
import { open as openFile, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { crc32, inflateRawSync } from "node:zlib";
import yauzl, { type Entry, type ZipFile } from "yauzl";

/** One document read (`doc`, not yet validated) or one file that could not be read (`error`). */
export type OsvSourceRecord =
  | { source: string; doc: unknown; error?: undefined }
  | { source: string; doc?: undefined; error: string };

export interface ReadOsvOptions {
  /** Larger documents (or zip entries) are reported as errors and not read. Default 32 MiB. */
  maxDocumentBytes?: number;
}

const DEFAULT_MAX_DOCUMENT_BYTES = 32 * 1024 * 1024;

export async function* readOsvDocuments(path: string, options: ReadOsvOptions = {}): AsyncGenerator<OsvSourceRecord> {
  const max = options.maxDocumentBytes ?? DEFAULT_MAX_DOCUMENT_BYTES;
  const info = await stat(path); // missing path: throws ENOENT with the path in the message
  if (info.isDirectory()) {
    yield* readDirectory(path, max);
  } else if (await isZip(path)) {
    yield* readZip(path, max);
  } else {
    yield* readJsonFile(path, info.size, max);
  }
}

async function isZip(path: string): Promise<boolean> {
  if (path.toLowerCase().endsWith(".zip")) return true;
  const handle = await openFile(path, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    // local file header, or the end-of-central-directory record of an empty archive
    return bytesRead === 4 && head.readUInt16LE(0) === 0x4b50 && (head.readUInt16LE(2) === 0x0403 || head.readUInt16LE(2) === 0x0605);
  } finally {
    await handle.close();
  }
}

async function* readDirectory(dir: string, max: number): AsyncGenerator<OsvSourceRecord> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    yield { source: dir, error: `cannot read directory: ${message(err)}` };
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* readDirectory(path, max);
    } else if (entry.name.toLowerCase().endsWith(".json") && (entry.isFile() || entry.isSymbolicLink())) {
      // Symlinks are followed to files only (a linked directory could loop).
      let size: number;
      try {
        const info = await stat(path);
        if (!info.isFile()) continue;
        size = info.size;
      } catch (err) {
        yield { source: path, error: `cannot read: ${message(err)}` };
        continue;
      }
      yield* readJsonFile(path, size, max);
    }
  }
}

async function* readJsonFile(path: string, size: number, max: number): AsyncGenerator<OsvSourceRecord> {
  if (size > max) {
    yield { source: path, error: `larger than ${max} bytes; not read` };
    return;
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    yield { source: path, error: `cannot read: ${message(err)}` };
    return;
  }
  yield* parseDocuments(path, bytes);
}

async function* readZip(path: string, max: number): AsyncGenerator<OsvSourceRecord> {
  const zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: true, validateEntrySizes: true });
  try {
    for await (const entry of zip.eachEntry()) {
      const name = entry.fileName;
      if (name.endsWith("/") || !name.toLowerCase().endsWith(".json")) continue;
      const source = `${path}:${name}`;
      if (entry.uncompressedSize > max) {
        yield { source, error: `larger than ${max} bytes; not read` };
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await readEntry(zip, entry, max);
      } catch (err) {
        yield { source, error: `cannot read zip entry: ${message(err)}` };
        continue;
      }
      yield* parseDocuments(source, bytes);
    }
  } finally {
    if (zip.isOpen) zip.close();
  }
}

/**
 * The entry's bytes. The (small) entry is read raw and inflated in one call, which is much faster
 * than a zlib stream per entry; so size and CRC-32 are checked here.
 */
async function readEntry(zip: ZipFile, entry: Entry, max: number): Promise<Buffer> {
  if (entry.isEncrypted()) throw new Error("encrypted entries are not supported");
  if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
    throw new Error(`unsupported compression method ${entry.compressionMethod}`);
  }
  const raw = await readAll(await zip.openReadStreamPromise(entry, { decodeFileData: false }), max);
  const data = entry.compressionMethod === 8 ? inflateRawSync(raw, { maxOutputLength: max }) : raw;
  if (data.length !== entry.uncompressedSize) throw new Error("size differs from the zip directory");
  if (crc32(data) >>> 0 !== entry.crc32 >>> 0) throw new Error("CRC-32 mismatch");
  return data;
}

async function readAll(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > max) throw new Error(`larger than ${max} bytes`);
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}

/** A file holds one document, or (as some exports do) a JSON array of documents. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

function* parseDocuments(source: string, bytes: Buffer): Generator<OsvSourceRecord> {
  let value: unknown;
  try {
    let text = utf8.decode(bytes);
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    value = JSON.parse(text);
  } catch (err) {
    yield { source, error: `invalid JSON: ${message(err)}` };
    return;
  }
  if (Array.isArray(value)) {
    for (const [i, doc] of value.entries()) yield { source: `${source}[${i}]`, doc };
  } else {
    yield { source, doc: value };
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
