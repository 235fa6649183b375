/**
 * Text heuristics for package files: what a file can do when it runs (child_process, network,
 * environment), whether it looks obfuscated, whether it is a native binary, and what an install
 * script command line runs. Pure functions over strings and buffers.
 *
 * All scanning is linear in the input: hand-written loops instead of regexes like
 * /[A-Za-z0-9+/=]{2000,}/, which backtrack quadratically on long runs just under the threshold.
 */
import { clip } from "./findings.ts";

// ---------------------------------------------------------------------------------------------
// Capabilities (used for files that run at install time)

export type Capability = "child_process" | "network" | "env";

export interface CapabilityHit {
  capability: Capability;
  /** What matched, e.g. `network (https)`; used in messages. */
  detail: string;
  /** The matched snippet with a little context. */
  evidence: string;
}

export interface CodeProfile {
  /** At most one hit per capability (the first found). */
  capabilities: CapabilityHit[];
  /** Relative module specifiers the file loads (`./lib/x`, `../y.js`), for following install-time code. */
  localRefs: string[];
}

const NETWORK_MODULES = new Set(["net", "dgram", "http", "https", "http2", "tls", "dns", "dns/promises"]);

// require("x") / import("x") / from "x" / import "x" — anchored on keywords, so linear.
const MODULE_REF = /\b(?:require|import)\s*\(\s*(['"`])([^'"`\n]{1,200})\1\s*\)|\bfrom\s*(['"`])([^'"`\n]{1,200})\3|\bimport\s*(['"`])([^'"`\n]{1,200})\5/g;
const FETCH = /\bfetch\s*\(|\bnew\s+WebSocket\s*\(|\bXMLHttpRequest\b/;
const PROCESS_ENV = /\bprocess\s*(?:\.\s*env\b|\[\s*['"`]env['"`]\s*\])/;
const SHELL_NETWORK = /\b(?:curl|wget|nc|ncat|netcat)\b/;
const MAX_LOCAL_REFS = 200;

function snippet(text: string, index: number, length: number): string {
  const start = Math.max(0, index - 40);
  const end = Math.min(text.length, index + length + 40);
  return clip(`${start > 0 ? "…" : ""}${text.slice(start, end)}${end < text.length ? "…" : ""}`, 160);
}

function moduleName(spec: string): string {
  return spec.startsWith("node:") ? spec.slice(5) : spec;
}

/**
 * What `text` can do if run: child_process, raw network, process.env; plus the relative modules
 * it loads. `shell` also treats curl/wget/netcat as network use (for .sh files and `sh -c`).
 */
export function profileCode(text: string, options: { shell?: boolean } = {}): CodeProfile {
  const hits = new Map<Capability, CapabilityHit>();
  const localRefs: string[] = [];
  const add = (capability: Capability, detail: string, index: number, length: number): void => {
    if (!hits.has(capability)) hits.set(capability, { capability, detail, evidence: snippet(text, index, length) });
  };

  for (const m of text.matchAll(MODULE_REF)) {
    const spec = m[2] ?? m[4] ?? m[6];
    if (spec === undefined) continue;
    const name = moduleName(spec);
    if (name === "child_process") add("child_process", "child_process", m.index, m[0].length);
    else if (NETWORK_MODULES.has(name)) add("network", `network (${name})`, m.index, m[0].length);
    else if ((spec.startsWith("./") || spec.startsWith("../") || spec === "." || spec === "..") && localRefs.length < MAX_LOCAL_REFS) {
      localRefs.push(spec);
    }
  }
  const fetchMatch = FETCH.exec(text);
  if (fetchMatch) add("network", `network (${fetchMatch[0].replace(/\s*\($/, "").replace(/^new\s+/, "")})`, fetchMatch.index, fetchMatch[0].length);
  const envMatch = PROCESS_ENV.exec(text);
  if (envMatch) add("env", "process.env", envMatch.index, envMatch[0].length);
  if (options.shell) {
    const sh = SHELL_NETWORK.exec(text);
    if (sh) add("network", `network (${sh[0]})`, sh.index, sh[0].length);
  }
  const order: Capability[] = ["child_process", "network", "env"];
  return { capabilities: order.flatMap((c) => (hits.has(c) ? [hits.get(c)!] : [])), localRefs };
}

/** "uses child_process, opens network connections (https) and reads process.env" */
export function describeCapabilities(hits: readonly CapabilityHit[]): string {
  const parts: string[] = [];
  const detailsOf = (c: Capability): string[] => [...new Set(hits.filter((h) => h.capability === c).map((h) => h.detail))];
  if (hits.some((h) => h.capability === "child_process")) parts.push("uses child_process");
  const net = detailsOf("network").map((d) => d.replace(/^network \((.*)\)$/, "$1"));
  if (net.length > 0) parts.push(`makes network requests (${net.join(", ")})`);
  if (hits.some((h) => h.capability === "env")) parts.push("reads process.env");
  if (parts.length <= 1) return parts.join("");
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}

// ---------------------------------------------------------------------------------------------
// Obfuscation

export const BLOB_MIN_BASE64 = 2000;
export const BLOB_MIN_ESCAPES = 200;
export const LONG_LINE = 5000;
export const OBFUSCATOR_IDENTIFIER_MIN = 51;

interface Blob {
  index: number;
  length: number;
  kind: "base64" | "hex" | "escapes";
}

function isBase64Char(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47 || c === 61;
}
function isHexChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

/** Runs of base64/hex characters of at least BLOB_MIN_BASE64, in one linear pass. */
function findBase64Runs(text: string, limit = 20): Blob[] {
  const out: Blob[] = [];
  let start = -1;
  let allHex = true;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : -1;
    if (c !== -1 && isBase64Char(c)) {
      if (start < 0) {
        start = i;
        allHex = true;
      }
      if (allHex && !isHexChar(c)) allHex = false;
    } else if (start >= 0) {
      if (i - start >= BLOB_MIN_BASE64) {
        out.push({ index: start, length: i - start, kind: allHex ? "hex" : "base64" });
        if (out.length >= limit) break;
      }
      start = -1;
    }
  }
  return out;
}

/** Runs of `\xHH` or `\uHHHH` escapes, at least BLOB_MIN_ESCAPES of them in a row. */
function findEscapeRuns(text: string, limit = 20): Blob[] {
  const out: Blob[] = [];
  let i = text.indexOf("\\");
  while (i >= 0 && i < text.length) {
    let j = i;
    let count = 0;
    for (;;) {
      if (text.charCodeAt(j) !== 92) break;
      const kind = text[j + 1];
      const width = kind === "x" ? 2 : kind === "u" ? 4 : 0;
      if (width === 0) break;
      let ok = true;
      for (let k = 0; k < width; k++) if (!isHexChar(text.charCodeAt(j + 2 + k))) ok = false;
      if (!ok) break;
      j += 2 + width;
      count++;
    }
    if (count >= BLOB_MIN_ESCAPES) {
      out.push({ index: i, length: j - i, kind: "escapes" });
      if (out.length >= limit) break;
    }
    i = text.indexOf("\\", Math.max(j, i + 1));
  }
  return out;
}

const BENIGN_MAGIC: readonly (readonly number[])[] = [
  [0x89, 0x50, 0x4e, 0x47], // PNG
  [0xff, 0xd8, 0xff], // JPEG
  [0x47, 0x49, 0x46, 0x38], // GIF8
  [0x52, 0x49, 0x46, 0x46], // RIFF (WebP, WAV)
  [0x77, 0x4f, 0x46, 0x46], // wOFF
  [0x77, 0x4f, 0x46, 0x32], // wOF2
  [0x00, 0x01, 0x00, 0x00], // TrueType
  [0x4f, 0x54, 0x54, 0x4f], // OTTO (OpenType)
  [0x00, 0x61, 0x73, 0x6d], // \0asm (WebAssembly)
  [0x3c, 0x73, 0x76, 0x67], // <svg
  [0x3c, 0x3f, 0x78, 0x6d], // <?xm(l)
  [0x7b, 0x22, 0x76, 0x65], // {"ve(rsion" — source maps
];

/** True for blobs that decode to images, fonts, WebAssembly or source maps (data: URIs in bundles). */
function isBenignAsset(text: string, blob: Blob): boolean {
  if (blob.kind === "escapes") return false;
  const head = text.slice(blob.index, blob.index + 32);
  const bytes = blob.kind === "hex" ? Buffer.from(head.slice(0, 32), "hex") : Buffer.from(head, "base64");
  return BENIGN_MAGIC.some((magic) => magic.every((b, i) => bytes[i] === b));
}

const DYNAMIC_CODE: readonly RegExp[] = [
  /\beval\s*\(/,
  // new Function(...) / Function(...), but not the ubiquitous `Function("return this")()` globalThis idiom
  /(?<![\w$.])(?:new\s+)?Function\s*\(\s*(?!['"`]return this['"`]\s*\))/,
  /\brunIn(?:This|New)?Context\s*\(/,
];

function findDynamicCode(text: string): { index: number; match: string } | null {
  let best: { index: number; match: string } | null = null;
  for (const re of DYNAMIC_CODE) {
    const m = re.exec(text);
    if (m && (best === null || m.index < best.index)) best = { index: m.index, match: m[0] };
  }
  return best;
}

function longestLine(text: string): number {
  let longest = 0;
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    const end = nl < 0 ? text.length : nl;
    if (end - start > longest) longest = end - start;
    if (nl < 0) return longest;
    start = nl + 1;
  }
}

export interface ObfuscationResult {
  /** Human reasons, e.g. "a 4,096-character base64 blob passed to eval". */
  reasons: string[];
  evidence: string;
}

/**
 * Looks for obfuscated JavaScript:
 *  - an encoded blob (≥2000 base64/hex characters, or ≥200 `\x`/`\u` escapes in a row) that is not
 *    an image/font/wasm/source-map asset, in a file that also runs dynamically built code
 *    (eval, Function, vm.runIn*Context);
 *  - heavy use of `_0x1234`-style identifiers (javascript-obfuscator's signature).
 * Ordinary minified bundles (long lines, no eval-ed blobs) are not flagged.
 */
export function detectObfuscation(text: string): ObfuscationResult | null {
  const reasons: string[] = [];
  const evidence: string[] = [];

  const blobs = [...findBase64Runs(text), ...findEscapeRuns(text)].filter((b) => !isBenignAsset(text, b));
  if (blobs.length > 0) {
    const dyn = findDynamicCode(text);
    if (dyn !== null) {
      const biggest = blobs.reduce((a, b) => (b.length > a.length ? b : a));
      const what = biggest.kind === "escapes" ? "string of escape sequences" : `${biggest.kind} blob`;
      const line = longestLine(text);
      reasons.push(
        `a ${biggest.length.toLocaleString("en-US")}-character ${what} together with dynamic code execution (${dyn.match.replace(/\s*\($/, "")})` +
          (line > LONG_LINE ? ` on ${line.toLocaleString("en-US")}-character lines` : ""),
      );
      evidence.push(`${text.slice(biggest.index, biggest.index + 60)}…`, snippet(text, dyn.index, dyn.match.length));
    }
  }

  let obfIds = 0;
  let firstId: RegExpExecArray | null = null;
  const idRe = /\b_0x[0-9a-f]{4,}\b/g;
  for (let m = idRe.exec(text); m !== null && obfIds < OBFUSCATOR_IDENTIFIER_MIN; m = idRe.exec(text)) {
    obfIds++;
    firstId ??= m;
  }
  if (obfIds >= OBFUSCATOR_IDENTIFIER_MIN && firstId !== null) {
    reasons.push(`more than ${OBFUSCATOR_IDENTIFIER_MIN - 1} _0x… identifiers, the signature of javascript-obfuscator`);
    evidence.push(snippet(text, firstId.index, firstId[0].length));
  }

  return reasons.length === 0 ? null : { reasons, evidence: evidence.join(" | ") };
}

// ---------------------------------------------------------------------------------------------
// Native binaries

/** How many leading bytes of each file `detectNativeBinary` wants. */
export const HEAD_BYTES = 4096;

/** The kind of native binary `head` (a file's first bytes) is, or null. */
export function detectNativeBinary(head: Buffer, path: string): string | null {
  const lower = path.toLowerCase();
  if (head.length >= 4) {
    const magic = head.readUInt32BE(0);
    if (magic === 0x7f454c46) return "an ELF executable or shared library";
    if (magic === 0xfeedface || magic === 0xfeedfacf || magic === 0xcefaedfe || magic === 0xcffaedfe) return "a Mach-O executable or library";
    if (magic === 0xcafebabe || magic === 0xcafebabf) return "a Mach-O universal binary (or Java class file)";
  }
  if (head.length >= 2 && head[0] === 0x4d && head[1] === 0x5a) {
    // "MZ": confirm the PE signature where the DOS header points, unless the name says .exe/.dll
    if (head.length >= 0x40) {
      const peOffset = head.readUInt32LE(0x3c);
      if (peOffset + 4 <= head.length && head.readUInt32BE(peOffset) === 0x50450000) return "a Windows PE executable or DLL";
    }
    if (/\.(?:exe|dll|sys|scr)$/.test(lower)) return "a Windows executable (MZ header)";
  }
  if (lower.endsWith(".node")) return "a Node.js native addon (.node)";
  return null;
}

/** Whether the first bytes look like binary data (a NUL byte) rather than text. */
export function looksBinary(head: Buffer): boolean {
  return head.subarray(0, 8000).includes(0);
}

const JS_EXTENSIONS = /\.(?:js|cjs|mjs|jsx|ts|cts|mts|tsx)$/i;
const SHELL_EXTENSIONS = /\.(?:sh|bash|zsh|ksh|command)$/i;

export function isJavaScriptPath(path: string): boolean {
  return JS_EXTENSIONS.test(path) && !/\.d\.[cm]?ts$/i.test(path);
}

export function isShellScript(path: string, text: string): boolean {
  return SHELL_EXTENSIONS.test(path) || /^#!\s*\S*\b(?:env\s+)?(?:ba|z|da|k)?sh\b/.test(text);
}

// ---------------------------------------------------------------------------------------------
// Install script command lines

const COMMAND_RED_FLAGS: readonly [RegExp, string][] = [
  [/\bcurl\b/, "downloads with curl"],
  [/\bwget\b/, "downloads with wget"],
  [/\|\s*(?:sudo\s+)?(?:[^\s|]{0,100}\/)?(?:ba|z|da|k)?sh\b/, "pipes into a shell (| sh)"],
  [/\b(?:ba|z|da|k)?sh\s+-c\b/, "runs an inline shell command (sh -c / bash -c)"],
  [/\b(?:powershell|pwsh)(?:\.exe)?\b/i, "runs PowerShell"],
  [/\b(?:Invoke-WebRequest|Invoke-RestMethod|Invoke-Expression|iwr|iex)\b/i, "uses PowerShell download/execute cmdlets"],
  [/\bbase64\s+(?:-d|-D|--decode)\b/, "decodes base64 data"],
  [/\b(?:nc|ncat|netcat)\s+-/, "opens a raw connection with netcat"],
];

/** Dangerous things an install script command line does itself, as human phrases. */
export function commandRedFlags(command: string): string[] {
  const text = command.slice(0, MAX_COMMAND_CHARS);
  return COMMAND_RED_FLAGS.filter(([re]) => re.test(text)).map(([, phrase]) => phrase);
}

/** Command lines are analysed up to this length (package.json is attacker-controlled). */
export const MAX_COMMAND_CHARS = 16 * 1024;

/**
 * Splits a shell command line into simple commands (at `&&`, `||`, `;`, `|`, `&`, newlines) and
 * each into words, honouring quotes and backslashes. Not a full shell parser: enough to find the
 * programs and files an npm script runs.
 */
export function splitShellCommand(command: string): string[][] {
  const segments: string[][] = [];
  let words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | null = null;
  const endWord = (): void => {
    if (inWord) words.push(word);
    word = "";
    inWord = false;
  };
  const endSegment = (): void => {
    endWord();
    if (words.length > 0) segments.push(words);
    words = [];
  };
  for (let i = 0; i < command.length; i++) {
    const ch = command[i]!;
    if (quote !== null) {
      if (ch === quote) quote = null;
      else if (ch === "\\" && quote === '"' && i + 1 < command.length) word += command[++i];
      else word += ch;
      continue;
    }
    if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\" && i + 1 < command.length) {
      word += command[++i];
      inWord = true;
    } else if (ch === "&" || ch === "|" || ch === ";" || ch === "\n" || ch === "(" || ch === ")" || ch === "`") {
      endSegment();
    } else if (/\s/.test(ch)) {
      endWord();
    } else {
      word += ch;
      inWord = true;
    }
  }
  endSegment();
  return segments;
}

export interface CommandPlan {
  /** Words that may name files in the package (scripts, required hooks, arguments). */
  fileWords: string[];
  /** Inline code run by the command: `node -e "…"`, `sh -c "…"`. */
  inline: { language: "js" | "shell"; code: string }[];
  /** Other package scripts the command runs (`npm run build`). */
  scriptRefs: string[];
}

const NODE_LIKE = /^(?:node|nodejs|bun|tsx|ts-node|deno|electron)(?:\.exe)?$/;
const SHELL_LIKE = /^(?:sh|bash|zsh|dash|ksh)$/;
const WRAPPERS = new Set(["env", "cross-env", "cross-env-shell", "exec", "sudo", "time", "nice", "nohup", "command", "npx"]);
const NPM_LIKE = new Set(["npm", "yarn", "pnpm"]);
const YARN_BUILTINS = new Set(["install", "add", "remove", "run", "exec", "dlx", "node", "config", "cache", "bin", "info", "why", "link", "unlink", "pack", "publish", "workspace", "workspaces", "rebuild"]);

function basename(word: string): string {
  const parts = word.split(/[\\/]/);
  return parts[parts.length - 1] ?? word;
}

/** What a package script command line runs: candidate files, inline code, other scripts. */
export function planCommand(command: string, depth = 0): CommandPlan {
  const plan: CommandPlan = { fileWords: [], inline: [], scriptRefs: [] };
  for (const segment of splitShellCommand(command.slice(0, MAX_COMMAND_CHARS))) {
    let words = segment;
    // skip VAR=value assignments and wrappers (env, cross-env, npx, …)
    for (;;) {
      const first = words[0];
      if (first === undefined) break;
      if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(first) || WRAPPERS.has(basename(first))) words = words.slice(1);
      else break;
    }
    const program = words[0];
    if (program === undefined) continue;
    const prog = basename(program);
    const args = words.slice(1);
    if (program.includes("/")) plan.fileWords.push(program);

    if (NODE_LIKE.test(prog)) {
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        const next = args[i + 1];
        if ((a === "-e" || a === "--eval" || a === "-p" || a === "--print") && next !== undefined) {
          plan.inline.push({ language: "js", code: next });
          i++;
        } else if (/^--(?:eval|print)=/.test(a)) {
          plan.inline.push({ language: "js", code: a.slice(a.indexOf("=") + 1) });
        } else if ((a === "-r" || a === "--require" || a === "--import" || a === "--loader") && next !== undefined) {
          plan.fileWords.push(next);
          i++;
        } else if (!a.startsWith("-")) {
          plan.fileWords.push(a === "run" && prog.startsWith("deno") && next !== undefined ? next : a);
        }
      }
    } else if (SHELL_LIKE.test(prog)) {
      const c = args.indexOf("-c");
      if (c >= 0 && args[c + 1] !== undefined) {
        plan.inline.push({ language: "shell", code: args[c + 1]! });
        // the inline command may itself run package files
        if (depth < 4) {
          const nested = planCommand(args[c + 1]!, depth + 1);
          plan.fileWords.push(...nested.fileWords);
          plan.inline.push(...nested.inline);
          plan.scriptRefs.push(...nested.scriptRefs);
        }
      } else {
        plan.fileWords.push(...args.filter((a) => !a.startsWith("-")));
      }
    } else if (NPM_LIKE.has(prog)) {
      const sub = args.filter((a) => !a.startsWith("-"));
      if ((sub[0] === "run" || sub[0] === "run-script") && sub[1] !== undefined) plan.scriptRefs.push(sub[1]);
      else if (prog === "yarn" && sub[0] !== undefined && !YARN_BUILTINS.has(sub[0])) plan.scriptRefs.push(sub[0]);
    } else {
      plan.fileWords.push(...args.filter((a) => !a.startsWith("-")));
    }
  }
  return plan;
}
