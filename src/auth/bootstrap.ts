import type { Db } from "../db/client.ts";
import { randomPassword } from "./password.ts";
import { createUser } from "./users.ts";

/** On a database with no users, create `admin` with a random password and return it (shown once). */
export async function ensureFirstAdmin(db: Db): Promise<{ username: string; password: string } | null> {
  if ((await db.user.count()) > 0) return null;
  const password = randomPassword();
  await createUser(db, "admin", password, "admin");
  return { username: "admin", password };
}
