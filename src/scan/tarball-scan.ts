/**
 * Streaming scan of an npm tarball (.tgz): walks the tar entries with node-tar's Parser, never
 * extracting anything to disk, and reports findings about paths, entry types, size, the
 * manifest, install scripts and code.
 *
 * The file is read once: fs stream → (count packed bytes, check gzip magic) → zlib gunzip →
 * (count unpacked bytes, enforce limits) → tar Parser. Entry bodies are always consumed; only the
 * manifest and the first 2 MiB of text files are held in memory, one file at a time, and
 * reduced to small profiles as soon as each file ends.
 *
 * Fail closed: anything that is not a complete, well-formed gzipped tar throws
 * TarballCorruptError instead of resolving with an empty, clean-looking result.
 */
import { createReadStream } from "node:fs";
import { posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import {
  detectNativeBinary,
  detectObfuscation,
  describeCapabilities,
  HEAD_BYTES,
  isJavaScriptPath,
  isShellScript,
  looksBinary,
  profileCode,
  type CodeProfile,
} from "./code-rules.ts";
import { clip, FindingCollector, type Finding } from "./findings.ts";
import { analyzeInstallScript, gypCommandsOf } from "./install-time.ts";
import {
  allScriptsOf,
  checkIdentity,
  installScriptFindings,
  installScriptsOf,
  joinPhrases,
  parseManifest,
} from "./manifest-rules.ts";

export type { Finding, Severity } from "./findings.ts";

export interface ScanLimits {
  /** Stop and report `decompression_bomb` once the unpacked tar stream exceeds this. */
  maxUnpackedBytes: number;
  /** Stop and report `decompression_bomb` once unpacked/packed exceeds this (checked past 1 MiB unpacked). */
  maxCompressionRatio: number;
  /** Stop and report `decompression_bomb` past this many entries (default 100,000). */
  maxEntries?: number;
}

export interface TarballScanResult {
  findings: Finding[];
  /** package/package.json parsed (null when missing or invalid). */
  manifest: Record<string, unknown> | null;
  /** Regular files in the archive. */
  files: number;
  /** Bytes of the decompressed tar stream read (headers and padding included). */
  unpackedBytes: number;
  /** Bytes of the .tgz read. */
  packedBytes: number;
  /** Lifecycle scripts npm runs on install: preinstall / install / postinstall → command (incl. implicit `node-gyp rebuild`). */
  installScripts: Record<string, string>;
  /** All entries seen (files, directories, links, others). */
  entries: number;
  /** The single top-level folder (normally "package"), or null when there is none or several. */
  rootFolder: string | null;
  /** True when a limit stopped the scan before the end of the archive (a decompression_bomb finding says which). */
  stoppedEarly: boolean;
}

/** The tarball is not a complete, well-formed gzipped tar. The caller should re-fetch or fail it. */
export class TarballCorruptError extends Error {
  readonly code = "tarball_corrupt" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TarballCorruptError";
  }
}

export const DEFAULT_MAX_ENTRIES = 100_000;
/** Text files are inspected up to this many bytes each. */
export const MAX_INSPECT_BYTES = 2 * 1024 * 1024;
/** package.json larger than this is reported as invalid. */
export const MAX_MANIFEST_BYTES = 5 * 1024 * 1024;
/** The compression-ratio limit only applies once this much has been unpacked. */
export const RATIO_MIN_UNPACKED = 1024 * 1024;

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const DIR_TYPES = new Set(["Directory", "GNUDumpDir"]);
const LINK_TYPES = new Set(["SymbolicLink", "Link"]);

const STOP = Symbol("stop-scan");

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Why a raw archive path is unsafe to extract (empty when it is fine). */
export function pathProblems(raw: string): string[] {
  const problems: string[] = [];
  if (raw.startsWith("/")) problems.push("is an absolute path");
  if (/^[A-Za-z]:/.test(raw)) problems.push("starts with a Windows drive letter");
  if (raw.includes("\\")) problems.push("contains a backslash, a folder separator on Windows");
  if (raw.split(/[\\/]/).includes("..")) problems.push("contains a '..' segment that climbs out of the package folder");
  return problems;
}

/** Whether a link target leaves the package folder (absolute, drive letter or too many `..`). */
function linkEscapes(strippedLinkDir: string, linkpath: string, hard: boolean): boolean {
  const target = linkpath.replace(/\\/g, "/");
  if (target.startsWith("/") || /^[A-Za-z]:/.test(target)) return true;
  // hardlink targets are archive paths (first folder stripped like the entry); symlinks are relative to the link
  const joined = hard ? target.split("/").slice(1).join("/") : posix.join(strippedLinkDir, target);
  const normal = posix.normalize(joined === "" ? "." : joined);
  return normal === ".." || normal.startsWith("../") || (hard && target.split("/").includes(".."));
}

interface ScanState {
  findings: FindingCollector;
  entries: number;
  files: number;
  declaredBytes: number;
  roots: Set<string>;
  rootLevelFiles: number;
  seenPaths: Map<string, number>;
  fileSet: Set<string>;
  profiles: Map<string, CodeProfile>;
  nativeBinaries: Set<string>;
  manifestBody: Buffer | null;
  manifestTooLarge: boolean;
  hasBindingGyp: boolean;
  gypCommands: string[];
  stop: string | null;
  failure: Error | null;
}

/**
 * Scans the .tgz at `path`. `expected` is what the registry says the tarball is.
 * Throws TarballCorruptError for anything but a complete gzipped tar; fs errors propagate as is.
 */
export async function scanTarball(
  path: string,
  expected: { name: string; version: string },
  limits: ScanLimits,
): Promise<TarballScanResult> {
  const maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const state: ScanState = {
    findings: new FindingCollector(),
    entries: 0,
    files: 0,
    declaredBytes: 0,
    roots: new Set(),
    rootLevelFiles: 0,
    seenPaths: new Map(),
    fileSet: new Set(),
    profiles: new Map(),
    nativeBinaries: new Set(),
    manifestBody: null,
    manifestTooLarge: false,
    hasBindingGyp: false,
    gypCommands: [],
    stop: null,
    failure: null,
  };
  const { findings } = state;

  const bomb = (message: string): void => {
    if (state.stop !== null) return;
    state.stop = message;
    findings.add("decompression_bomb", message);
  };

  const onFileBody = (entry: ReadEntry, stripped: string | null): void => {
    const isManifest = stripped === "package.json";
    const cap = isManifest ? MAX_MANIFEST_BYTES : MAX_INSPECT_BYTES;
    const chunks: Buffer[] = [];
    let kept = 0;
    entry.on("data", (chunk: Buffer) => {
      if (kept < cap) {
        const take = chunk.length <= cap - kept ? chunk : chunk.subarray(0, cap - kept);
        chunks.push(take);
        kept += take.length;
      }
    });
    entry.on("end", () => {
      if (stripped === null || state.stop !== null) return;
      try {
        inspectFile(stripped, Buffer.concat(chunks, kept), entry.size > kept);
      } catch (error) {
        state.failure ??= error instanceof Error ? error : new Error(String(error));
      }
    });
  };

  const inspectFile = (file: string, body: Buffer, partial: boolean): void => {
    if (file === "package.json") {
      state.manifestBody = partial ? null : body;
      state.manifestTooLarge = partial;
      return;
    }
    const head = body.subarray(0, HEAD_BYTES);
    const binary = detectNativeBinary(head, file);
    if (binary !== null) {
      state.nativeBinaries.add(file);
      findings.add(
        "native_binary",
        `${file} is ${binary}; native code cannot be reviewed like JavaScript. Check that it is expected and built from the published source.`,
        { file, evidence: head.subarray(0, 16).toString("hex") },
      );
    }
    if (binary !== null || looksBinary(head)) return;
    const text = body.toString("utf8");
    if (file === "binding.gyp") state.gypCommands = gypCommandsOf(text);
    if (isJavaScriptPath(file)) {
      const obf = detectObfuscation(text);
      if (obf !== null) {
        findings.add(
          "obfuscated_code",
          `${file} looks obfuscated: ${joinPhrases(obf.reasons)}. Legitimate packages rarely ship code like this; decode it before approving.`,
          { file, evidence: obf.evidence },
        );
      }
    }
    // for files over MAX_INSPECT_BYTES (partial), the profile covers the first part only
    state.profiles.set(file, profileCode(text, { shell: isShellScript(file, text) }));
  };

  const onEntry = (entry: ReadEntry): void => {
    state.entries++;
    if (state.entries > maxEntries) {
      bomb(`The tarball has more than ${maxEntries.toLocaleString("en-US")} entries; scanning stopped. Packages this large are suspicious (or need a higher maxEntries).`);
      entry.resume();
      return;
    }
    const raw = entry.path;
    const problems = pathProblems(raw);
    if (problems.length > 0) {
      findings.add("path_traversal", `Archive entry "${clip(raw, 120)}" ${joinPhrases(problems)}; extracting it could write outside the install folder.`, {
        file: raw,
        evidence: raw,
      });
    }
    const parts = raw.split("/").filter((p, i) => p !== "" || i === 0);
    // unsafe paths are already reported; keep them out of the top-folder bookkeeping
    const top = problems.length > 0 ? "" : (parts[0] ?? "");
    const stripped = parts.length >= 2 ? parts.slice(1).join("/") : null;
    const type = String(entry.type);

    if (DIR_TYPES.has(type)) {
      if (top !== "") state.roots.add(top);
      entry.resume();
      return;
    }
    if (stripped !== null && stripped !== "") {
      if (top !== "") state.roots.add(top);
      const n = (state.seenPaths.get(stripped) ?? 0) + 1;
      state.seenPaths.set(stripped, n);
      if (n === 2) {
        findings.add(
          "duplicate_entry",
          `${stripped} appears more than once in the archive; tools that read the first copy and npm (which keeps the last) would see different files.`,
          { file: stripped, severity: stripped === "package.json" ? "high" : "moderate" },
        );
      }
    } else if (problems.length === 0) {
      state.rootLevelFiles++;
    }

    if (FILE_TYPES.has(type)) {
      state.files++;
      state.declaredBytes += entry.size;
      if (state.declaredBytes > limits.maxUnpackedBytes) {
        bomb(
          `The archive declares ${mib(state.declaredBytes)} of file content, more than the ${mib(limits.maxUnpackedBytes)} limit (at "${clip(raw, 120)}"); scanning stopped. This is a decompression bomb or an oversized package.`,
        );
        entry.resume();
        return;
      }
      if (stripped !== null && stripped !== "") {
        state.fileSet.add(stripped);
        if (stripped === "binding.gyp") state.hasBindingGyp = true;
      }
      onFileBody(entry, stripped !== "" ? stripped : null);
      return;
    }
    if (LINK_TYPES.has(type)) {
      const hard = type === "Link";
      const linkpath = entry.linkpath ?? "";
      const kind = hard ? "hardlink" : "symlink";
      findings.add(
        "link_entry",
        `${clip(raw, 120)} is a ${kind} to "${clip(linkpath, 120)}"; npm packages should not contain links, which can point installs at files outside the package.`,
        { file: stripped ?? raw, evidence: `${raw} -> ${linkpath}` },
      );
      if (linkEscapes(posix.dirname(stripped ?? "."), linkpath, hard)) {
        findings.add("path_traversal", `${kind} ${clip(raw, 120)} points outside the package folder ("${clip(linkpath, 120)}").`, {
          file: stripped ?? raw,
          evidence: `${raw} -> ${linkpath}`,
        });
      }
      entry.resume();
      return;
    }
    const what: Record<string, string> = {
      CharacterDevice: "a character device",
      BlockDevice: "a block device",
      FIFO: "a FIFO (named pipe)",
    };
    findings.add(
      "special_file",
      `${clip(raw, 120)} is ${what[type] ?? `an unsupported tar entry (type ${type})`}; npm packages contain only files and folders.`,
      { file: stripped ?? raw, evidence: `${type} ${raw}` },
    );
    entry.resume();
  };

  const onIgnoredEntry = (entry: ReadEntry): void => {
    // node-tar skips unknown entry types and oversized pax headers without emitting 'entry'
    state.entries++;
    const type = String(entry.type);
    findings.add(
      "special_file",
      entry.meta
        ? `The archive has an oversized ${type} header (${entry.size} bytes) that tar ignores; other extractors may read the archive differently.`
        : `${clip(entry.path, 120)} is an unsupported tar entry (type ${type}); npm packages contain only files and folders.`,
      { file: entry.path, evidence: `${type} ${entry.path}` },
    );
  };

  // ---- the stream walk
  let packed = 0;
  let unpacked = 0;
  let magic = Buffer.alloc(0);
  const parser = new Parser({ strict: false, brotli: false, zstd: false, maxDecompressionRatio: Number.POSITIVE_INFINITY });
  let parserEnded = false;
  parser.on("warn", (code: string, message: string) => {
    state.failure ??= new TarballCorruptError(`Tarball is corrupt: ${code}: ${message}`);
  });
  parser.on("error", (error: Error) => {
    state.failure ??= new TarballCorruptError(`Tarball is corrupt: ${error.message}`, { cause: error });
  });
  parser.on("entry", (entry: ReadEntry) => {
    try {
      onEntry(entry);
    } catch (error) {
      state.failure ??= error instanceof Error ? error : new Error(String(error));
      entry.resume();
    }
  });
  parser.on("ignoredEntry", (entry: ReadEntry) => {
    try {
      onIgnoredEntry(entry);
    } catch (error) {
      state.failure ??= error instanceof Error ? error : new Error(String(error));
    }
  });
  parser.on("end", () => {
    parserEnded = true;
  });

  const checkLimits = (): void => {
    if (state.entries > maxEntries) return; // already reported
    if (unpacked > limits.maxUnpackedBytes) {
      bomb(
        `The tarball unpacks to more than ${mib(limits.maxUnpackedBytes)} (read ${mib(unpacked)} from ${mib(packed)} compressed); scanning stopped. This is a decompression bomb or an oversized package.`,
      );
    } else if (unpacked > RATIO_MIN_UNPACKED && packed > 0 && unpacked / packed > limits.maxCompressionRatio) {
      bomb(
        `The tarball compresses ${(unpacked / packed).toFixed(0)}:1 (${mib(unpacked)} from ${mib(packed)}), above the ${limits.maxCompressionRatio}:1 limit; scanning stopped. This looks like a decompression bomb.`,
      );
    }
  };

  const checkFailure = (): void => {
    if (state.failure !== null) throw state.failure;
    if (state.stop !== null) throw STOP;
  };

  let stoppedEarly = false;
  try {
    await pipeline(
      createReadStream(path),
      async function* countPacked(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          if (magic.length < 2) {
            magic = Buffer.concat([magic, chunk]).subarray(0, 2);
            if (magic.length === 2 && (magic[0] !== 0x1f || magic[1] !== 0x8b)) {
              throw new TarballCorruptError("Tarball is not gzip-compressed (no gzip magic bytes); npm tarballs are always .tgz.");
            }
          }
          packed += chunk.length;
          yield chunk;
        }
        if (magic.length < 2) throw new TarballCorruptError(`Tarball is empty or too short (${packed} bytes).`);
      },
      createGunzip(),
      async function feedParser(source: AsyncIterable<Buffer>) {
        let first = true;
        for await (const chunk of source) {
          if (first && chunk.length >= 2) {
            first = false;
            if ((chunk[0] === 0x1f && chunk[1] === 0x8b) || chunk.readUInt32BE(0) === 0x28b52ffd) {
              throw new TarballCorruptError("Tarball is compressed twice; npm would not read it as a tar archive.");
            }
          }
          unpacked += chunk.length;
          checkLimits();
          checkFailure();
          parser.write(chunk);
          checkFailure();
        }
        parser.end();
        if (!parserEnded && state.failure === null && state.stop === null) {
          await new Promise<void>((resolve) => {
            parser.once("end", () => resolve());
            parser.once("error", () => resolve());
            parser.once("close", () => resolve());
          });
        }
        checkFailure();
      },
    );
  } catch (error) {
    if (error === STOP) {
      stoppedEarly = true;
    } else if (error instanceof TarballCorruptError) {
      throw error;
    } else if (isZlibError(error)) {
      throw new TarballCorruptError(`Tarball is corrupt: gzip stream ${zlibReason(error)}.`, { cause: error });
    } else {
      throw error;
    }
  }

  if (!stoppedEarly) {
    if (state.entries === 0) throw new TarballCorruptError("Tarball contains no entries.");
    checkLimits();
  }

  // ---- archive-level findings
  const roots = [...state.roots];
  const rootFolder = roots.length === 1 ? roots[0]! : null;
  if (roots.length === 1 && rootFolder !== "package") {
    findings.add(
      "nonstandard_root",
      `Files are under "${rootFolder}/" instead of the usual "package/"; npm strips the top folder whatever its name, so this installs normally (older publishing tools did this).`,
      { evidence: `${rootFolder}/` },
    );
  } else if (roots.length > 1) {
    findings.add(
      "nonstandard_root",
      `Entries are spread over several top-level folders (${roots.slice(0, 5).map((r) => `"${clip(r, 40)}/"`).join(", ")}); npm strips the first folder of every path, so their contents merge on install.`,
      { severity: "moderate", evidence: roots.slice(0, 10).join(", ") },
    );
  }
  if (state.rootLevelFiles > 0 && !stoppedEarly) {
    findings.add(
      "nonstandard_root",
      `${state.rootLevelFiles} entr${state.rootLevelFiles === 1 ? "y is" : "ies are"} at the top level of the archive, outside any package folder; npm ignores them, other tools may not.`,
      { severity: "low" },
    );
  }

  // ---- manifest
  let manifest: Record<string, unknown> | null = null;
  if (state.manifestTooLarge) {
    findings.add("manifest_invalid", `package.json is larger than ${mib(MAX_MANIFEST_BYTES)}; refusing to parse it.`, { file: "package.json" });
  } else if (state.manifestBody !== null) {
    const parsed = parseManifest(state.manifestBody);
    if (parsed.ok) {
      manifest = parsed.manifest;
      checkIdentity(manifest, expected, findings);
    } else {
      findings.add("manifest_invalid", `${parsed.reason}; npm cannot install this tarball.`, {
        file: "package.json",
        evidence: state.manifestBody.subarray(0, 200).toString("utf8"),
      });
    }
  } else if (!stoppedEarly) {
    findings.add(
      "manifest_missing",
      rootFolder !== null
        ? `The tarball has no ${rootFolder}/package.json; npm cannot install it and it is not what the registry describes.`
        : "The tarball has no package.json under a top-level folder (npm expects package/package.json); npm cannot install it.",
    );
  }

  // ---- install scripts and what they run
  const install = installScriptsOf(manifest, state.hasBindingGyp);
  const nestedFlags: Record<string, string[]> = {};
  const ctx = {
    files: state.fileSet,
    profiles: state.profiles,
    scripts: allScriptsOf(manifest),
    main: typeof manifest?.main === "string" ? manifest.main : null,
    gypCommands: state.gypCommands,
  };
  const capabilityFindings: { event: string; command: string; analysis: ReturnType<typeof analyzeInstallScript> }[] = [];
  for (const [event, command] of Object.entries(install.scripts)) {
    const analysis = analyzeInstallScript(event, command, ctx);
    nestedFlags[event] = analysis.nestedRedFlags;
    capabilityFindings.push({ event, command, analysis });
  }
  installScriptFindings(install, findings, nestedFlags);
  for (const { event, command, analysis } of capabilityFindings) {
    const binaries = analysis.files.filter((f) => state.nativeBinaries.has(f));
    if (analysis.hits.length === 0 && binaries.length === 0) continue;
    const what: string[] = [];
    if (analysis.hits.length > 0) {
      const where = [...new Set(analysis.hits.map((h) => h.file ?? "inline code"))];
      what.push(`${describeCapabilities(analysis.hits)} (in ${where.slice(0, 5).join(", ")}${where.length > 5 ? ", …" : ""})`);
    }
    if (binaries.length > 0) what.push(`executes the native binary ${binaries.slice(0, 3).join(", ")}`);
    const evidence = new Map<string, Set<string>>();
    for (const h of analysis.hits) {
      const key = h.file ?? "inline";
      if (!evidence.has(key)) evidence.set(key, new Set());
      evidence.get(key)!.add(h.evidence);
    }
    findings.add(
      "install_time_capability",
      `${event} runs "${clip(command, 120)}", which ${joinPhrases(what)}; install-time code like this can download and run programs or send out secrets such as tokens in environment variables.`,
      {
        file: analysis.hits.find((h) => h.file !== null)?.file ?? binaries[0] ?? null,
        evidence: [...evidence].map(([file, snippets]) => `${file}: ${[...snippets].join(" … ")}`).join(" | ") || binaries.join(", "),
      },
    );
  }

  return {
    findings: findings.findings(),
    manifest,
    files: state.files,
    unpackedBytes: unpacked,
    packedBytes: packed,
    installScripts: install.scripts,
    entries: state.entries,
    rootFolder,
    stoppedEarly,
  };
}

function isZlibError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const code: unknown = (error as Error & { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("Z_");
}

function zlibReason(error: Error & { code: string }): string {
  if (error.code === "Z_BUF_ERROR") return "ends early (truncated download)";
  return `is damaged (${error.message})`;
}
