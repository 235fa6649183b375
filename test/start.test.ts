/**
 * `npm start` (scripts/start.ts) as a user runs it: embedded PostgreSQL, migrations, the API and one
 * worker. How it stops matters: a Ctrl-C at the terminal signals the whole foreground process group,
 * and the stack must still stop in order (API and worker first, each told once, the worker releasing
 * its leases; the database last). The test starts the launcher in a process group of its own, as a
 * shell does, and signals that group.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createDb } from "../src/db/client.ts";
import { embeddedDatabaseUrl, freePort } from "../src/db/embedded.ts";
import { parseLockfile } from "../src/lockfile/parse.ts";
import { createRequest } from "../src/requests/create-request.ts";
import { startFixtureRegistry } from "./support/fixture-registry.ts";
import { lockfileV3 } from "./support/lockfile.ts";
import { waitFor } from "./support/worker.ts";

const root = resolve(import.meta.dirname, "..");
const dataDir = mkdtempSync(join(tmpdir(), "spm-start-"));
const running: ChildProcess[] = [];

afterAll(() => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) killGroup(p, "SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
});

function killGroup(p: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-p.pid!, signal);
  } catch {
    // gone
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });
}

interface Stack {
  launcher: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  apiPort: number;
  pgPort: number;
}

async function startStack(extraEnv: Record<string, string> = {}): Promise<Stack> {
  const [apiPort, pgPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    HOST: "127.0.0.1",
    PORT: String(apiPort),
    EMBEDDED_PG_PORT: String(pgPort),
    LOG_LEVEL: "info",
    UPSTREAM_REGISTRY: "http://127.0.0.1:9/",
    ...extraEnv,
  };
  delete env.DATABASE_URL;
  delete env.JWT_SECRET;
  // detached: a process group of its own, as a shell gives a foreground job
  const launcher = spawn(process.execPath, ["--import", "tsx", join(root, "scripts/start.ts")], { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  running.push(launcher);
  let text = "";
  launcher.stdout!.on("data", (b: Buffer) => (text += b.toString()));
  launcher.stderr!.on("data", (b: Buffer) => (text += b.toString()));
  const exited = new Promise<number | null>((res) => launcher.once("exit", (code) => res(code)));
  const deadline = Date.now() + 100_000;
  while (!(text.includes('"stack started"') && text.includes('"maintenance scheduled"') && text.includes('"worker started"'))) {
    if (launcher.exitCode !== null) throw new Error(`npm start exited early:\n${text}`);
    if (Date.now() > deadline) throw new Error(`npm start did not come up:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const health = await fetch(`http://127.0.0.1:${apiPort}/health`);
  expect(health.status).toBe(200);
  return { launcher, output: () => text, exited, apiPort, pgPort };
}

function lines(text: string, msg: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

describe("npm start", () => {
  it("stops in order on a Ctrl-C: the API and the worker each get one signal and finish, then PostgreSQL stops", async () => {
    const stack = await startStack();
    killGroup(stack.launcher, "SIGINT"); // what the terminal does on Ctrl-C
    expect(await stack.exited).toBe(0);
    const out = stack.output();
    expect(lines(out, "stopping the stack")).toHaveLength(1);
    expect(lines(out, "shutting down")).toHaveLength(1); // the worker, told once
    expect(lines(out, "worker stopped")).toHaveLength(1);
    expect(lines(out, "closing")).toHaveLength(1); // the API, told once
    expect(lines(out, "stopped")).toHaveLength(1);
    expect(out).not.toMatch(/second (SIGINT|SIGTERM)|killed by timeout|child exited/);
    // the worker stopped before the database did: nothing about a lost connection
    expect(out).not.toMatch(/Connection terminated|terminating connection|ECONNREFUSED/);
    expect(await listening(stack.apiPort)).toBe(false);
    expect(await listening(stack.pgPort)).toBe(false);
  });

  it("kills the stack at once on a second Ctrl-C, and the next start recovers the database", async () => {
    const stack = await startStack();
    killGroup(stack.launcher, "SIGINT");
    // impatient: a second Ctrl-C while the stack stops kills the supervisor's whole process group (two
    // signals sent back to back would arrive as one: the kernel does not queue them)
    await new Promise((r) => setTimeout(r, 30));
    killGroup(stack.launcher, "SIGINT");
    await stack.exited;
    expect(stack.output()).toContain("second signal: killing the stack at once");
    const deadline = Date.now() + 30_000;
    while ((await listening(stack.apiPort)) || (await listening(stack.pgPort))) {
      if (Date.now() > deadline) throw new Error(`the stack kept running after a second Ctrl-C:\n${stack.output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const again = await startStack(); // PostgreSQL recovers from the kill; the API and worker come up
    killGroup(again.launcher, "SIGINT");
    expect(await again.exited).toBe(0);
  });

  it("stops the stack when its launcher is killed outright, and starts again on the same data", async () => {
    const stack = await startStack(); // the second start reuses the cluster, the secret and the admin
    expect(stack.output()).not.toContain("First start");
    stack.launcher.kill("SIGKILL"); // the launcher only: its supervisor is in another process group
    await stack.exited;
    // The supervisor writes to the same pipes (inherited): it notices the launcher is gone, and stops.
    const deadline = Date.now() + 30_000;
    while (!stack.output().includes('"reason":"launcher gone"') || !stack.output().includes('"msg":"stopped"')) {
      if (Date.now() > deadline) throw new Error(`the stack kept running after its launcher died:\n${stack.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(lines(stack.output(), "worker stopped")).toHaveLength(1);
    expect(await listening(stack.apiPort)).toBe(false);
    expect(await listening(stack.pgPort)).toBe(false);
  });

  it("puts a crashed worker's packages back to their queue at once, and the restarted worker finishes them", async () => {
    const upstream = await startFixtureRegistry();
    const names = ["crash-a", "crash-b"];
    for (const n of names) upstream.addPackage(n, [{ version: "1.0.0", license: "MIT" }]);
    upstream.setFault({ kind: "tarball" }, { kind: "delay", ms: 60_000 });
    const stack = await startStack({ UPSTREAM_REGISTRY: upstream.url });
    const db = createDb(embeddedDatabaseUrl(dataDir, stack.pgPort)!, 1);
    try {
      const raw = Buffer.from(lockfileV3(names.map((name) => ({ name, version: "1.0.0", integrity: upstream.integrity(name, "1.0.0") }))));
      await createRequest(db, { parsed: parseLockfile(raw), raw, fileName: null, user: { id: null, username: "t" } });
      await waitFor(async () => (await db.package.count({ where: { name: { in: names }, status: "downloading" } })) === names.length, 30_000, "downloading");
      const [started] = lines(stack.output(), "worker started");
      const dead = started!.workerId as string;
      expect((await db.package.findMany({ where: { name: { in: names } } })).map((p) => p.leaseOwner)).toEqual([dead, dead]);

      upstream.setFault({ kind: "tarball" }, null);
      process.kill(started!.pid as number, "SIGKILL"); // out of memory, say: no chance to release anything
      // back in their queue within moments (STUCK_AFTER_MINUTES is 30), then done by the restarted worker
      await waitFor(
        async () => (await db.package.count({ where: { name: { in: names }, status: { in: ["pending_approval", "approved"] } } })) === names.length,
        30_000,
        "the restarted worker finishes the dead worker's packages",
      );
      const events = await db.packageEvent.findMany({ where: { actor: "start", reason: { contains: "exited (SIGKILL)" } } });
      expect(events.map((e) => [e.fromStatus, e.toStatus, (e.details as { lease_owner: string }).lease_owner])).toEqual(
        names.map(() => ["downloading", "licence_checked", dead]),
      );
      const restarted = lines(stack.output(), "worker started").map((l) => l.workerId);
      expect(restarted).toHaveLength(2);
      expect(restarted[1]).not.toBe(dead); // each process its own id
      expect(lines(stack.output(), "put the dead worker's packages back to their queue")[0]).toMatchObject({ workerId: dead, requeued: 2 });
    } finally {
      await db.$disconnect();
      killGroup(stack.launcher, "SIGINT");
      await stack.exited;
      await upstream.close();
    }
  });
});
