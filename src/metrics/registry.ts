/** The process's Prometheus registry (one per process: the API and each worker expose their own). */
import { collectDefaultMetrics, Registry } from "prom-client";

export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry });
