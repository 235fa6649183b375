/**
 * Turn a parsed lockfile into a request: one transaction that writes the request row, inserts the
 * new name@versions in bulk, links existing ones, and NOTIFYs idle workers at commit. Nothing is
 * written when any statement fails.
 */
import { createHash } from "node:crypto";
import type { Db } from "../db/client.ts";
import type { ParsedLockfile, SkippedEntry } from "../lockfile/parse.ts";
import { enqueuePackages, notifyWork } from "../queue/sql.ts";

export interface CreatedRequest {
  request_id: number;
  packages: { total: number; new: number; existing: number };
  skipped: SkippedEntry[];
}

export async function createRequest(
  db: Db,
  input: { parsed: ParsedLockfile; raw: Buffer; fileName: string | null; user: { id: number | null; username: string } },
): Promise<CreatedRequest> {
  const { parsed } = input;
  const total = parsed.packages.length;
  return db.$transaction(
    async (tx) => {
      const request = await tx.request.create({
        data: {
          uploadedById: input.user.id,
          uploadedByName: input.user.username,
          fileName: input.fileName,
          lockfileSha256: createHash("sha256").update(input.raw).digest("hex"),
          lockfileVersion: parsed.lockfileVersion,
          total,
          newCount: 0,
          existingCount: 0,
          skipped: parsed.skipped as unknown as object[],
        },
      });
      const rows = parsed.packages.map((p) => ({ name: p.name, version: p.version, integrity: p.integrity, resolved: p.resolved }));
      const { inserted } = await enqueuePackages(tx, { requestId: request.id, actor: input.user.username, rows });
      await tx.request.update({ where: { id: request.id }, data: { newCount: inserted, existingCount: total - inserted } });
      if (inserted > 0) await notifyWork(tx);
      return { request_id: request.id, packages: { total, new: inserted, existing: total - inserted }, skipped: parsed.skipped };
    },
    { timeout: 120_000, maxWait: 10_000 },
  );
}
