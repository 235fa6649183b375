/**
 * The API's metrics: request durations by route template, and the package count per status read
 * from the database at scrape time (one GROUP BY, cached for a few seconds so frequent or concurrent
 * scrapes cost at most one query per cache period). Only the API exports `spm_packages`: every
 * worker would report the same database-wide numbers.
 */
import { Gauge, Histogram, type Registry } from "prom-client";
import type { Db } from "../db/client.ts";
import { ALL_STATUSES } from "../queue/states.ts";
import { globalCounts, type StatusCounts } from "../status/queries.ts";

export interface ApiMetricsOptions {
  /** How long one status count is reused, in ms. Default 5000. */
  countsCacheMs?: number;
  /** Where a failed count query is reported (pino or Fastify logger). */
  log?: { warn(obj: object, msg: string): void };
  /** Epoch ms (tests). */
  now?: () => number;
}

export interface ApiMetrics {
  registry: Registry;
  httpDuration: Histogram<"method" | "route" | "status_code">;
  /** Record one finished request; `route` is the route template (`/api/packages/:id`), never the raw URL. */
  observeRequest(method: string, route: string, statusCode: number, seconds: number): void;
}

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createApiMetrics(registry: Registry, db: Db, opts: ApiMetricsOptions = {}): ApiMetrics {
  const registers = [registry];
  const cacheMs = opts.countsCacheMs ?? 5_000;
  const now = opts.now ?? Date.now;
  const httpDuration = new Histogram({
    name: "spm_http_request_duration_seconds",
    help: "API request duration, by method, route template and status code",
    labelNames: ["method", "route", "status_code"] as const,
    buckets: HTTP_BUCKETS,
    registers,
  });

  let cached: { at: number; counts: Promise<StatusCounts> } | null = null;
  const counts = (): Promise<StatusCounts> => {
    const t = now();
    if (cached && t - cached.at < cacheMs) return cached.counts;
    const entry = { at: t, counts: globalCounts(db) };
    cached = entry;
    // A failed query is not cached: the next scrape tries again.
    entry.counts.catch(() => {
      if (cached === entry) cached = null;
    });
    return entry.counts;
  };

  new Gauge({
    name: "spm_packages",
    help: `Packages per status (database-wide; cached ${cacheMs / 1000} s)`,
    labelNames: ["status"] as const,
    registers,
    async collect() {
      try {
        const c = await counts();
        for (const status of ALL_STATUSES) this.set({ status }, c[status]);
      } catch (err) {
        // Leave the series out rather than report stale numbers or fail the whole scrape.
        this.reset();
        opts.log?.warn({ err }, "metrics: package counts unavailable");
      }
    },
  });

  return {
    registry,
    httpDuration,
    observeRequest(method, route, statusCode, seconds) {
      httpDuration.observe({ method, route, status_code: String(statusCode) }, seconds);
    },
  };
}
