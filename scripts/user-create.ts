/**
 * npm run user:create -- --username alice --role approver
 * Password from SPM_PASSWORD, else read from stdin (first line).
 */
import { parseArgs } from "node:util";
import { createUser, ROLES, type UserRole } from "../src/auth/users.ts";
import { loadConfig } from "../src/config.ts";
import { createDb } from "../src/db/client.ts";
import { cliDatabaseUrl } from "./cli-database.ts";

async function readStdinLine(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write("password: ");
  let data = "";
  for await (const chunk of process.stdin) {
    data += String(chunk);
    if (data.includes("\n")) break;
  }
  return data.split("\n")[0]!.replace(/\r$/, "");
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { username: { type: "string" }, role: { type: "string", default: "user" } } });
  if (!values.username || !ROLES.includes(values.role as UserRole)) {
    process.stderr.write(`usage: npm run user:create -- --username NAME [--role ${ROLES.join("|")}]  (password: SPM_PASSWORD or stdin)\n`);
    return 2;
  }
  const password = process.env.SPM_PASSWORD ?? (await readStdinLine());
  const db = createDb(cliDatabaseUrl(loadConfig()), 1);
  try {
    const user = await createUser(db, values.username, password, values.role as UserRole);
    process.stdout.write(`created ${user.role} ${user.username} (id ${user.id})\n`);
    return 0;
  } finally {
    await db.$disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`user:create: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
