/** Build the API against a test database, with users of each role and tokens for them. */
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../api/app.ts";
import { createUser } from "../../src/auth/users.ts";
import { loadConfig, type Config } from "../../src/config.ts";
import type { Db } from "../../src/db/client.ts";

export const TEST_JWT_SECRET = "test-secret-0123456789-0123456789-abcdef";

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ NODE_ENV: "test", LOG_LEVEL: "silent", JWT_SECRET: TEST_JWT_SECRET, ...env });
}

export interface TestApp {
  app: FastifyInstance;
  tokens: { user: string; approver: string; admin: string };
  auth(role: "user" | "approver" | "admin"): { authorization: string };
}

export async function buildTestApp(db: Db, env: Record<string, string> = {}): Promise<TestApp> {
  const config = testConfig(env);
  const app = await buildApp({ config, db, jwtSecret: TEST_JWT_SECRET, logger: false });
  await app.ready();
  const tokens = { user: "", approver: "", admin: "" };
  for (const role of ["user", "approver", "admin"] as const) {
    const username = `${role}1`;
    const existing = await db.user.findUnique({ where: { username } });
    const user = existing ?? (await createUser(db, username, `${role}-password`, role));
    tokens[role] = app.jwt.sign({ sub: String(user.id), name: user.username, role });
  }
  return { app, tokens, auth: (role) => ({ authorization: `Bearer ${tokens[role]}` }) };
}
