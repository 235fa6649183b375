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
 * never cached. Tarball requests always check the version's row (one indexed read): a revocation
 * is never served from a stale cache.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
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
import { parseRegistryPath } from "../../src/registry/paths.ts";
import { distTagPins, namesWithAdvisories, packageRow, packageRows } from "../../src/registry/queries.ts";
import { notRequested, refusalOf, type Refusal } from "../../src/registry/refusal.ts";
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

export default async function registryRoutes(app: FastifyInstance, deps: AppDeps) {
  await app.register(npmRegistry, { ...deps, prefix: PREFIX });
}

async function npmRegistry(app: FastifyInstance, { db, config }: AppDeps) {
  const cache = new NameCache<PackumentEntry>();
  let store: ContentStore | null = null;
  const contentStore = () => (store ??= new ContentStore(config.STORAGE_DIR));

  // --- cache invalidation: one LISTEN connection for the process --------------------------------
  cache.enabled = false;
  if (config.DATABASE_URL) {
    const listener = new PgListener({
      url: config.DATABASE_URL,
      channel: REGISTRY_CHANNEL,
      log: app.log,
      onNotify: (name) => (name ? cache.invalidate(name) : cache.clear()),
      onConnect: () => {
        cache.clear();
        cache.enabled = true;
      },
      onDisconnect: () => {
        cache.enabled = false;
        cache.clear();
      },
    });
    await listener.start();
    app.addHook("onClose", async () => listener.close());
  } else {
    app.log.info("no DATABASE_URL for a LISTEN connection: registry packuments are not cached");
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
      const target = parseRegistryPath(path.slice(PREFIX.length + 1));
      if (target.kind === "invalid") return npmError(reply, 404, target.message);

      if (target.kind === "tarball") {
        const row = await packageRow(db, target.name, target.version);
        if (!row) return refuse(reply, notRequested(target.name, target.version));
        if (row.status !== "approved") return refuse(reply, refusalOf(target.name, row));
        const tarball = storedTarball(row.download);
        const file = tarball ? contentStore().path(tarball.storageKey) : null;
        const info = file ? await stat(file).catch(() => null) : null;
        if (!file || !info?.isFile()) {
          request.log.error({ name: target.name, version: target.version, key: tarball?.storageKey }, "approved version has no stored tarball");
          return npmError(reply, 500, `${target.name}@${target.version} is approved but its tarball is missing from the gate's store; tell an admin`);
        }
        return reply
          .header("content-length", info.size)
          .header("cache-control", "private, no-cache")
          .header("etag", `"${tarball!.storageKey.slice(0, 40)}"`)
          .type("application/octet-stream")
          .send(createReadStream(file));
      }

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
