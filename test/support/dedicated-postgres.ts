/**
 * A PostgreSQL server of a test file's own (embedded, in a temporary directory, on a free port), for
 * tests that stop and restart the server: the shared test server cannot be, other files use it.
 * One database is created and migrated with the real migration tool.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/db/embedded.ts";

export interface DedicatedPostgres {
  /** URL of the migrated database. */
  url: string;
  /** URL of the `postgres` database, for admin statements. */
  serverUrl: string;
  readonly running: boolean;
  /** Stop the server (fast shutdown: every session is terminated). */
  stop(): Promise<void>;
  /** Start it again on the same directory and port. */
  start(): Promise<void>;
  /** Stop it if running and delete its files. */
  destroy(): Promise<void>;
}


export async function startDedicatedPostgres(database = "spm"): Promise<DedicatedPostgres> {
  const dir = mkdtempSync(join(tmpdir(), "spm-dedicated-pg-"));
  const flags = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=100"];
  let server: EmbeddedDatabase | null = await startEmbeddedPostgres({ dir, postgresFlags: flags });
  // Restarts reuse the directory and the port the first start picked.
  const port = server.port;
  const boot = () => startEmbeddedPostgres({ dir, port, postgresFlags: flags });
  const serverUrl = server.url;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${database}"`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  execFileSync(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "../../scripts/migrate.ts"), "deploy"], {
    env: { ...process.env, DATABASE_URL: url.toString() },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const stop = async (): Promise<void> => {
    const s = server;
    server = null;
    await s?.stop();
  };
  return {
    url: url.toString(),
    serverUrl,
    get running() {
      return server !== null;
    },
    stop,
    async start() {
      server ??= await boot();
    },
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
