/**
 * Starts the PostgreSQL the tests use (embedded, in a fresh temporary directory, unless DATABASE_URL
 * points at a server), migrates a template database once, and hands its server URL to the test files.
 * Each test file clones its own database from the template (test/support/db.ts). Also builds the
 * worker's bundle (dist/worker/main.mjs), which the tests that spawn a worker process run.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../src/db/embedded.ts";
import { buildWorker } from "../scripts/build-worker.ts";

export const TEMPLATE_DB = "spm_test_template";

declare module "vitest" {
  export interface ProvidedContext {
    pgServerUrl: string;
  }
}


let embedded: EmbeddedDatabase | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  await buildWorker();
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    dir = mkdtempSync(join(tmpdir(), "spm-test-pg-"));
    embedded = await startEmbeddedPostgres({
      dir,
      postgresFlags: ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
    });
    serverUrl = embedded.url;
  }
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  const stale = await admin.query<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datname LIKE 'spm_t\\_%' OR datname = $1",
    [TEMPLATE_DB],
  );
  for (const { datname } of stale.rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE "${TEMPLATE_DB}"`);
  await admin.end();
  const templateUrl = new URL(serverUrl);
  templateUrl.pathname = `/${TEMPLATE_DB}`;
  execFileSync(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "../scripts/migrate.ts"), "deploy"], {
    env: { ...process.env, DATABASE_URL: templateUrl.toString() },
    stdio: ["ignore", "ignore", "inherit"],
  });
  project.provide("pgServerUrl", serverUrl);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
