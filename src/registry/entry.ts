/**
 * One cached name: its packument model plus the serialised documents built from it, each ready to
 * send as is (raw and gzipped bytes, ETag). Documents depend on the base URL of the tarball links
 * (PUBLIC_URL, else the request's origin), so they are built per base, lazily, and kept.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { ABBREVIATED_MEDIA_TYPE, renderPackument, type PackumentModel } from "./packument.ts";

export interface EncodedDocument {
  contentType: string;
  raw: Buffer;
  gzip: Buffer;
  /** Weak: the same validator covers the identity and gzip representations. */
  etag: string;
}

const MAX_BASES = 8;

export function encodeJson(value: unknown, contentType: string): EncodedDocument {
  const raw = Buffer.from(JSON.stringify(value), "utf8");
  const etag = `W/"${createHash("sha256").update(raw).digest("base64url").slice(0, 32)}"`;
  return { contentType, raw, gzip: gzipSync(raw), etag };
}

export class PackumentEntry {
  private readonly documents = new Map<string, EncodedDocument>();

  constructor(readonly model: PackumentModel) {}

  document(base: string, abbreviated: boolean): EncodedDocument {
    const key = `${abbreviated ? "a" : "f"} ${base}`;
    let doc = this.documents.get(key);
    if (!doc) {
      if (this.documents.size >= MAX_BASES * 2) this.documents.clear();
      doc = encodeJson(renderPackument(this.model, base, abbreviated), abbreviated ? ABBREVIATED_MEDIA_TYPE : "application/json");
      this.documents.set(key, doc);
    }
    return doc;
  }
}

/** Does an If-None-Match header match `etag` (weak comparison, as RFC 9110 prescribes for it)? */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  const opaque = (t: string) => t.trim().replace(/^W\//, "");
  const mine = opaque(etag);
  return ifNoneMatch.split(",").some((t) => t.trim() === "*" || opaque(t) === mine);
}

/** Whether the client accepts gzip (an explicit `q=0` refuses it). */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (!acceptEncoding) return false;
  for (const part of acceptEncoding.split(",")) {
    const [coding, ...params] = part.trim().split(";");
    if (coding?.trim().toLowerCase() !== "gzip" && coding?.trim() !== "*") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}
