/**
 * Stage `downloading`: fetch the version's tarball from the upstream registry's own host, stream it
 * into the content store while hashing, and verify it against the lockfile's integrity AND the
 * packument's dist.integrity. Any mismatch rejects the package (`integrity_mismatch`).
 */
import { Readable } from "node:stream";
import ssri from "ssri";
import { ContentStore, TooLargeError, type StoredBlob } from "../store/content-store.ts";
import { strongest } from "../store/sri.ts";
import type { ClaimedRow } from "../queue/sql.ts";
import type { PipelineContext, UpstreamFacts } from "./context.ts";
import { permanent, type StepOutcome } from "./step.ts";
import { upstreamFacts, versionManifest } from "./upstream-facts.ts";

interface ExpectedIntegrity {
  source: string;
  integrity: string;
}

export async function downloadStep(row: ClaimedRow, ctx: PipelineContext): Promise<StepOutcome> {
  const facts = await currentFacts(row, ctx);
  const expected = await expectedIntegrities(row, ctx, facts);
  if (expected.length === 0) {
    throw permanent("tarball_corrupt", `${row.name}@${row.version}: neither the lockfile nor the packument states an integrity; cannot verify`);
  }
  // Already stored (another request, or a retry)? Verify by key and skip the fetch.
  const knownKey = expected.map((e) => ContentStore.keyOf(e.integrity)).find((k) => k !== null) ?? null;
  if (knownKey) {
    // Re-hash the stored bytes: verifies the store entry and yields the sha1 for dist.shasum.
    const stored = await ctx.store.rehash(knownKey);
    if (stored && !firstMismatch(expected, stored.integrity, stored.sha1)) return advance(stored, expected, facts, true);
  }
  const url = tarballUrl(row, ctx, facts);
  const res = await ctx.registry.request(url, { accept: "application/octet-stream" }, ctx.signal);
  if (res.status === 404 || !res.body) {
    await res.body?.cancel();
    throw permanent("version_not_found", `tarball of ${row.name}@${row.version} not found at ${url}`);
  }
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > ctx.config.MAX_TARBALL_BYTES) {
    await res.body.cancel();
    throw permanent("tarball_too_large", `tarball is ${declared} bytes, over MAX_TARBALL_BYTES (${ctx.config.MAX_TARBALL_BYTES})`);
  }
  let mismatch: string | null = null;
  let blob;
  try {
    const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
    ({ blob } = await ctx.store.write(body, ctx.config.MAX_TARBALL_BYTES, (b) => {
      mismatch = firstMismatch(expected, b.integrity, b.sha1);
      return mismatch === null;
    }));
  } catch (err) {
    if (err instanceof TooLargeError) {
      throw permanent("tarball_too_large", `tarball is over MAX_TARBALL_BYTES (${ctx.config.MAX_TARBALL_BYTES} bytes)`);
    }
    throw ctx.registry.bodyError(url, `the tarball of ${row.name}@${row.version}`, err, ctx.signal);
  }
  if (mismatch) {
    return {
      kind: "reject",
      code: "integrity_mismatch",
      // Whole SRI strings: hashes often share a prefix, and a shortened pair can look identical.
      message: `${row.name}@${row.version}: the downloaded bytes are ${blob.integrity}, which does not match ${mismatch}`,
      patch: { download: { integrity: blob.integrity, size: blob.size, url: url.toString(), expected } },
    };
  }
  return advance(blob, expected, facts, false);
}

function advance(
  blob: StoredBlob,
  expected: ExpectedIntegrity[],
  facts: UpstreamFacts,
  reused: boolean,
): StepOutcome {
  const weak = expected.every((e) => strongest(e.integrity) === "sha1");
  return {
    kind: "advance",
    reason: reused ? "already in the store; integrity verified" : "downloaded; integrity verified",
    patch: {
      upstream: facts,
      download: {
        storageKey: blob.key,
        size: blob.size,
        integrity: blob.integrity,
        shasum: blob.sha1,
        verifiedAgainst: expected.map((e) => e.source),
        weakIntegrity: weak,
        reused,
      },
    },
    details: { size: blob.size, weakIntegrity: weak },
  };
}

/** The first expected integrity that the computed digests contradict, described; null when all agree. */
function firstMismatch(expected: ExpectedIntegrity[], sha512: string, sha1Hex: string): string | null {
  const computed = ssri.parse(`${sha512} sha1-${Buffer.from(sha1Hex, "hex").toString("base64")}`, { single: false });
  for (const e of expected) {
    // match() compares the strongest algorithm both sides have; no common algorithm counts as a mismatch.
    if (!computed.match(ssri.parse(e.integrity, { single: false }))) return `the ${e.source} integrity ${e.integrity}`;
  }
  return null;
}

async function currentFacts(row: ClaimedRow, ctx: PipelineContext): Promise<UpstreamFacts> {
  const known = row.results.upstream as UpstreamFacts | undefined;
  if (known?.tarball) return known;
  const packument = await ctx.registry.packument(row.name, ctx.signal);
  return upstreamFacts(packument, versionManifest(packument, row.name, row.version), row.version);
}

async function expectedIntegrities(row: ClaimedRow, ctx: PipelineContext, facts: UpstreamFacts): Promise<ExpectedIntegrity[]> {
  const links = await ctx.db.requestPackage.findMany({
    where: { packageId: row.id, integrity: { not: null } },
    select: { integrity: true, requestId: true },
    distinct: ["integrity"],
  });
  const expected: ExpectedIntegrity[] = links.map((l) => ({ source: `lockfile (request ${l.requestId})`, integrity: l.integrity! }));
  if (facts.integrity) expected.push({ source: "packument dist.integrity", integrity: facts.integrity });
  else if (facts.shasum && /^[0-9a-f]{40}$/i.test(facts.shasum)) {
    expected.push({ source: "packument dist.shasum", integrity: `sha1-${Buffer.from(facts.shasum, "hex").toString("base64")}` });
  }
  return expected;
}

/**
 * Where to fetch the tarball: the packument's dist.tarball, but only on the upstream registry's own
 * origin. A packument pointing elsewhere is refused, never followed.
 */
function tarballUrl(row: ClaimedRow, ctx: PipelineContext, facts: UpstreamFacts): URL {
  const registry = ctx.registry.registry;
  const basename = row.name.startsWith("@") ? row.name.split("/")[1]! : row.name;
  const fallback = new URL(`${row.name}/-/${basename}-${row.version}.tgz`, registry);
  if (!facts.tarball) return fallback;
  let url: URL;
  try {
    url = new URL(facts.tarball);
  } catch {
    throw permanent("tarball_url_rejected", `dist.tarball of ${row.name}@${row.version} is not a URL: ${facts.tarball}`);
  }
  if (url.origin !== registry.origin) {
    throw permanent(
      "tarball_url_rejected",
      `dist.tarball of ${row.name}@${row.version} points to ${url.origin}, not the upstream registry ${registry.origin}; refusing to fetch it`,
    );
  }
  return url;
}
