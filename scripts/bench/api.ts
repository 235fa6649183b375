/**
 * The real Fastify app (api/app.ts buildApp) for benchmarks, with a user and a token, and a tiny
 * keep-alive HTTP client for sequential latency measurements on 127.0.0.1.
 */
import http from "node:http";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../api/app.ts";
import { createUser } from "../../src/auth/users.ts";
import { loadConfig, type Config } from "../../src/config.ts";
import { createDb, type Db } from "../../src/db/client.ts";
import { JWT_SECRET } from "./lib.ts";

export interface BenchApp {
  app: FastifyInstance;
  db: Db;
  config: Config;
  token: string;
  close(): Promise<void>;
}

export async function startApp(url: string, env: Record<string, string> = {}): Promise<BenchApp> {
  const config = loadConfig({
    NODE_ENV: "production",
    LOG_LEVEL: "silent",
    JWT_SECRET,
    DATABASE_URL: url,
    ...env,
  });
  const db = createDb(url, config.DB_POOL_SIZE);
  const app = await buildApp({ config, db, jwtSecret: JWT_SECRET, logger: false });
  await app.ready();
  const username = "bench-user";
  const existing = await db.user.findUnique({ where: { username } });
  const user = existing ?? (await createUser(db, username, "bench-password-1", "admin"));
  const token = app.jwt.sign({ sub: String(user.id), name: user.username, role: "admin" });
  return {
    app,
    db,
    config,
    token,
    async close() {
      await app.close();
      await db.$disconnect();
    },
  };
}

/** Listen on 127.0.0.1 (random port); returns the base URL. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr !== "object") throw new Error("no address");
  return `http://127.0.0.1:${addr.port}`;
}

/** GET over one keep-alive connection; resolves with status and body size, and the elapsed ms. */
export function timedGet(
  agent: http.Agent,
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; bytes: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(url, { agent, headers }, (res) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - t0 }));
      res.on("error", reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout: GET ${url}`)));
    req.on("error", reject);
  });
}
