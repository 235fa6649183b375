/**
 * npm's read protocol under /npm/: packuments of approved versions only, tarballs from the content
 * store (approved versions only; every other version is refused with its reason), ping, whoami and
 * the bulk advisory endpoint `npm audit` uses. Errors follow npm's convention `{ "error": "<text>" }`
 * (npm prints `<status> <statusText> - <METHOD> <url> - <error>`).
 *
 * Packuments are cached per name in this process (full and abbreviated, raw and gzipped, with an
 * ETag) and invalidated by NOTIFY on `spm_registry` received on one dedicated LISTEN connection;
 * the whole cache is dropped when that connection is re-established (notifications may have been
 * missed), nothing is cached while it is down, and entries expire after 60 s anyway (5 s when a
 * version of the name is in the pipeline, awaiting review or failed: those moves are not notified,
 * and the refusal texts in `policyRestrictions` would go stale). Names with nothing to serve are
 * never cached.
 *
 * Tarballs: whether `name@version` may be served (its status, store key and integrity) is cached the
 * same way, per version in the group of its name: the same NOTIFY that changes the packument (sent
 * in the transaction that approves a version or revokes an approval) forgets it, nothing is cached
 * while LISTEN is down, approved and rejected versions are kept 60 s at most, versions whose state
 * may move without a notification 5 s, unknown versions not at all. The bytes come from an LRU of
 * tarball bytes keyed by store key (REGISTRY_TARBALL_CACHE_MB; see src/registry/tarball-cache.ts),
 * loaded from the content store and checked against the recorded integrity before they are kept;
 * tarballs too large for it are streamed from the store through an integrity check.
 */
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { LRUCache } from "lru-cache";
import { advisoriesFor } from "../../src/advisories/store.ts";
import { matchAdvisory, VersionCompareError } from "../../src/advisories/match.ts";
import { PgListener } from "../../src/db/pg-listener.ts";
import { AppError } from "../../src/errors.ts";
import { REGISTRY_CHANNEL } from "../../src/queue/sql.ts";
import { bulkBodyProblem, toNpmAdvisory, type NpmBulkAdvisory } from "../../src/registry/audit.ts";
import { NameCache } from "../../src/registry/cache.ts";
import { acceptsGzip, encodeJson, etagMatches, PackumentEntry } from "../../src/registry/entry.ts";
import {
  ABBREVIATED_MEDIA_TYPE,
  hasVolatileVersions,
  packumentModel,
  packumentRefusal,
  storedTarball,
  versionDocument,
} from "../../src/registry/packument.ts";
import { parseRegistryPath, type RegistryPath } from "../../src/registry/paths.ts";
import { distTagPins, namesWithAdvisories, packageRow, packageRows } from "../../src/registry/queries.ts";
import { isInProgress, notRequested, refusalOf, type Refusal } from "../../src/registry/refusal.ts";
import { TarballCache, TarballIntegrityError, verifyingStream } from "../../src/registry/tarball-cache.ts";
import { ContentStore } from "../../src/store/content-store.ts";
import type { AppDeps } from "../app.ts";
import { isDatabaseDown } from "../plugins/errors.ts";

const gunzipAsync = promisify(gunzip);

const PREFIX = "/npm";
/** Cache lifetime of a packument (safety net behind NOTIFY). */
const TTL_MS = 60_000;
/** … when a refused version of the name may move without a notification (see hasVolatileVersions). */
const VOLATILE_TTL_MS = 5_000;
const MAX_AUDIT_BODY = 16 * 1024 * 1024;
const MAX_AUDIT_JSON = 128 * 1024 * 1024;
const AUDIT_CONCURRENCY = 8;
const MAX_PARSED_PATHS = 10_000;

/** Whether `name@version` may be downloaded, and where its bytes are. */
type TarballLookup =
  | { kind: "approved"; storageKey: string; integrity: string; etag: string }
  | { kind: "refused"; refusal: Refusal }
  /** approved, but the row records no stored tarball */
  | { kind: "unstored" }
  /** approved, but its stored bytes (or the row's record of them) fail the integrity check */
  | { kind: "corrupted" };

export default async function registryRoutes(app: FastifyInstance, deps: AppDeps) {
  await app.register(npmRegistry, { ...deps, prefix: PREFIX });
}

async function npmRegistry(app: FastifyInstance, { db, config }: AppDeps) {
  const cache = new NameCache<PackumentEntry>();
  const lookups = new NameCache<TarballLookup>({ maxEntries: 50_000 });
  const tarballs = new TarballCache({ maxBytes: config.REGISTRY_TARBALL_CACHE_MB * 1024 * 1024 });
  let store: ContentStore | null = null;
  const contentStore = () => (store ??= new ContentStore(config.STORAGE_DIR));

  // --- cache invalidation: one LISTEN connection for the process --------------------------------
  const caches = [cache, lookups];
  for (const c of caches) c.enabled = false;
  if (config.DATABASE_URL) {
    const listener = new PgListener({
      url: config.DATABASE_URL,
      channel: REGISTRY_CHANNEL,
      log: app.log,
      onNotify: (name) => {
        for (const c of caches) {
          if (name) c.invalidate(name);
          else c.clear();
        }
      },
      onConnect: () => {
        for (const c of caches) {
          c.clear();
          c.enabled = true;
        }
      },
      onDisconnect: () => {
        for (const c of caches) {
          c.enabled = false;
          c.clear();
        }
      },
    });
    await listener.start();
    app.addHook("onClose", async () => listener.close());
  } else {
    app.log.info("no DATABASE_URL for a LISTEN connection: registry packuments and version lookups are not cached");
  }

  // --- errors in npm's shape -----------------------------------------------------------------------
  const npmError = (reply: FastifyReply, status: number, message: string) =>
    reply.code(status).header("cache-control", "no-store").type("application/json").send({ error: message });
  const refuse = (reply: FastifyReply, r: Refusal) => npmError(reply, r.status, r.message);

  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isDatabaseDown(err)) {
      request.log.warn({ err }, "registry: database unavailable");
      return npmError(reply, 503, "the gate's database is not reachable; try again shortly");
    }
    if (err instanceof AppError && err.status < 500) return npmError(reply, err.status, err.message);
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return npmError(reply, err.statusCode, err.message);
    request.log.error({ err }, "registry request failed");
    return npmError(reply, 500, `internal error in the gate (request id ${request.id})`);
  });
  app.setNotFoundHandler((request, reply) => npmError(reply, 404, `not found: ${request.method} ${request.url.split("?")[0]}`));

  // --- auth ------------------------------------------------------------------------------------------
  const baseUrl = (request: FastifyRequest): string =>
    config.PUBLIC_URL ? config.PUBLIC_URL.replace(/\/+$/, "") : `${request.protocol}://${request.host}`;
  const authTokenKey = (request: FastifyRequest): string => {
    const u = new URL(baseUrl(request));
    return `//${u.host}${u.pathname.replace(/\/+$/, "")}${PREFIX}/:_authToken`;
  };
  /** Verifies the Bearer token; on failure answers 401 and returns false. */
  const requireToken = async (request: FastifyRequest, reply: FastifyReply): Promise<boolean> => {
    try {
      await app.authenticate(request, reply);
      return true;
    } catch (err) {
      const hasToken = /^Bearer\s+\S/i.test(request.headers.authorization ?? "");
      const what =
        err instanceof AppError && err.code === "token_expired"
          ? "the token has expired: run `spm login` again and"
          : hasToken
            ? "the token is not valid here: npm login is not supported;"
            : "authentication required: npm login is not supported;";
      // npm turns a 401 that carries WWW-Authenticate into "your authentication token seems to be
      // invalid … npm login" and drops our text; for the npm CLI leave the header out so that npm
      // prints the body's error (how to set the token). Every other client gets the standard header.
      if (!/^npm\//.test(request.headers["user-agent"] ?? "")) reply.header("www-authenticate", `Bearer realm="spm"`);
      await npmError(reply, 401, `${what} set ${authTokenKey(request)}=<token from spm login>`);
      return false;
    }
  };
  app.addHook("onRequest", async (request, reply) => {
    const url = request.routeOptions.url;
    if (url === `${PREFIX}/-/ping` || url === `${PREFIX}/-/whoami`) return; // ping is open; whoami checks itself
    if (config.REGISTRY_AUTH === "none") return;
    if (!(await requireToken(request, reply))) return reply;
  });

  // --- bodies: JSON, possibly gzip-encoded (npm audit gzips its bulk request) -------------------------
  app.removeContentTypeParser(["application/json"]);
  app.addContentTypeParser(["application/json", "application/octet-stream"], { parseAs: "buffer", bodyLimit: MAX_AUDIT_BODY }, (_req, body, done) =>
    done(null, body),
  );
  const jsonBody = async (request: FastifyRequest): Promise<unknown> => {
    if (!Buffer.isBuffer(request.body)) throw new AppError("bad_request", "expected a JSON body");
    let buf: Buffer = request.body;
    const encoding = String(request.headers["content-encoding"] ?? "identity").trim().toLowerCase();
    if (encoding === "gzip" || encoding === "x-gzip") {
      try {
        buf = await gunzipAsync(buf, { maxOutputLength: MAX_AUDIT_JSON });
      } catch (err) {
        throw new AppError("bad_request", `the body is not valid gzip: ${(err as Error).message}`);
      }
    } else if (encoding !== "identity") {
      throw new AppError("unsupported_media_type", `content-encoding ${encoding} is not supported (gzip or identity)`);
    }
    try {
      return JSON.parse(buf.toString("utf8")) as unknown;
    } catch {
      throw new AppError("bad_request", "the body is not valid JSON");
    }
  };

  // --- small endpoints ------------------------------------------------------------------------------
  const tags = ["npm registry"];
  /** npm's error convention: the CLI prints `error` to the person. */
  const npmErrorBody = { type: "object", properties: { error: { type: "string" } } } as const;
  app.get(
    "/-/ping",
    { logLevel: "warn", schema: { tags, summary: "npm ping (no token needed)", response: { 200: { type: "object" } } } },
    async () => ({}),
  );

  app.get(
    "/-/whoami",
    {
      schema: {
        tags,
        summary: "npm whoami: the token's user",
        security: [{ bearer: [] }],
        response: { 200: { type: "object", properties: { username: { type: "string" } } }, 401: npmErrorBody },
      },
    },
    async (request, reply) => {
    if (!(await requireToken(request, reply))) return reply;
    return { username: request.user.name };
    },
  );

  app.post(
    "/-/npm/v1/security/audits/quick",
    { schema: { tags, summary: "Not supported: npm 7+ uses the bulk advisory endpoint", response: { 404: npmErrorBody } } },
    async (_request, reply) => npmError(reply, 404, "quick audits are not supported: use npm 7 or later (bulk advisories)"),
  );

  app.post(
    "/-/npm/v1/security/advisories/bulk",
    {
      bodyLimit: MAX_AUDIT_BODY,
      schema: {
        tags,
        summary: "npm audit: advisories affecting the given versions, from the imported OSV data",
        description: 'Body `{ "<name>": ["<version>", …] }` (may be gzip-encoded).',
        security: [{ bearer: [] }],
        response: {
          200: {
            type: "object",
            description: "`{ <name>: [advisory] }` for the names with advisories affecting a requested version",
            additionalProperties: {
              type: "array",
              items: {
                type: "object",
                additionalProperties: true,
                properties: {
                  id: { type: "string" },
                  url: { type: "string" },
                  title: { type: "string" },
                  severity: { type: "string" },
                  vulnerable_versions: { type: "string" },
                  cwe: { type: "array", items: { type: "string" } },
                  cvss: { type: "object", additionalProperties: true },
                },
              },
            },
          },
          400: npmErrorBody,
          401: npmErrorBody,
        },
      },
    },
    async (request) => {
      const body = await jsonBody(request);
      const problem = bulkBodyProblem(body);
      if (problem) throw new AppError("bad_request", problem);
      const wanted = body as Record<string, string[]>;
      const names = await namesWithAdvisories(db, Object.keys(wanted));
      const out: Record<string, NpmBulkAdvisory[]> = {};
      let next = 0;
      const work = async () => {
        while (next < names.length) {
          const name = names[next++]!;
          const versions = [...new Set(wanted[name] ?? [])];
          const found: NpmBulkAdvisory[] = [];
          for (const adv of await advisoriesFor(db, name)) {
            const hits = versions.some((v) => {
              try {
                return matchAdvisory(name, v, adv).affected;
              } catch (err) {
                if (err instanceof VersionCompareError) return true; // cannot tell: report it (fail closed)
                throw err;
              }
            });
            if (!hits) continue;
            const npmAdv = toNpmAdvisory(name, adv);
            if (npmAdv) found.push(npmAdv);
          }
          if (found.length > 0) out[name] = found;
        }
      };
      await Promise.all(Array.from({ length: Math.min(AUDIT_CONCURRENCY, names.length) }, work));
      return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
    },
  );

  // --- packuments, version documents and tarballs -----------------------------------------------------
  const loadEntry = async (name: string) => {
    const [rows, pins] = await Promise.all([packageRows(db, name), distTagPins(db, name)]);
    const model = packumentModel(name, rows, pins);
    const ttlMs = model.versions.length === 0 ? 0 : hasVolatileVersions(model) ? VOLATILE_TTL_MS : TTL_MS;
    return { value: new PackumentEntry(model), ttlMs };
  };

  const loadLookup = async (name: string, version: string): Promise<{ value: TarballLookup; ttlMs: number }> => {
    const row = await packageRow(db, name, version);
    if (!row) return { value: { kind: "refused", refusal: notRequested(name, version) }, ttlMs: 0 };
    if (row.status !== "approved") {
      const volatile = isInProgress(row.status) || row.status === "pending_approval" || row.status === "failed";
      return { value: { kind: "refused", refusal: refusalOf(name, row) }, ttlMs: volatile ? VOLATILE_TTL_MS : TTL_MS };
    }
    const stored = storedTarball(row.download);
    if (!stored) return { value: { kind: "unstored" }, ttlMs: 0 };
    // cached bytes are found by store key and vouched for by the integrity: the two must agree
    if (ContentStore.keyOf(stored.integrity) !== stored.storageKey) return { value: { kind: "corrupted" }, ttlMs: 0 };
    const etag = `"${stored.storageKey.slice(0, 40)}"`;
    return { value: { kind: "approved", storageKey: stored.storageKey, integrity: stored.integrity, etag }, ttlMs: TTL_MS };
  };

  const tarballHeaders = (reply: FastifyReply, etag: string) =>
    reply.header("cache-control", "private, no-cache").header("etag", etag).type("application/octet-stream");

  const tarballMissing = (request: FastifyRequest, reply: FastifyReply, name: string, version: string, key: string | null) => {
    request.log.error({ name, version, key }, "approved version has no stored tarball");
    return npmError(reply, 500, `${name}@${version} is approved but its tarball is missing from the gate's store; tell an admin`);
  };

  const tarballCorrupted = (request: FastifyRequest, reply: FastifyReply, name: string, version: string, err: Error | null) => {
    request.log.error({ err, name, version }, "stored tarball does not match its recorded integrity; refused");
    return npmError(
      reply,
      500,
      `${name}@${version} is approved but its stored tarball does not match its recorded integrity (the gate's store is corrupted); not served; tell an admin`,
    );
  };

  const sendTarball = async (request: FastifyRequest, reply: FastifyReply, name: string, version: string) => {
    const found = await lookups.get(`${name}@${version}`, () => loadLookup(name, version), name);
    if (found.kind === "refused") return refuse(reply, found.refusal);
    if (found.kind === "unstored") return tarballMissing(request, reply, name, version, null);
    if (found.kind === "corrupted") return tarballCorrupted(request, reply, name, version, null);
    const { storageKey, integrity, etag } = found;
    // the ETag names the content: a client holding it has these very bytes
    if (etagMatches(request.headers["if-none-match"], etag)) return tarballHeaders(reply, etag).code(304).send();
    let bytes = tarballs.get(storageKey);
    if (!bytes) {
      const file = contentStore().path(storageKey);
      const info = await stat(file).catch(() => null);
      if (!info?.isFile()) return tarballMissing(request, reply, name, version, storageKey);
      if (!tarballs.fits(info.size)) {
        const verified = createReadStream(file).pipe(
          verifyingStream(storageKey, (err) => request.log.error({ err, name, version, key: storageKey }, "stored tarball is corrupted; response cut short")),
        );
        return tarballHeaders(reply, etag).header("content-length", info.size).send(verified);
      }
      try {
        bytes = await tarballs.load(storageKey, integrity, () => readFile(file));
      } catch (err) {
        if (err instanceof TarballIntegrityError) return tarballCorrupted(request, reply, name, version, err);
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return tarballMissing(request, reply, name, version, storageKey);
        throw err;
      }
    }
    return tarballHeaders(reply, etag).header("content-length", bytes.length).send(bytes);
  };

  /** parseRegistryPath, remembered for the paths seen last (an install asks for the same ones again and again). */
  const parsed = new LRUCache<string, RegistryPath>({ max: MAX_PARSED_PATHS });
  const parsePath = (rest: string): RegistryPath => {
    let target = parsed.get(rest);
    if (target === undefined) {
      target = parseRegistryPath(rest);
      parsed.set(rest, target);
    }
    return target;
  };

  const sendDocument = (request: FastifyRequest, reply: FastifyReply, doc: ReturnType<PackumentEntry["document"]>) => {
    reply
      .header("etag", doc.etag)
      .header("vary", "accept, accept-encoding")
      .header("cache-control", "private, no-cache")
      .type(doc.contentType);
    if (etagMatches(request.headers["if-none-match"], doc.etag)) return reply.code(304).send();
    if (acceptsGzip(request.headers["accept-encoding"])) return reply.header("content-encoding", "gzip").send(doc.gzip);
    return reply.send(doc.raw);
  };

  app.get(
    "/*",
    {
      schema: {
        tags,
        summary: "Packument (`/npm/<name>`), version document (`/npm/<name>/<version|tag>`) or tarball (`/npm/<name>/-/<file>.tgz`)",
        description:
          "Scoped names as `@scope%2fname` or `@scope/name`. Only approved versions are listed and served; others are refused with `{ error }` " +
          "(403 known but not approved, 404 never requested). `Accept: application/vnd.npm.install-v1+json` gives the abbreviated packument.",
        security: [{ bearer: [] }],
        response: {
          200: { description: "packument or version document (JSON), or the tarball (application/octet-stream)", type: "object", additionalProperties: true },
          304: { description: "not modified (ETag)", type: "null" },
          401: npmErrorBody,
          403: npmErrorBody,
          404: npmErrorBody,
          500: npmErrorBody,
        },
      },
    },
    async (request, reply) => {
      const path = request.url.split("?")[0]!;
      const target = parsePath(path.slice(PREFIX.length + 1));
      if (target.kind === "invalid") return npmError(reply, 404, target.message);

      if (target.kind === "tarball") return sendTarball(request, reply, target.name, target.version);

      const entry = await cache.get(target.name, () => loadEntry(target.name));
      const model = entry.model;
      const refusal = packumentRefusal(model);
      if (refusal) return refuse(reply, refusal);

      if (target.kind === "packument") {
        const accept = String(request.headers.accept ?? "");
        return sendDocument(request, reply, entry.document(baseUrl(request), accept.includes(ABBREVIATED_MEDIA_TYPE)));
      }

      // one version document: by version, else by dist-tag
      const version = model.distTags[target.spec] ?? target.spec;
      const served = model.versions.find((v) => v.version === version);
      if (served) return sendDocument(request, reply, encodeJson(versionDocument(model, served, baseUrl(request)), "application/json"));
      const known = model.refused.find((r) => r.version === version);
      if (known) return refuse(reply, refusalOf(target.name, known));
      return refuse(reply, notRequested(target.name, version));
    },
  );
}
