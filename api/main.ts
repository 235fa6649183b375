/**
 * API process entry point: `npm run start:api`. Needs DATABASE_URL and JWT_SECRET (`npm start` provides
 * both). Besides the HTTP API, the process runs the periodic maintenance (the audit sealer:
 * src/maintenance/scheduler.ts), unless API_MAINTENANCE=false.
 */
import closeWithGrace from "close-with-grace";
import { config as loadConfig, ConfigError } from "../src/config.ts";
import { createDb } from "../src/db/client.ts";
import { createLogger } from "../src/logger.ts";
import { createMaintenance } from "../src/maintenance/scheduler.ts";
import { buildApp } from "./app.ts";

const log = createLogger("api");

async function main(): Promise<void> {
  const config = loadConfig();
  const missing = [
    ...(config.DATABASE_URL ? [] : ["DATABASE_URL: required for the API (npm start sets it for the embedded database)"]),
    ...(config.JWT_SECRET ? [] : ["JWT_SECRET: required for the API (npm start generates one for the embedded setup)"]),
  ];
  if (missing.length > 0) throw new ConfigError(missing);
  const db = createDb(config.DATABASE_URL!, config.DB_POOL_SIZE);
  const app = await buildApp({ config, db, jwtSecret: config.JWT_SECRET! });
  const maintenance = config.API_MAINTENANCE ? createMaintenance({ config, db, log }) : null;
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, "closing after an error");
    else app.log.info({ signal }, "closing");
    await maintenance?.stop();
    await app.close();
    await db.$disconnect();
  });
  await app.listen({ port: config.PORT, host: config.HOST });
  maintenance?.start();
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, "api failed to start");
  process.exit(1);
});
