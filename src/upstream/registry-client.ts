/**
 * The upstream npm registry, as the worker sees it: packuments (one fetch in flight per name, and a
 * compact record of each kept for a short time in a cache bounded by bytes) and tarball responses,
 * behind timeouts and a circuit breaker.
 */
import { LRUCache } from "lru-cache";
import { DeferStepError, permanent, transient, type StepError } from "../pipeline/step.ts";
import { INSTALL_FIELDS } from "../pipeline/upstream-facts.ts";
import { CircuitBreaker } from "./circuit-breaker.ts";

/**
 * A packument as the worker keeps it: only what the pipeline's steps read (see `compactPackument`), not
 * the registry's whole document (READMEs, maintainers, scripts, devDependencies, … of every version).
 */
export interface Packument {
  name?: string;
  /** Version manifests; null for a version whose manifest is not an object. */
  versions?: Record<string, Record<string, unknown> | null>;
  /** Publish time of each version in `versions` (ISO 8601). */
  time?: Record<string, string>;
}

export interface RegistryClientOptions {
  registry: string;
  timeoutMs: number;
  cacheSeconds: number;
  breaker: CircuitBreaker;
  /**
   * Budget of the packument cache, in estimated bytes (the JSON length of the compact records kept;
   * default `DEFAULT_PACKUMENT_CACHE_BYTES`). Least recently used names go first; a packument whose
   * record alone is over the budget is used by the calls that asked for it and not kept. 0: no cache.
   */
  cacheBytes?: number;
  /** A packument response larger than this (bytes, decoded) fails the package (default `DEFAULT_MAX_PACKUMENT_BYTES`). */
  maxPackumentBytes?: number;
}

/**
 * 8 MiB of compact records. Packuments of thousands of versions (typescript, @types/node, aws-sdk: 10 MB
 * and more) compact to 1–3 MB, most to a few KB. In the heap a record takes about 0.5–1.5 times its
 * JSON length (measured on synthetic packuments shaped like those).
 */
export const DEFAULT_PACKUMENT_CACHE_BYTES = 8 * 1024 * 1024;
/** 128 MiB: far above real packuments, below what parsing could take the worker down with. */
export const DEFAULT_MAX_PACKUMENT_BYTES = 128 * 1024 * 1024;

/** Per-version fields the steps read: what installers get back (`INSTALL_FIELDS`) and every licence spelling. */
const VERSION_FIELDS: readonly string[] = [...new Set<string>([...INSTALL_FIELDS, "license", "licence", "licenses", "licences", "deprecated"])];
/** Fields of a version's `dist` the steps read. */
const DIST_FIELDS = ["tarball", "integrity", "shasum"] as const;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The part of a full packument the pipeline's steps use (`versionManifest`, `upstreamFacts`,
 * `declaredLicence`, `installManifest`): per version the `VERSION_FIELDS` and `dist.{tarball,integrity,shasum}`,
 * and the publish time of each version. Values are shared with `doc`, not copied; the rest of `doc` can
 * be collected. A version whose manifest is not an object is kept as null (still "not found", still counted).
 */
export function compactPackument(doc: Record<string, unknown>): Packument {
  const out: Packument = {};
  if (typeof doc.name === "string") out.name = doc.name;
  const versions: Record<string, Record<string, unknown> | null> = {};
  const time: Record<string, string> = {};
  const allTimes = isRecord(doc.time) ? doc.time : {};
  if (isRecord(doc.versions)) {
    for (const [version, manifest] of Object.entries(doc.versions)) {
      const at = allTimes[version];
      if (typeof at === "string") time[version] = at;
      if (typeof manifest !== "object" || manifest === null) {
        versions[version] = null;
        continue;
      }
      const m = manifest as Record<string, unknown>;
      const kept: Record<string, unknown> = {};
      for (const field of VERSION_FIELDS) if (m[field] !== undefined) kept[field] = m[field];
      if (isRecord(m.dist)) {
        const dist: Record<string, unknown> = {};
        for (const field of DIST_FIELDS) if (m.dist[field] !== undefined) dist[field] = m.dist[field];
        kept.dist = dist;
      }
      versions[version] = kept;
    }
    out.versions = versions;
  }
  if (Object.keys(time).length > 0) out.time = time;
  return out;
}

/**
 * The breaker refused the call. Not the package's fault: the row is deferred (no attempt charged) until about
 * when the breaker lets a trial call through, with jitter so that deferred rows do not all return at once.
 * While a half-open trial is in flight (retryAfterSeconds 0) rows still wait a little, never busy-loop.
 */
export class CircuitOpenError extends DeferStepError {
  constructor(readonly retryAfterSeconds: number) {
    const delay = Math.max(retryAfterSeconds, 0.25) * (1 + Math.random() * 0.25);
    super("circuit_open", `upstream registry circuit is open; retrying in ${Math.ceil(delay)} s`, delay);
    this.name = "CircuitOpenError";
  }
}

/** Wait for a shared fetch as one caller: leave it when `signal` aborts, and abort it when the last caller leaves. */
function join(flight: Flight, signal: AbortSignal | undefined): Promise<Packument> {
  flight.waiting += 1;
  if (!signal) return flight.promise;
  return new Promise<Packument>((resolve, reject) => {
    const leave = () => {
      flight.waiting -= 1;
      if (flight.waiting === 0) flight.controller.abort(signal.reason);
      reject(aborted(signal.reason));
    };
    signal.addEventListener("abort", leave, { once: true });
    flight.promise.then(
      (value) => {
        signal.removeEventListener("abort", leave);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", leave);
        reject(err);
      },
    );
  });
}

function aborted(reason: unknown): StepError {
  return transient("step_error", "aborted", reason);
}

/** The registry URL path of a package name: `@scope/name` → `@scope%2fname`. */
export function packumentPath(name: string): string {
  return name.startsWith("@") ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name);
}

/** The response body was over the size limit (found while reading it). */
class BodyTooLargeError extends Error {}

interface CacheEntry {
  value: Packument;
  /** Estimated size: the JSON length of `value`. */
  bytes: number;
}

/**
 * One packument fetch, shared by every caller that asks for the name while it runs. It runs under its
 * own abort signal, aborted only when every caller has given up (a caller without a signal never does),
 * so one caller's lost lease does not fail the others' steps.
 */
interface Flight {
  at: number;
  promise: Promise<Packument>;
  controller: AbortController;
  /** Callers still waiting for it. */
  waiting: number;
}

export class RegistryClient {
  /** Compact packuments by name (lru-cache: bounded by their estimated bytes, each kept for the TTL); null when off. */
  private readonly cache: LRUCache<string, CacheEntry> | null;
  /** Packument fetches in flight, by name (callers within the TTL share one). */
  private readonly flights = new Map<string, Flight>();
  private readonly cacheBudget: number;
  private readonly maxPackumentBytes: number;
  readonly registry: URL;

  constructor(private readonly opts: RegistryClientOptions) {
    this.registry = new URL(opts.registry);
    this.cacheBudget = Math.max(0, Math.floor(opts.cacheBytes ?? DEFAULT_PACKUMENT_CACHE_BYTES));
    this.maxPackumentBytes = opts.maxPackumentBytes ?? DEFAULT_MAX_PACKUMENT_BYTES;
    const ttl = opts.cacheSeconds * 1000;
    this.cache =
      this.cacheBudget > 0 && ttl > 0
        ? new LRUCache<string, CacheEntry>({
            maxSize: this.cacheBudget,
            maxEntrySize: this.cacheBudget,
            sizeCalculation: (e) => Math.max(1, e.bytes),
            ttl,
            updateAgeOnGet: false,
            perf: { now: () => Date.now() }, // the clock of `start` below (the flight's Date.now())
          })
        : null;
  }

  get breaker(): CircuitBreaker {
    return this.opts.breaker;
  }

  /** What the packument cache holds: names and estimated bytes (never more than the budget). */
  get cacheStats(): { entries: number; bytes: number; budget: number } {
    return { entries: this.cache?.size ?? 0, bytes: this.cache?.calculatedSize ?? 0, budget: this.cacheBudget };
  }

  /**
   * The packument of `name`, from the full document (not the abbreviated one: licence and publish times
   * are needed), compacted to what the steps read. Kept for `cacheSeconds` after its fetch started, as
   * the byte budget allows; a fetch in flight for the name (started within that time) is shared.
   */
  packument(name: string, signal?: AbortSignal): Promise<Packument> {
    const now = Date.now();
    const ttlMs = this.opts.cacheSeconds * 1000;
    const hit = this.cache?.get(name); // marks it most recently used; undefined once its TTL is over
    if (hit) return Promise.resolve(hit.value);
    if (signal?.aborted) return Promise.reject(aborted(signal.reason));
    let flight = this.flights.get(name);
    if (!flight || now - flight.at >= ttlMs || flight.controller.signal.aborted) {
      const started: Flight = { at: now, controller: new AbortController(), waiting: 0 } as Flight;
      started.promise = this.load(name, started);
      this.flights.set(name, started);
      flight = started;
    }
    return join(flight, signal);
  }

  private async load(name: string, flight: Flight): Promise<Packument> {
    try {
      const { value, bytes } = await this.fetchPackument(name, flight.controller.signal);
      // The TTL counts from when the fetch started, like a shared flight's.
      if (this.flights.get(name) === flight) this.cache?.set(name, { value, bytes }, { start: flight.at });
      return value;
    } finally {
      if (this.flights.get(name) === flight) this.flights.delete(name);
    }
  }

  private async fetchPackument(name: string, signal?: AbortSignal): Promise<{ value: Packument; bytes: number }> {
    const url = new URL(packumentPath(name), this.registry);
    const res = await this.request(url, { accept: "application/json" }, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      throw permanent("package_not_found", `${name} does not exist on the upstream registry (${this.registry.host})`);
    }
    const max = this.maxPackumentBytes;
    // Not the upstream's fault (no breaker failure), and the same on every retry: fails the package.
    const tooLarge = (size: string) => permanent("upstream_error", `the packument of ${name} is ${size} bytes, over the worker's limit (${max})`);
    const declared = Number(res.headers.get("content-length") ?? NaN);
    if (declared > max) {
      await res.body?.cancel();
      throw tooLarge(String(declared));
    }
    let text: string;
    try {
      text = await readText(res, max);
    } catch (err) {
      if (err instanceof BodyTooLargeError) throw tooLarge(`more than ${max}`);
      throw this.bodyError(url, `the packument of ${name}`, err, signal);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      this.opts.breaker.failure();
      throw transient("upstream_error", `invalid packument JSON for ${name}`, err);
    }
    if (!isRecord(doc)) {
      this.opts.breaker.failure();
      throw transient("upstream_error", `the packument of ${name} is not a JSON object`);
    }
    const value = compactPackument(doc);
    return { value, bytes: JSON.stringify(value).length };
  }

  /**
   * The error for a response body that broke off while being read (counted by the breaker). The timeout of
   * `request` covers the whole exchange, body included (fetch aborts the body stream with the request's
   * signal), so a slow-loris body ends as `upstream_timeout` instead of holding a lease forever.
   */
  bodyError(url: URL, what: string, err: unknown, signal?: AbortSignal): StepError {
    if (signal?.aborted && !isTimeout(err)) return this.gaveUp(err);
    this.opts.breaker.failure();
    if (isTimeout(err)) {
      return transient("upstream_timeout", `upstream did not send all of ${what} within ${this.opts.timeoutMs} ms: ${url}`, err);
    }
    const cause = (err as { cause?: { message?: string } })?.cause?.message;
    return transient("upstream_error", `${what} broke off while downloading from ${url}: ${cause ?? describe(err)}`, err);
  }

  /** The caller gave up (lease lost, shutting down): not the upstream's failure, and not a verdict on a half-open trial. */
  private gaveUp(err: unknown): StepError {
    this.opts.breaker.abandoned();
    return aborted(err);
  }

  /**
   * GET a URL on the upstream with a timeout and the breaker. 5xx, 429, network errors and timeouts
   * are transient (counted by the breaker); a 404 is returned to the caller; other 4xx are permanent.
   */
  async request(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    if (!this.opts.breaker.allow()) throw new CircuitOpenError(this.opts.breaker.retryAfterSeconds);
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, { headers: { "user-agent": "secure-package-manager", ...headers }, signal: combined, redirect: "error" });
    } catch (err) {
      if (signal?.aborted && !timeout.aborted) throw this.gaveUp(err);
      this.opts.breaker.failure();
      if (timeout.aborted) throw transient("upstream_timeout", `upstream did not answer within ${this.opts.timeoutMs} ms: ${url}`, err);
      throw transient("upstream_unavailable", `upstream unreachable: ${url.host} (${describe(err)})`, err);
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      this.opts.breaker.failure();
      await res.body?.cancel();
      throw transient("upstream_error", `upstream answered ${res.status} for ${url}`);
    }
    this.opts.breaker.success();
    if (res.status === 404) return res;
    if (res.status >= 400) {
      await res.body?.cancel();
      throw permanent("upstream_error", `upstream answered ${res.status} for ${url}`);
    }
    return res;
  }
}

/**
 * The body as UTF-8 text (as `Response.text()` decodes it), failing with BodyTooLargeError as soon as more
 * than `max` bytes have arrived (the rest is not read; the stream is cancelled).
 */
async function readText(res: Response, max: number): Promise<string> {
  if (!res.body) return "";
  // Decoded chunk by chunk, so that the raw bytes can go while the rest arrives.
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > max) throw new BodyTooLargeError();
    parts.push(decoder.decode(chunk, { stream: true }));
  }
  parts.push(decoder.decode());
  return parts.join("");
}

/** An AbortSignal.timeout() abort, as fetch and the streams reading its body report it. */
function isTimeout(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { name?: unknown }).name === "TimeoutError") return true;
  }
  return false;
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
