/** Helpers shared by the API tests: lockfile builders, upload requests and row counts. */
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Db } from "../../src/db/client.ts";

export type Json = Record<string, unknown>;

export interface Pkg {
  name: string;
  version: string;
}

/** A real-looking SRI string, distinct per name@version. */
export function sri(name: string, version: string): string {
  return `sha512-${createHash("sha512").update(`${name}@${version}`).digest("base64")}`;
}

export function tarball(name: string, version: string): string {
  const base = name.slice(name.lastIndexOf("/") + 1);
  return `https://registry.npmjs.org/${name}/-/${base}-${version}.tgz`;
}

/** A v2/v3 `packages` entry of a registry package. */
export function entry(p: Pkg, extra: Json = {}): Json {
  return { version: p.version, resolved: tarball(p.name, p.version), integrity: sri(p.name, p.version), ...extra };
}

/** A lockfileVersion 3 file with the given registry packages at top level, plus `extra` entries of the map. */
export function lockV3(pkgs: Pkg[], extra: Json = {}): string {
  const packages: Json = { "": { name: "app", version: "1.0.0" } };
  for (const p of pkgs) packages[`node_modules/${p.name}`] = entry(p);
  Object.assign(packages, extra);
  return JSON.stringify({ name: "app", version: "1.0.0", lockfileVersion: 3, requires: true, packages });
}

/** `count` packages named `${prefix}-<i>`, version 1.0.0. */
export function pkgs(prefix: string, count: number, version = "1.0.0"): Pkg[] {
  return Array.from({ length: count }, (_, i) => ({ name: `${prefix}-${i}`, version }));
}

/** A multipart/form-data body built by hand. */
export function multipart(
  parts: { name: string; filename?: string; contentType?: string; content: string | Buffer }[],
  boundary = `----spm-test-${Math.random().toString(16).slice(2)}`,
): { payload: Buffer; headers: Record<string, string> } {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename === undefined ? "" : `; filename="${part.filename}"`}`;
    const head = `--${boundary}\r\nContent-Disposition: ${disposition}\r\n${part.contentType ? `Content-Type: ${part.contentType}\r\n` : ""}\r\n`;
    chunks.push(Buffer.from(head), Buffer.isBuffer(part.content) ? part.content : Buffer.from(part.content), Buffer.from("\r\n"));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { "content-type": `multipart/form-data; boundary=${boundary}` } };
}

/** POST the lockfile as the raw application/json body. */
export function uploadRaw(app: FastifyInstance, auth: Record<string, string>, body: string | Buffer, headers: Record<string, string> = {}) {
  return app.inject({
    method: "POST",
    url: "/api/packages/upload",
    headers: { ...auth, "content-type": "application/json", ...headers },
    payload: body,
  });
}

/** POST the lockfile as multipart field `file`. */
export function uploadMultipart(app: FastifyInstance, auth: Record<string, string>, body: string | Buffer, filename = "package-lock.json") {
  const { payload, headers } = multipart([{ name: "file", filename, contentType: "application/json", content: body }]);
  return app.inject({ method: "POST", url: "/api/packages/upload", headers: { ...auth, ...headers }, payload });
}

export interface UploadResponse {
  request_id: number;
  packages: { total: number; new: number; existing: number };
  skipped: { path: string; reason: string }[];
}

export interface RowCounts {
  request: number;
  package: number;
  package_event: number;
  request_package: number;
}

export async function rowCounts(db: Db): Promise<RowCounts> {
  const [row] = await db.$queryRaw<RowCounts[]>`
    SELECT (SELECT count(*)::int FROM request) AS request,
           (SELECT count(*)::int FROM package) AS package,
           (SELECT count(*)::int FROM package_event) AS package_event,
           (SELECT count(*)::int FROM request_package) AS request_package`;
  return row!;
}
