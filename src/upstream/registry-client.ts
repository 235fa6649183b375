/**
 * The upstream npm registry, as the worker sees it: packuments (cached per name for a short time,
 * one fetch in flight per name) and tarball responses, behind timeouts and a circuit breaker.
 */
import { DeferStepError, permanent, transient, type StepError } from "../pipeline/step.ts";
import { CircuitBreaker } from "./circuit-breaker.ts";

export interface Packument {
  name?: string;
  versions?: Record<string, Record<string, unknown>>;
  time?: Record<string, string>;
  "dist-tags"?: Record<string, string>;
}

export interface RegistryClientOptions {
  registry: string;
  timeoutMs: number;
  cacheSeconds: number;
  breaker: CircuitBreaker;
  /** At most this many packuments kept in memory. */
  cacheEntries?: number;
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

/** The registry URL path of a package name: `@scope/name` → `@scope%2fname`. */
export function packumentPath(name: string): string {
  return name.startsWith("@") ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name);
}

export class RegistryClient {
  private readonly cache = new Map<string, { at: number; value: Promise<Packument> }>();
  readonly registry: URL;

  constructor(private readonly opts: RegistryClientOptions) {
    this.registry = new URL(opts.registry);
  }

  get breaker(): CircuitBreaker {
    return this.opts.breaker;
  }

  /** The full packument of `name` (full, not abbreviated: licence and publish times are needed). */
  packument(name: string, signal?: AbortSignal): Promise<Packument> {
    const now = Date.now();
    const hit = this.cache.get(name);
    if (hit && now - hit.at < this.opts.cacheSeconds * 1000) return hit.value;
    const value = this.fetchPackument(name, signal);
    this.cache.set(name, { at: now, value });
    value.catch(() => this.cache.delete(name));
    const max = this.opts.cacheEntries ?? 2_000;
    if (this.cache.size > max) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    return value;
  }

  private async fetchPackument(name: string, signal?: AbortSignal): Promise<Packument> {
    const url = new URL(packumentPath(name), this.registry);
    const res = await this.request(url, { accept: "application/json" }, signal);
    if (res.status === 404) {
      await res.body?.cancel();
      throw permanent("package_not_found", `${name} does not exist on the upstream registry (${this.registry.host})`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw this.bodyError(url, `the packument of ${name}`, err, signal);
    }
    try {
      return JSON.parse(text) as Packument;
    } catch (err) {
      this.opts.breaker.failure();
      throw transient("upstream_error", `invalid packument JSON for ${name}`, err);
    }
  }

  /**
   * The error for a response body that broke off while being read (counted by the breaker). The timeout of
   * `request` covers the whole exchange, body included (fetch aborts the body stream with the request's
   * signal), so a slow-loris body ends as `upstream_timeout` instead of holding a lease forever.
   */
  bodyError(url: URL, what: string, err: unknown, signal?: AbortSignal): StepError {
    this.opts.breaker.failure();
    if (isTimeout(err)) {
      return transient("upstream_timeout", `upstream did not send all of ${what} within ${this.opts.timeoutMs} ms: ${url}`, err);
    }
    if (signal?.aborted) return transient("step_error", "aborted", err);
    const cause = (err as { cause?: { message?: string } })?.cause?.message;
    return transient("upstream_error", `${what} broke off while downloading from ${url}: ${cause ?? describe(err)}`, err);
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
      this.opts.breaker.failure();
      if (timeout.aborted) throw transient("upstream_timeout", `upstream did not answer within ${this.opts.timeoutMs} ms: ${url}`, err);
      if (signal?.aborted) throw transient("step_error", "aborted", err);
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
