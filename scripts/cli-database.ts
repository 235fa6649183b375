/** Database URL for CLI tools: DATABASE_URL, else the embedded database of a running `npm start`. */
import type { Config } from "../src/config.ts";
import { embeddedDatabaseUrl } from "../src/db/embedded.ts";

export function cliDatabaseUrl(config: Config): string {
  const url = config.DATABASE_URL ?? embeddedDatabaseUrl(config.DATA_DIR, config.EMBEDDED_PG_PORT);
  if (!url) {
    throw new Error("no database: set DATABASE_URL, or run this beside `npm start` (embedded database under DATA_DIR)");
  }
  return url;
}
