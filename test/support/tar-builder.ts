/**
 * A tiny tar writer for tests. Unlike `tar.create`, it writes entries exactly as given, so tests
 * can build hostile archives: `../` paths, absolute paths, links, device files, FIFOs.
 *
 * Paths or link targets longer than the ustar fields are written with a pax extended header
 * (`path=` / `linkpath=`), as npm and node-tar do.
 */
import { gzipSync } from "node:zlib";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "chardev" | "blockdev" | "fifo";

export interface TarEntry {
  /** Written verbatim (no normalisation): `package/index.js`, `../evil`, `/etc/passwd`, `C:\\x`. */
  path: string;
  /** Default "file" (or "dir" when the path ends with "/"). */
  type?: TarEntryType;
  /** File body; ignored for non-file entries. */
  body?: string | Buffer;
  /** Target of a symlink or hardlink. */
  linkpath?: string;
  /** Permission bits; default 0o644 for files, 0o755 for directories. */
  mode?: number;
  /** Seconds since the epoch; default a fixed date so archives are reproducible. */
  mtime?: number;
}

export interface BuildOptions {
  /** gzip the archive (default true). */
  gzip?: boolean;
}

const BLOCK = 512;
const DEFAULT_MTIME = 499162500; // 1985-10-26, what npm uses

const typeFlags: Record<TarEntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  chardev: "3",
  blockdev: "4",
  dir: "5",
  fifo: "6",
};

function writeString(buf: Buffer, value: string, offset: number, length: number): void {
  const bytes = Buffer.from(value, "utf8");
  bytes.copy(buf, offset, 0, Math.min(bytes.length, length));
}

function writeOctal(buf: Buffer, value: number, offset: number, length: number): void {
  // length-1 octal digits followed by NUL
  const digits = value.toString(8).padStart(length - 1, "0");
  if (digits.length > length - 1) throw new Error(`tar-builder: value ${value} does not fit a ${length}-byte field`);
  writeString(buf, digits, offset, length - 1);
  buf[offset + length - 1] = 0;
}

function header(fields: {
  name: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  writeString(h, fields.name, 0, 100);
  writeOctal(h, fields.mode, 100, 8);
  writeOctal(h, 0, 108, 8); // uid
  writeOctal(h, 0, 116, 8); // gid
  writeOctal(h, fields.size, 124, 12);
  writeOctal(h, fields.mtime, 136, 12);
  h.fill(0x20, 148, 156); // checksum placeholder: spaces
  writeString(h, fields.typeflag, 156, 1);
  writeString(h, fields.linkname, 157, 100);
  writeString(h, "ustar\0", 257, 6);
  writeString(h, "00", 263, 2);
  writeOctal(h, 0, 329, 8); // devmajor
  writeOctal(h, 0, 337, 8); // devminor
  let sum = 0;
  for (const byte of h) sum += byte;
  writeString(h, sum.toString(8).padStart(6, "0"), 148, 6);
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

function pad(body: Buffer): Buffer {
  const rest = body.length % BLOCK;
  return rest === 0 ? body : Buffer.concat([body, Buffer.alloc(BLOCK - rest, 0)]);
}

function paxRecord(key: string, value: string): string {
  // "<len> <key>=<value>\n" where <len> counts itself
  const tail = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(tail) + 1;
  while (String(len).length + Buffer.byteLength(tail) !== len) len = String(len).length + Buffer.byteLength(tail);
  return `${len}${tail}`;
}

function entryBlocks(entry: TarEntry): Buffer[] {
  const type: TarEntryType = entry.type ?? (entry.path.endsWith("/") ? "dir" : "file");
  const body = type === "file" ? (typeof entry.body === "string" ? Buffer.from(entry.body, "utf8") : (entry.body ?? Buffer.alloc(0))) : Buffer.alloc(0);
  const linkpath = entry.linkpath ?? "";
  if ((type === "symlink" || type === "hardlink") && linkpath === "") {
    throw new Error(`tar-builder: ${type} entry ${entry.path} needs a linkpath`);
  }
  const mode = entry.mode ?? (type === "dir" ? 0o755 : 0o644);
  const mtime = entry.mtime ?? DEFAULT_MTIME;
  const out: Buffer[] = [];

  const pax: string[] = [];
  if (Buffer.byteLength(entry.path) > 100) pax.push(paxRecord("path", entry.path));
  if (Buffer.byteLength(linkpath) > 100) pax.push(paxRecord("linkpath", linkpath));
  if (pax.length > 0) {
    const paxBody = Buffer.from(pax.join(""), "utf8");
    out.push(header({ name: "PaxHeader", mode: 0o644, size: paxBody.length, mtime, typeflag: "x", linkname: "" }), pad(paxBody));
  }

  out.push(header({ name: entry.path, mode, size: body.length, mtime, typeflag: typeFlags[type], linkname: linkpath }));
  if (body.length > 0) out.push(pad(body));
  return out;
}

/** The raw (uncompressed) tar bytes for `entries`, with the two zero end-of-archive blocks. */
export function buildTar(entries: TarEntry[]): Buffer {
  const blocks = entries.flatMap(entryBlocks);
  blocks.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(blocks);
}

/** A tarball (gzipped unless `{ gzip: false }`) holding `entries` exactly as given. */
export function buildTarball(entries: TarEntry[], options: BuildOptions = {}): Buffer {
  const tar = buildTar(entries);
  return options.gzip === false ? tar : gzipSync(tar);
}

export interface PackageTarballOptions {
  /** Top-level folder; npm uses "package" (default). */
  root?: string;
  /** Extra raw entries appended after the package files (paths used verbatim). */
  extraEntries?: TarEntry[];
}

/**
 * An npm-style gzipped tarball: `package/package.json` (from `manifest`, pretty-printed) plus
 * `files` (keys relative to the package root, e.g. `"index.js"`, `"lib/a.js"`).
 * Pass `manifest: null` to leave package.json out.
 */
export function packageTarball(
  manifest: Record<string, unknown> | null,
  files: Record<string, string | Buffer> = {},
  options: PackageTarballOptions = {},
): Buffer {
  const root = options.root ?? "package";
  const entries: TarEntry[] = [];
  if (manifest !== null) entries.push({ path: `${root}/package.json`, body: JSON.stringify(manifest, null, 2) + "\n" });
  for (const [rel, body] of Object.entries(files)) {
    entries.push({ path: `${root}/${rel}`, body, mode: rel.startsWith("bin/") ? 0o755 : 0o644 });
  }
  entries.push(...(options.extraEntries ?? []));
  return buildTarball(entries);
}
