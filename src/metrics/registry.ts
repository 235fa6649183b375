/**
 * Prometheus registries. Each process (the API, each worker) owns its own registry, created here and
 * passed to the metric factories (`createApiMetrics`, `createWorkerMetrics`): no module-level metric
 * singletons, so several workers or apps can run in one process (the tests do) without clashing.
 */
import { collectDefaultMetrics, Registry } from "prom-client";

export interface RegistryOptions {
  /** prom-client's default process metrics (`process_*`, `nodejs_*`: CPU, memory, event loop lag, GC). Default true. */
  defaults?: boolean;
}

export function createMetricsRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry });
  return registry;
}

export type { Registry };
