/**
 * npm run audit:verify
 * Recompute the audit hash chain (package_event, seal_seq order) and report `OK: N events, chain head
 * <hash>` or the first broken link (exit 1), plus the number of events not sealed yet.
 * Database: DATABASE_URL, else the embedded database of a running `npm start`.
 */
import { formatVerifyReport, verifyChain } from "../src/audit/verify.ts";
import { loadConfig } from "../src/config.ts";
import { createDb } from "../src/db/client.ts";
import { cliDatabaseUrl } from "./cli-database.ts";

async function main(): Promise<number> {
  const db = createDb(cliDatabaseUrl(loadConfig()), 1);
  try {
    const result = await verifyChain(db);
    process.stdout.write(`${formatVerifyReport(result)}\n`);
    return result.ok ? 0 : 1;
  } finally {
    await db.$disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`audit:verify: ${(err as Error).message}\n`);
    process.exit(2);
  },
);
