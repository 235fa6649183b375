/**
 * What runs at install time: from an install script's command line to the package files it
 * executes (and the files those load with relative require/import), and what they can do.
 */
import { posix } from "node:path";
import { commandRedFlags, planCommand, profileCode, type CapabilityHit, type CodeProfile } from "./code-rules.ts";

export interface InstallTimeContext {
  /** Regular files of the package, relative to the package root (`lib/x.js`). */
  files: ReadonlySet<string>;
  /** Code profiles of the package's text files, by the same relative path. */
  profiles: ReadonlyMap<string, CodeProfile>;
  /** All scripts of package.json, to follow `npm run x`. */
  scripts: Readonly<Record<string, string>>;
  /** package.json `main`, for `node .`. */
  main: string | null;
  /** Shell commands binding.gyp runs through `<!(…)` expansions (for `node-gyp`). */
  gypCommands: readonly string[];
}

export interface LocatedHit extends CapabilityHit {
  /** Package file the hit is in, or null for inline code (`node -e`, `sh -c`). */
  file: string | null;
}

export interface InstallScriptAnalysis {
  /** Package files run or loaded at install time, in discovery order. */
  files: string[];
  hits: LocatedHit[];
  /** Red flags of commands run indirectly (`npm run x`, binding.gyp expansions). */
  nestedRedFlags: string[];
}

const MAX_FILES = 200;
const MAX_SCRIPT_DEPTH = 5;
const RESOLVE_SUFFIXES = ["", ".js", ".cjs", ".mjs", ".ts", ".cts", ".mts", "/index.js", "/index.cjs", "/index.mjs"];

function resolveIn(files: ReadonlySet<string>, candidate: string): string | null {
  const normal = posix.normalize(candidate.replace(/\\/g, "/")).replace(/\/+$/, "");
  if (normal === "" || normal === "." || normal === ".." || normal.startsWith("../") || normal.startsWith("/")) return null;
  for (const suffix of RESOLVE_SUFFIXES) {
    const p = normal + suffix;
    if (files.has(p)) return p;
  }
  return null;
}

/** A command-line word as a package file (relative to the package root), if it names one. */
export function resolveCommandWord(word: string, ctx: Pick<InstallTimeContext, "files" | "main">): string | null {
  if (word === "" || word.startsWith("-") || word.includes("$") || word.includes("://") || word.includes("%")) return null;
  if (word === "." || word === "./") return resolveIn(ctx.files, ctx.main ?? "index.js") ?? resolveIn(ctx.files, "index.js");
  return resolveIn(ctx.files, word);
}

/** A relative import specifier from `fromFile` as a package file. */
export function resolveLocalRef(fromFile: string, spec: string, files: ReadonlySet<string>): string | null {
  return resolveIn(files, posix.join(posix.dirname(fromFile), spec));
}

/** Shell commands in binding.gyp command expansions `<!(cmd)` and `<!@(cmd)`. */
export function gypCommandsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.slice(0, 256 * 1024).matchAll(/<!@?\(([^)\n]{1,500})\)/g)) {
    if (m[1] !== undefined) out.push(m[1]);
    if (out.length >= 50) break;
  }
  return out;
}

/** Follows one install script through commands, scripts and files, collecting capability hits. */
export function analyzeInstallScript(event: string, command: string, ctx: InstallTimeContext): InstallScriptAnalysis {
  const analysis: InstallScriptAnalysis = { files: [], hits: [], nestedRedFlags: [] };
  const seenScripts = new Set<string>([event]);
  const queued = new Set<string>();
  const queue: string[] = [];
  const enqueue = (file: string | null): void => {
    if (file !== null && !queued.has(file) && queued.size < MAX_FILES) {
      queued.add(file);
      queue.push(file);
    }
  };
  const addHits = (file: string | null, hits: readonly CapabilityHit[]): void => {
    for (const h of hits) analysis.hits.push({ ...h, file });
  };
  const addFlags = (flags: readonly string[]): void => {
    for (const f of flags) if (!analysis.nestedRedFlags.includes(f)) analysis.nestedRedFlags.push(f);
  };

  const visitCommand = (cmd: string, depth: number, nested: boolean): void => {
    if (nested) addFlags(commandRedFlags(cmd));
    const plan = planCommand(cmd);
    for (const word of plan.fileWords) enqueue(resolveCommandWord(word, ctx));
    for (const inline of plan.inline) addHits(null, profileCode(inline.code, { shell: inline.language === "shell" }).capabilities);
    if (depth < MAX_SCRIPT_DEPTH) {
      for (const ref of plan.scriptRefs) {
        const next = ctx.scripts[ref];
        if (next !== undefined && !seenScripts.has(ref)) {
          seenScripts.add(ref);
          visitCommand(next, depth + 1, true);
        }
      }
      if (/\bnode-gyp\b/.test(cmd)) {
        for (const gyp of ctx.gypCommands) visitCommand(gyp, depth + 1, true);
      }
    }
  };
  visitCommand(command, 0, false);

  while (queue.length > 0) {
    const file = queue.shift()!;
    analysis.files.push(file);
    const profile = ctx.profiles.get(file);
    if (profile === undefined) continue;
    addHits(file, profile.capabilities);
    for (const spec of profile.localRefs) enqueue(resolveLocalRef(file, spec, ctx.files));
  }
  return analysis;
}
