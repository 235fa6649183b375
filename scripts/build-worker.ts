/**
 * The worker's production build: `npm run build:worker` (also run by `npm start`, `npm run start:worker`
 * and Dockerfile.worker). esbuild bundles worker/main.ts with every source it imports (src/, the
 * generated Prisma client) and the npm packages they use into one plain-JavaScript file,
 * dist/worker/main.mjs, so that the worker runs on plain `node` without the tsx loader (its module hooks
 * thread and esbuild service cost ~35 MiB of RSS in every worker). Only `node:` built-ins stay imports.
 * One module instead of ~400 files, with whitespace and dead code removed (names are kept, so stack
 * traces stay readable; `--enable-source-maps` maps them to the sources): V8 keeps every module's
 * source text on its heap, and this saves ~7 MiB of RSS per worker. The packages' CommonJS `require`
 * calls get a real `require` (createRequire) from the banner.
 *
 * One change to the generated Prisma client: it ships its query compiler (WebAssembly) as a base64
 * string module, and that module's source and string (~4.6 MB) stay on the heap for the life of the
 * process. The bundle instead reads the compiler from a .wasm file written next to it.
 *
 * WORKER_NODE_FLAGS are the node flags the worker runs with, everywhere it is launched: package.json
 * `start:worker`, scripts/start.ts (`npm start`), Dockerfile.worker and docker-compose.yml (checked by
 * test/worker-build.test.ts), and the benchmarks' worker processes (scripts/bench/drain-run.ts).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { createRequire, isBuiltin } from "node:module";
import { pathToFileURL } from "node:url";
import { build, type Plugin } from "esbuild";

export const ROOT = resolve(import.meta.dirname, "..");

/** The built worker, relative to the repository root. */
export const WORKER_BUNDLE = "dist/worker/main.mjs";

/**
 * Node flags of every worker process (docs/performance.md, "Memory"), measured with the memory
 * benchmark (the real worker draining 100k rows, peak RSS):
 *  - `--max-semi-space-size=2`: a young generation of 2 × 2 MiB. By default it grows to 2 × 16 MiB
 *    while the worker allocates fast (rows, query plans, events).
 *  - `--heap-growing-percent=20`: the old generation may grow 20 % past its live size before the next
 *    full GC. By default V8 lets a fast-allocating process grow it several-fold: ~75 MiB of old space,
 *    mostly garbage, against ~30 MiB with the flag (live data is ~20 MiB).
 *  - `--v8-pool-size=2`: two V8 background threads instead of four. Each thread that compiles (TurboFan
 *    recompiles the hot parts of Prisma's WebAssembly query compiler) keeps its own malloc arena: ~5-10
 *    MiB less RSS.
 *  - `--liftoff-only`: WebAssembly (Prisma's query compiler, used by the ORM queries of the steps) runs
 *    on V8's baseline compiler only, never recompiled by TurboFan: ~8 MiB less RSS. The queue's hot
 *    statements are raw SQL and never reach the query compiler.
 * Together they did not change the drain benchmark's rates (ours/raw ratios within run-to-run noise).
 */
export const WORKER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=2", "--heap-growing-percent=20", "--v8-pool-size=2", "--liftoff-only"];

/** `node:` built-ins (with or without the prefix) and the given packages stay imports; everything else is bundled. */
function externalBuiltins(packages: readonly string[]): Plugin {
  return {
    name: "external-builtins",
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) =>
        args.path.startsWith("node:") || isBuiltin(args.path) || packages.some((p) => args.path === p || args.path.startsWith(`${p}/`))
          ? { path: args.path, external: true }
          : undefined,
      );
    },
  };
}

/** CommonJS code inside an ES module has no `require`: give it one. */
const REQUIRE_BANNER = 'import { createRequire as __spmCreateRequire } from "node:module"; const require = __spmCreateRequire(import.meta.url);';

/** The generated client's loader of the query compiler, as `prisma generate` (7.10) writes it. */
const WASM_LOADER =
  /getQueryCompilerWasmModule: async \(\) => \{\s*const \{ wasm \} = await import\("@prisma\/client\/runtime\/(query_compiler_\w+_bg\.\w+)\.wasm-base64\.mjs"\)\s*return await decodeBase64AsWasm\(wasm\)\s*\},?/;

/**
 * Load Prisma's query compiler from `<name>.wasm` beside the bundle (collected in `files`) instead of
 * the base64 module. If the generated code does not look as expected, it is left as it is (with a
 * warning): the bundle still works, with the base64 string on its heap.
 */
function prismaWasmFromFile(outDir: string, files: { path: string; contents: Uint8Array }[]): Plugin {
  return {
    name: "prisma-wasm-from-file",
    setup(b) {
      b.onLoad({ filter: /[\\/]generated[\\/]prisma[\\/]internal[\\/]class\.ts$/ }, (args) => {
        const source = readFileSync(args.path, "utf8");
        const m = WASM_LOADER.exec(source);
        if (!m) {
          return { contents: source, loader: "ts", warnings: [{ text: "Prisma's query compiler loader has an unexpected shape; the bundle keeps its base64 module" }] };
        }
        const name = m[1]!;
        const module = readFileSync(createRequire(args.path).resolve(`@prisma/client/runtime/${name}.wasm-base64.mjs`), "utf8");
        const base64 = /"([A-Za-z0-9+/=]{1000,})"/.exec(module)?.[1];
        if (!base64) throw new Error(`no base64 string in @prisma/client/runtime/${name}.wasm-base64.mjs`);
        files.push({ path: join(outDir, `${name}.wasm`), contents: Buffer.from(base64, "base64") });
        const loader = `getQueryCompilerWasmModule: async () => new WebAssembly.Module(__readWasm(new URL("./${name}.wasm", import.meta.url))),`;
        return { contents: `import { readFileSync as __readWasm } from "node:fs";\n${source.replace(m[0], loader)}`, loader: "ts" };
      });
    },
  };
}

/**
 * Bundle one TypeScript entry point (relative to the root) into `outfile` (ESM, Node 20, with a linked
 * source map: run node with --enable-source-maps to see TypeScript positions in stack traces). Each
 * file is written under a temporary name and renamed, so a process starting meanwhile never loads a
 * half-written bundle. `external`: packages to leave as imports (e.g. one only a code path never taken
 * in production would load).
 */
export async function bundle(entry: string, outfile: string, opts: { external?: readonly string[] } = {}): Promise<string> {
  const out = resolve(ROOT, outfile);
  mkdirSync(dirname(out), { recursive: true });
  const extra: { path: string; contents: Uint8Array }[] = [];
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [join(ROOT, entry)],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    legalComments: "none",
    minifyWhitespace: true,
    minifySyntax: true,
    banner: { js: REQUIRE_BANNER },
    logLevel: "silent",
    write: false,
    plugins: [prismaWasmFromFile(dirname(out), extra), externalBuiltins(opts.external ?? [])],
  });
  for (const w of result.warnings) process.stderr.write(`build-worker: warning: ${w.text}${w.location ? ` (${w.location.file})` : ""}\n`);
  // The bundle last: what it loads (the .wasm, its map) is in place before it is.
  const outputs = [...extra, ...result.outputFiles].sort((a, b) => Number(a.path === out) - Number(b.path === out));
  for (const file of outputs) {
    const tmp = `${file.path}.${process.pid}.tmp`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
  }
  return out;
}

/** Build dist/worker/main.mjs; returns its absolute path. */
export function buildWorker(): Promise<string> {
  return bundle("worker/main.ts", WORKER_BUNDLE);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  buildWorker().then(
    (out) => process.stdout.write(`built ${relative(ROOT, out)}\n`),
    (err: unknown) => {
      process.stderr.write(`build-worker failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
