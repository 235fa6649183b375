/**
 * The worker's production build (scripts/build-worker.ts): every place that launches a worker runs the
 * same bundle with the same node flags, the bundle stands on its own (no TypeScript loader, Prisma's
 * query compiler read from the .wasm file beside it), and the built worker starts, reports healthy
 * and stops cleanly. test/global-setup.ts builds the bundle; the fault tests (test/fault/) also run it.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_BUNDLE, WORKER_NODE_FLAGS } from "../scripts/build-worker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { spawnWorker, waitFor, workerEnv } from "./support/worker.ts";

const root = resolve(import.meta.dirname, "..");
const read = (file: string) => readFileSync(join(root, file), "utf8");

describe("worker launch commands", () => {
  const command = ["node", ...WORKER_NODE_FLAGS, WORKER_BUNDLE].join(" ");

  it("npm run start:worker builds the bundle, then runs it with WORKER_NODE_FLAGS", () => {
    const scripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
    expect(scripts["start:worker"]).toBe(command);
    expect(scripts["prestart:worker"]).toMatch(/npm run build:worker\b/);
    expect(scripts["build:worker"]).toMatch(/scripts\/build-worker\.ts$/);
  });

  it("npm start builds the bundle and runs it with WORKER_NODE_FLAGS", () => {
    const start = read("scripts/start.ts");
    expect(start).toMatch(/await buildWorker\(\)/);
    expect(start).toMatch(/args: \[\.\.\.WORKER_NODE_FLAGS, workerBundle\]/);
  });

  it("Dockerfile.worker builds the bundle in its build stage and runs it with WORKER_NODE_FLAGS", () => {
    const dockerfile = read("Dockerfile.worker");
    expect(dockerfile).toMatch(/^RUN npm run build:worker$/m);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    const cmd = /^CMD (\[.*\])$/m.exec(dockerfile.split("# ---- worker ----")[1] ?? "");
    expect(JSON.parse(cmd![1]!)).toEqual(command.split(" "));
  });

  it("scripts/stack-smoke.sh runs the workers as compose does", () => {
    expect(read("scripts/stack-smoke.sh")).toContain(`${command}\n`);
  });
});

describe("the bundle", () => {
  const bundle = join(root, WORKER_BUNDLE);

  it("loads Prisma's query compiler from the .wasm file beside it, not from the base64 module", () => {
    const text = readFileSync(bundle, "utf8");
    expect(text).not.toContain("wasm-base64");
    const m = /new URL\("\.\/(query_compiler_\w+_bg\.\w+\.wasm)",\s*import\.meta\.url\)/.exec(text);
    expect(m, "the bundle reads the compiler with new URL(..., import.meta.url)").not.toBeNull();
    const wasm = join(dirname(bundle), m![1]!);
    expect(existsSync(wasm)).toBe(true);
    expect(readFileSync(wasm).subarray(0, 8)).toEqual(Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])); // "\0asm", version 1
  });

  it("is self-contained: imports node built-ins only (npm packages bundled; no TypeScript, no tsx)", () => {
    const text = readFileSync(bundle, "utf8");
    const specifiers = [...text.matchAll(/(?:^|;)\s*import\s*(?:[\w*{}\s,$]+?\s*from\s*)?"([^"]+)"/gm)].map((m) => m[1]!);
    expect(specifiers.length).toBeGreaterThan(5);
    for (const s of specifiers) expect(isBuiltin(s), s).toBe(true);
    expect(text).not.toMatch(/\bimport\(\s*"(?!node:)/); // no dynamic import of a package either
  });
});

describe("the built worker process", () => {
  let t: TestDatabase;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    child?.kill("SIGKILL");
    await t?.drop();
  });

  it("starts, answers /health 200 once it has polled, and exits 0 on SIGTERM", async () => {
    child = spawnWorker(t.url, { ...workerEnv({ LOG_LEVEL: "info", WORKER_METRICS_PORT: "0" }), WORKER_ID: "built" });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    let port = 0;
    await waitFor(
      async () => {
        if (child!.exitCode !== null) throw new Error(`the built worker exited with ${child!.exitCode}:\n${out}`);
        port = Number(/"port":(\d+)/.exec(out)?.[1] ?? 0);
        return port > 0;
      },
      30_000,
      "the worker's health port",
    );
    let body: { status?: string; workerId?: string } = {};
    await waitFor(
      async () => {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        body = (await res.json()) as typeof body;
        return res.status === 200;
      },
      30_000,
      "/health 200",
    );
    expect(body).toMatchObject({ status: "ok", workerId: "built" });
    expect(await t.db.worker.count({ where: { id: "built" } })).toBe(1);
    const exit = new Promise<number | null>((r) => child!.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
    expect(out).toContain("worker stopped");
  });
});
