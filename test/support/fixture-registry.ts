/**
 * A fixture upstream npm registry for tests: a plain `node:http` server on 127.0.0.1 (random port)
 * that serves packuments and tarballs the way registry.npmjs.org does, plus injectable faults.
 *
 *   GET /<name>                       full packument (application/json)
 *   GET /@scope%2fname, /@scope/name  same, scoped
 *     with `Accept: application/vnd.npm.install-v1+json` → abbreviated ("corgi") packument
 *   GET /<name>/-/<basename>-<v>.tgz  tarball (application/octet-stream), basename = part after the scope
 *   unknown package / tarball         404 {"error":"Not found"}
 *
 * Tarballs are built once, at addPackage time, with `packageTarball` from ./tar-builder.ts, so the
 * bytes are deterministic and `tarballBytes` / `integrity` describe exactly what is served.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import semver from "semver";
import ssri from "ssri";
import { packageTarball } from "./tar-builder.ts";

export interface FixtureVersion {
  version: string;
  /** string | {type} | undefined — put into the version manifest (and package.json) as given. */
  license?: unknown;
  /** Legacy array form, e.g. `[{ type: "MIT" }]`. */
  licenses?: unknown;
  /** Extra fields merged into package.json AND the packument version (e.g. scripts, dependencies). */
  manifest?: Record<string, unknown>;
  /** Extra files in the tarball under package/. A "package.json" key replaces the generated one. */
  files?: Record<string, string | Buffer>;
  /** Override the tarball bytes entirely (hostile cases). */
  tarball?: Buffer;
  /** Packument time[version]; default: 30 days ago. */
  publishedAt?: Date;
  /** Override dist.integrity in the packument (mismatch cases). */
  integrity?: string;
  /** Override dist.tarball (e.g. an attacker host). */
  tarballUrl?: string;
  /** Only dist.shasum (sha1) in the packument — old packages. */
  omitIntegrity?: boolean;
}

export type Fault =
  /** Answer that HTTP status `times` times (default forever), then normal. */
  | { kind: "status"; status: number; times?: number }
  /** Destroy the socket without answering. */
  | { kind: "reset"; times?: number }
  /** Wait before answering (normally). */
  | { kind: "delay"; ms: number; times?: number }
  /** Slow-loris body: correct headers, then the body at about `bytesPerSecond`. */
  | { kind: "slowBody"; bytesPerSecond: number; times?: number }
  /** Content-Length of the full body but only `bytes` bytes, then the socket is ended. */
  | { kind: "truncate"; bytes: number; times?: number };

export type FaultTarget = { name?: string; kind?: "packument" | "tarball" };

export interface FixtureRequest {
  method: string;
  url: string;
  at: number;
}

export interface FixtureRegistry {
  /** e.g. http://127.0.0.1:PORT/ (trailing slash). */
  url: string;
  /** Scoped names work (@scope/name). Calling it again for a known name adds/replaces versions. */
  addPackage(name: string, versions: FixtureVersion[]): void;
  removePackage(name: string): void;
  /**
   * Set (or, with null, clear) the fault for a target. An omitted name/kind matches any.
   * The most specific matching fault applies: name+kind, then name, then kind, then catch-all.
   */
  setFault(target: FaultTarget, fault: Fault | null): void;
  /** Every request received (before faults apply), in order. */
  requests: FixtureRequest[];
  /** The tarball bytes served for (name, version). Throws if unknown. */
  tarballBytes(name: string, version: string): Buffer;
  /** sha512 SRI of the served bytes (not of any `integrity` override). Throws if unknown. */
  integrity(name: string, version: string): string;
  close(): Promise<void>;
}

interface StoredVersion {
  fixture: FixtureVersion;
  /** The version manifest as published (package.json fields, without dist). */
  manifest: Record<string, unknown>;
  /** What the registry derives for abbreviated documents' hasInstallScript. */
  installScript: boolean;
  bytes: Buffer;
  sha512: string;
  sha1: string;
  publishedAt: Date;
}

interface StoredPackage {
  name: string;
  versions: Map<string, StoredVersion>;
}

type ResourceKind = "packument" | "tarball";

const DAY_MS = 24 * 60 * 60 * 1000;
const ABBREVIATED = "application/vnd.npm.install-v1+json";
/** Fields the real registry keeps in abbreviated ("corgi") version documents. */
const ABBREVIATED_FIELDS = [
  "name",
  "version",
  "deprecated",
  "dependencies",
  "optionalDependencies",
  "devDependencies",
  "bundleDependencies",
  "peerDependencies",
  "peerDependenciesMeta",
  "bin",
  "directories",
  "engines",
  "cpu",
  "os",
  "funding",
  "_hasShrinkwrap",
  "hasInstallScript",
] as const;

function basenameOf(name: string): string {
  return name.startsWith("@") ? name.slice(name.indexOf("/") + 1) : name;
}

function isValidName(name: string): boolean {
  return /^(@[^/@\s]+\/)?[^/@\s][^/\s]*$/.test(name);
}

function hasInstallScript(manifest: Record<string, unknown>, files: Record<string, string | Buffer>): boolean {
  const scripts = manifest.scripts;
  const s = scripts !== null && typeof scripts === "object" ? (scripts as Record<string, unknown>) : {};
  if (["preinstall", "install", "postinstall"].some((k) => typeof s[k] === "string")) return true;
  // npm implies `node-gyp rebuild` for packages with a binding.gyp and no install/preinstall script.
  return Object.hasOwn(files, "binding.gyp");
}

function faultKey(target: FaultTarget): string {
  return `${target.name ?? "*"}\0${target.kind ?? "*"}`;
}

export async function startFixtureRegistry(): Promise<FixtureRegistry> {
  const packages = new Map<string, StoredPackage>();
  const faults = new Map<string, Fault>();
  const requests: FixtureRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  let url = "";

  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  /** Finds the applicable fault and consumes one use of it. */
  const takeFault = (name: string | undefined, kind: ResourceKind): Fault | undefined => {
    const keys = name === undefined ? [faultKey({ kind }), faultKey({})] : [faultKey({ name, kind }), faultKey({ name }), faultKey({ kind }), faultKey({})];
    for (const key of keys) {
      const fault = faults.get(key);
      if (fault === undefined) continue;
      if (fault.times !== undefined) {
        if (fault.times <= 1) faults.delete(key);
        else faults.set(key, { ...fault, times: fault.times - 1 });
        if (fault.times <= 0) continue; // `times: 0` means "not at all"
      }
      return fault;
    }
    return undefined;
  };

  const stored = (name: string, version: string): StoredVersion => {
    const v = packages.get(name)?.versions.get(version);
    if (v === undefined) throw new Error(`fixture registry: unknown ${name}@${version}`);
    return v;
  };

  const tarballPath = (name: string, version: string): string => `${name}/-/${basenameOf(name)}-${version}.tgz`;

  const versionDocument = (pkg: StoredPackage, v: StoredVersion): Record<string, unknown> => {
    const dist: Record<string, unknown> = {
      tarball: v.fixture.tarballUrl ?? `${url}${tarballPath(pkg.name, v.fixture.version)}`,
      shasum: v.sha1,
    };
    if (!v.fixture.omitIntegrity) dist.integrity = v.fixture.integrity ?? v.sha512;
    return { _id: `${pkg.name}@${v.fixture.version}`, ...v.manifest, dist };
  };

  const latestOf = (pkg: StoredPackage): string | undefined => {
    const all = [...pkg.versions.keys()].filter((x) => semver.valid(x) !== null);
    const stable = all.filter((x) => semver.prerelease(x) === null);
    const pool = stable.length > 0 ? stable : all;
    return pool.sort(semver.rcompare)[0] ?? [...pkg.versions.keys()].at(-1);
  };

  const packument = (pkg: StoredPackage, abbreviated: boolean): Record<string, unknown> => {
    const latest = latestOf(pkg);
    const distTags: Record<string, string> = latest === undefined ? {} : { latest };
    const dates = [...pkg.versions.values()].map((v) => v.publishedAt.getTime());
    const created = new Date(dates.length > 0 ? Math.min(...dates) : Date.now()).toISOString();
    const modified = new Date(dates.length > 0 ? Math.max(...dates) : Date.now()).toISOString();
    const versions: Record<string, unknown> = {};
    for (const [ver, v] of pkg.versions) {
      const doc = versionDocument(pkg, v);
      if (abbreviated) {
        const small: Record<string, unknown> = {};
        for (const field of ABBREVIATED_FIELDS) if (doc[field] !== undefined) small[field] = doc[field];
        if (small.hasInstallScript === undefined && v.installScript) small.hasInstallScript = true;
        small.dist = doc.dist;
        versions[ver] = small;
      } else {
        versions[ver] = doc;
      }
    }
    if (abbreviated) return { name: pkg.name, modified, "dist-tags": distTags, versions };
    const time: Record<string, string> = { created, modified };
    for (const [ver, v] of pkg.versions) time[ver] = v.publishedAt.toISOString();
    const doc: Record<string, unknown> = { _id: pkg.name, name: pkg.name, "dist-tags": distTags, versions, time };
    const latestLicense = latest === undefined ? undefined : pkg.versions.get(latest)?.manifest.license;
    if (latestLicense !== undefined) doc.license = latestLicense;
    return doc;
  };

  /** Sends `body` honouring a body-level fault (slowBody, truncate). */
  const send = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    contentType: string,
    body: Buffer,
    fault: Fault | undefined,
  ): void => {
    res.writeHead(status, { "Content-Type": contentType, "Content-Length": String(body.length) });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    if (fault?.kind === "truncate") {
      const part = body.subarray(0, Math.max(0, Math.min(fault.bytes, body.length)));
      res.write(part, () => res.socket?.end());
      // also make sure the socket goes even when nothing was written
      if (part.length === 0) res.socket?.end();
      return;
    }
    if (fault?.kind === "slowBody") {
      const tickMs = 100;
      const chunk = Math.max(1, Math.floor((fault.bytesPerSecond * tickMs) / 1000));
      const interval = Math.max(1, Math.round((chunk * 1000) / Math.max(fault.bytesPerSecond, 1e-9)));
      let offset = 0;
      const step = (): void => {
        if (res.destroyed || res.writableEnded) return;
        const next = body.subarray(offset, offset + chunk);
        offset += next.length;
        if (offset >= body.length) {
          res.end(next);
          return;
        }
        res.write(next);
        later(interval, step);
      };
      step();
      return;
    }
    res.end(body);
  };

  const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), "utf8");

  const route = (req: IncomingMessage): { kind: ResourceKind; name: string | undefined; fileName?: string } => {
    const rawPath = (req.url ?? "/").split("?")[0] ?? "/";
    const sep = rawPath.indexOf("/-/");
    const kind: ResourceKind = sep >= 0 ? "tarball" : "packument";
    const rawName = (sep >= 0 ? rawPath.slice(0, sep) : rawPath).replace(/^\/+/, "").replace(/\/+$/, "");
    let name: string | undefined;
    try {
      name = decodeURIComponent(rawName);
    } catch {
      name = undefined;
    }
    if (name !== undefined && !isValidName(name)) name = undefined;
    if (kind === "tarball") {
      let fileName: string | undefined;
      try {
        fileName = decodeURIComponent(rawPath.slice(sep + 3));
      } catch {
        fileName = undefined;
      }
      return { kind, name, fileName: fileName ?? "" };
    }
    return { kind, name };
  };

  const answer = (req: IncomingMessage, res: ServerResponse, target: ReturnType<typeof route>, bodyFault: Fault | undefined): void => {
    const notFound = (): void => send(req, res, 404, "application/json", json({ error: "Not found" }), bodyFault);
    const pkg = target.name === undefined ? undefined : packages.get(target.name);
    if (pkg === undefined) return notFound();
    if (target.kind === "packument") {
      const accept = String(req.headers.accept ?? "");
      const abbreviated = accept.includes(ABBREVIATED);
      // The real registry labels abbreviated documents with their own media type.
      send(req, res, 200, abbreviated ? ABBREVIATED : "application/json", json(packument(pkg, abbreviated)), bodyFault);
      return;
    }
    const base = basenameOf(pkg.name);
    for (const [ver, v] of pkg.versions) {
      if (target.fileName === `${base}-${ver}.tgz`) {
        send(req, res, 200, "application/octet-stream", v.bytes, bodyFault);
        return;
      }
    }
    notFound();
  };

  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", at: Date.now() });
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(req, res, 405, "application/json", json({ error: "Method not allowed" }), undefined);
      return;
    }
    const target = route(req);
    const fault = takeFault(target.name, target.kind);
    switch (fault?.kind) {
      case "status":
        send(req, res, fault.status, "application/json", json({ error: `fixture fault: HTTP ${fault.status}` }), undefined);
        return;
      case "reset":
        req.socket.destroy();
        return;
      case "delay":
        later(fault.ms, () => {
          if (!res.destroyed && !req.socket.destroyed) answer(req, res, target, undefined);
        });
        return;
      default:
        answer(req, res, target, fault);
    }
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}/`;

  return {
    url,
    requests,

    addPackage(name, versions) {
      if (!isValidName(name)) throw new Error(`fixture registry: invalid package name ${JSON.stringify(name)}`);
      const pkg = packages.get(name) ?? { name, versions: new Map<string, StoredVersion>() };
      const defaultDate = new Date(Date.now() - 30 * DAY_MS);
      for (const fixture of versions) {
        const files = fixture.files ?? {};
        const manifest: Record<string, unknown> = { name, version: fixture.version };
        if (fixture.license !== undefined) manifest.license = fixture.license;
        if (fixture.licenses !== undefined) manifest.licenses = fixture.licenses;
        Object.assign(manifest, fixture.manifest ?? {});
        const bytes =
          fixture.tarball ?? packageTarball(Object.hasOwn(files, "package.json") ? null : manifest, files);
        pkg.versions.set(fixture.version, {
          fixture,
          manifest,
          installScript: hasInstallScript(manifest, files),
          bytes,
          sha512: ssri.fromData(bytes, { algorithms: ["sha512"] }).toString(),
          sha1: createHash("sha1").update(bytes).digest("hex"),
          publishedAt: fixture.publishedAt ?? defaultDate,
        });
      }
      packages.set(name, pkg);
    },

    removePackage(name) {
      packages.delete(name);
    },

    setFault(target, fault) {
      const key = faultKey(target);
      if (fault === null) faults.delete(key);
      else faults.set(key, { ...fault });
    },

    tarballBytes(name, version) {
      return stored(name, version).bytes;
    },

    integrity(name, version) {
      return stored(name, version).sha512;
    },

    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}
