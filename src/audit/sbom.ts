/**
 * CycloneDX 1.5 SBOM (JSON) of one request's packages, with each package's vetting outcome
 * (GET /api/packages/requests/:id/sbom).
 *
 * Components: `type: library`, npm scope in `group` ("@scope") and the rest in `name`, a purl
 * (`pkg:npm/%40scope/name@1.0.0`, also the bom-ref), the licence expression the licence step settled
 * on, the hashes of the downloaded tarball (SHA-512 from its verified integrity, SHA-1 from the shasum),
 * and `spm:*` properties: status, reason code and message, who approved it.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Sql } from "../queue/sql.ts";
import { hexOf } from "../store/sri.ts";

export interface CdxProperty {
  name: string;
  value: string;
}

export interface CdxHash {
  alg: "SHA-512" | "SHA-1";
  content: string;
}

export interface CdxComponent {
  type: "library" | "application";
  "bom-ref": string;
  group?: string;
  name: string;
  version?: string;
  description?: string;
  purl?: string;
  licenses?: { expression: string }[];
  hashes?: CdxHash[];
  properties?: CdxProperty[];
}

export interface CycloneDxBom {
  bomFormat: "CycloneDX";
  specVersion: "1.5";
  serialNumber: string;
  version: 1;
  metadata: {
    timestamp: string;
    tools: { components: { type: "application"; name: string; version: string }[] };
    component: CdxComponent;
    properties: CdxProperty[];
  };
  components: CdxComponent[];
}

export const TOOL_NAME = "secure-package-manager";

let toolVersion: string | undefined;
function ownVersion(): string {
  if (toolVersion === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
      toolVersion = typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      toolVersion = "unknown";
    }
  }
  return toolVersion;
}

/** purl of an npm package: the scope's `@` is percent-encoded (`pkg:npm/%40scope/name@1.0.0`). */
export function npmPurl(name: string, version: string): string {
  const slash = name.startsWith("@") ? name.indexOf("/") : -1;
  const path =
    slash > 0
      ? `${encodeURIComponent(name.slice(0, slash))}/${encodeURIComponent(name.slice(slash + 1))}`
      : encodeURIComponent(name);
  return `pkg:npm/${path}@${encodeURIComponent(version)}`;
}

/** `@scope/name` → { group: "@scope", name: "name" }; unscoped: no group. */
export function splitScope(name: string): { group?: string; name: string } {
  const slash = name.startsWith("@") ? name.indexOf("/") : -1;
  return slash > 0 ? { group: name.slice(0, slash), name: name.slice(slash + 1) } : { name };
}

interface PackageRow {
  id: number;
  name: string;
  version: string;
  status: string;
  reason_code: string | null;
  reason_message: string | null;
  licence: string | null;
  integrity: string | null;
  shasum: string | null;
  approved_by: string | null;
}

function componentOf(p: PackageRow): CdxComponent {
  const purl = npmPurl(p.name, p.version);
  const hashes: CdxHash[] = [];
  if (p.integrity) {
    try {
      const sha512 = hexOf(p.integrity, "sha512");
      if (sha512) hashes.push({ alg: "SHA-512", content: sha512 });
    } catch {
      // not an SRI value: no SHA-512 to state
    }
  }
  const sha1 = p.shasum && /^[0-9a-f]{40}$/i.test(p.shasum) ? p.shasum.toLowerCase() : null;
  if (sha1) hashes.push({ alg: "SHA-1", content: sha1 });
  const properties: CdxProperty[] = [{ name: "spm:status", value: p.status }];
  if (p.reason_code) properties.push({ name: "spm:reason_code", value: p.reason_code });
  if (p.reason_message) properties.push({ name: "spm:reason", value: p.reason_message });
  if (p.status === "approved" && p.approved_by) properties.push({ name: "spm:approved_by", value: p.approved_by });
  properties.push({ name: "spm:package_id", value: String(p.id) });
  return {
    type: "library",
    "bom-ref": purl,
    ...splitScope(p.name),
    version: p.version,
    purl,
    ...(p.licence ? { licenses: [{ expression: p.licence }] } : {}),
    ...(hashes.length > 0 ? { hashes } : {}),
    properties,
  };
}

/** The SBOM of request `requestId`, or null when there is no such request. */
export async function requestSbom(sql: Sql, requestId: number, now: Date = new Date()): Promise<CycloneDxBom | null> {
  const [request] = await sql.$queryRaw<
    { id: number; file_name: string | null; lockfile_sha256: string; lockfile_version: number; uploaded_by_name: string; created_at: Date }[]
  >`SELECT id, file_name, lockfile_sha256, lockfile_version, uploaded_by_name, created_at FROM request WHERE id = ${requestId}::int`;
  if (!request) return null;
  const rows = await sql.$queryRaw<PackageRow[]>`
    SELECT p.id, p.name, p.version, p.status::text AS status, p.reason_code, p.reason_message,
      p.results #>> '{licence,expression}' AS licence,
      p.results #>> '{download,integrity}' AS integrity,
      p.results #>> '{download,shasum}' AS shasum,
      p.results #>> '{approval,by}' AS approved_by
    FROM request_package rp
    JOIN package p ON p.id = rp.package_id
    WHERE rp.request_id = ${requestId}::int
    ORDER BY p.name, p.version`;
  return {
    bomFormat: "CycloneDX",
    specVersion: "1.5",
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: {
      timestamp: now.toISOString(),
      tools: { components: [{ type: "application", name: TOOL_NAME, version: ownVersion() }] },
      component: {
        type: "application",
        "bom-ref": `spm:request:${request.id}`,
        // The lockfile's own project name is not stored with the request; its file name is, when given.
        name: request.file_name ?? `request-${request.id}`,
        description: `packages of the lockfile uploaded as request ${request.id}`,
        properties: [
          { name: "spm:request_id", value: String(request.id) },
          { name: "spm:lockfile_sha256", value: request.lockfile_sha256 },
          { name: "spm:lockfile_version", value: String(request.lockfile_version) },
        ],
      },
      properties: [
        { name: "spm:uploaded_by", value: request.uploaded_by_name },
        { name: "spm:uploaded_at", value: request.created_at.toISOString() },
      ],
    },
    components: rows.map(componentOf),
  };
}
