import type { Db } from "../db/client.ts";
import { AppError } from "../errors.ts";
import type { UserRole } from "../generated/prisma/enums.ts";
import { hashPassword, verifyPassword } from "./password.ts";

export type { UserRole };
export const ROLES: readonly UserRole[] = ["user", "approver", "admin"];

export interface AuthUser {
  id: number;
  username: string;
  role: UserRole;
}

const USERNAME = /^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$/;

export async function createUser(db: Db, username: string, password: string, role: UserRole): Promise<AuthUser> {
  if (!USERNAME.test(username)) throw new AppError("validation_failed", `username "${username}" must be 1-64 letters, digits, . _ @ -`);
  if (password.length < 8) throw new AppError("validation_failed", "password must be at least 8 characters");
  const existing = await db.user.findUnique({ where: { username } });
  if (existing) throw new AppError("conflict", `user ${username} already exists`);
  const user = await db.user.create({ data: { username, role, passwordHash: await hashPassword(password) } });
  return { id: user.id, username: user.username, role: user.role };
}

/** The user for these credentials, or an `invalid_credentials` error (same message either way). */
export async function authenticate(db: Db, username: string, password: string): Promise<AuthUser> {
  const user = await db.user.findUnique({ where: { username } });
  // Verify against a dummy hash when the user does not exist, so timing does not reveal usernames.
  const ok = await verifyPassword(password, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !ok) throw new AppError("invalid_credentials", "unknown username or wrong password");
  return { id: user.id, username: user.username, role: user.role };
}

const DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + Buffer.alloc(64).toString("base64");

export function hasRole(user: { role: UserRole }, needed: UserRole): boolean {
  return ROLES.indexOf(user.role) >= ROLES.indexOf(needed);
}
