/**
 * Offline OSV advisory import:  npm run advisories:import -- <path>
 * See `usage` below. This is a CLI tool, so it writes to stdout/stderr directly.
 * Exit codes: 0 imported at least one advisory, 1 imported nothing (or failed), 2 usage error.
 */
import { userInfo } from "node:os";
import { resolve } from "node:path";
import { createDb } from "../src/db/client.ts";
import { readOsvDocuments } from "../src/advisories/read-sources.ts";
import { importAdvisories } from "../src/advisories/store.ts";

const usage = `Usage: npm run advisories:import -- <path>

Imports OSV advisories for the npm ecosystem into the database the server uses.
  <path>  one OSV .json file, a directory of them (searched recursively), or a .zip
          such as https://osv-vulnerabilities.storage.googleapis.com/npm/all.zip
          (documents for other ecosystems are skipped).

Environment:
  DATABASE_URL            PostgreSQL URL of the server's (migrated) database. Required:
                          the embedded database of \`npm start\` is not started by this tool.
  ADVISORIES_IMPORTED_BY  who to record as the importer (default: cli:<os user>).

Exit status: 0 when at least one advisory was imported, 1 when none was, 2 on usage errors.
`;

const MAX_ERRORS_SHOWN = 20;

function out(line: string): void {
  process.stdout.write(line + "\n");
}

function err(line: string): void {
  process.stderr.write(line + "\n");
}

function importer(): string {
  const fromEnv = process.env.ADVISORIES_IMPORTED_BY?.trim();
  if (fromEnv) return fromEnv;
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:${process.env.USER ?? "unknown"}`;
  }
}

async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    out(usage);
    return 0;
  }
  if (args.length !== 1 || !args[0]) {
    err(usage);
    return 2;
  }
  const url = process.env.DATABASE_URL;
  if (!url) {
    err("DATABASE_URL is required.\n");
    err(usage);
    return 2;
  }

  const path = resolve(args[0]);
  const db = createDb(url, 2);
  try {
    const started = Date.now();
    let lastReport = 0;
    const result = await importAdvisories(db, readOsvDocuments(path), importer(), {
      source: path,
      onProgress: (p) => {
        if (p.processed - lastReport >= 10_000) {
          lastReport = p.processed;
          err(`... ${p.processed} documents read, ${p.imported} imported`);
        }
      },
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    out(`${result.imported} imported, ${result.skipped} skipped (not npm), ${result.failed} errors (${seconds}s) from ${path}`);
    if (result.errors.length > 0) {
      out("errors:");
      for (const e of result.errors.slice(0, MAX_ERRORS_SHOWN)) out(`  ${e}`);
      if (result.failed > MAX_ERRORS_SHOWN) out(`  ... and ${result.failed - MAX_ERRORS_SHOWN} more`);
    }
    return result.imported > 0 ? 0 : 1;
  } finally {
    await db.$disconnect();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    err(`advisories:import failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
