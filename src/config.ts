/**
 * Configuration: read once from the environment, validated with zod, frozen.
 * Every variable is documented in README.md ("Configuration"). Keep the two in step.
 */
import { z } from "zod";

const seconds = (def: number) => z.coerce.number().nonnegative().default(def);
const positiveInt = (def: number) => z.coerce.number().int().positive().default(def);

const schema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  DATA_DIR: z.string().min(1).default("./.data"),
  EMBEDDED_PG_PORT: z.coerce.number().int().min(1).max(65535).default(54329),
  DB_POOL_SIZE: positiveInt(10),

  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  PUBLIC_URL: z.url().optional(),
  JWT_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  JWT_TTL: z.string().regex(/^\d+[smhd]$/, "a number followed by s, m, h or d, e.g. 12h").default("12h"),
  MAX_UPLOAD_BYTES: positiveInt(32 * 1024 * 1024),
  LOGIN_RATE_LIMIT: positiveInt(10),

  WORKER_ID: z.string().min(1).optional(),
  WORKER_SLEEP_INTERVAL: seconds(10),
  WORKER_MAX_PACKAGES_PER_CYCLE: positiveInt(5),
  WORKER_CONCURRENCY: positiveInt(8),
  WORKER_GRACE_SECONDS: seconds(20),
  WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  STUCK_AFTER_MINUTES: z.coerce.number().positive().default(30),
  AUDIT_SEAL_CRON: z.string().min(1).default("*/10 * * * * *"),
  API_MAINTENANCE: z.enum(["true", "false"]).default("true").transform((v) => v === "true"),
  MAX_ATTEMPTS: positiveInt(5),
  RETRY_BASE_SECONDS: z.coerce.number().positive().default(2),
  RETRY_MAX_SECONDS: z.coerce.number().positive().default(600),

  UPSTREAM_REGISTRY: z.url().optional(),
  UPSTREAM_TIMEOUT_MS: positiveInt(30_000),
  PACKUMENT_CACHE_SECONDS: seconds(300),
  PACKUMENT_CACHE_MB: z.coerce.number().nonnegative().default(8),
  PACKUMENT_MAX_MB: z.coerce.number().positive().default(128),
  CIRCUIT_FAILURE_THRESHOLD: positiveInt(5),
  CIRCUIT_OPEN_SECONDS: seconds(30),

  STORAGE_DIR: z.string().min(1).optional(),
  MAX_TARBALL_BYTES: positiveInt(100 * 1024 * 1024),
  MAX_UNPACKED_BYTES: positiveInt(512 * 1024 * 1024),
  MAX_COMPRESSION_RATIO: z.coerce.number().positive().default(100),
  ADVISORY_MAX_AGE_DAYS: z.coerce.number().positive().default(7),
  LICENCE_UNKNOWN_VERDICT: z.enum(["allow", "review", "deny"]).default("review"),
  LICENCE_EXCEPTIONS: z.enum(["as-base", "review"]).default("as-base"),
  AUTO_APPROVE: z.enum(["clean", "never"]).default("clean"),
  MIN_RELEASE_AGE_HOURS: z.coerce.number().nonnegative().default(72),

  REGISTRY_AUTH: z.enum(["required", "none"]).default("required"),
  REGISTRY_TARBALL_CACHE_MB: z.coerce.number().nonnegative().default(256),
});

export const configSchema = schema;
export const configKeys = Object.keys(schema.shape);

type Raw = z.infer<typeof schema>;

export type Config = Readonly<
  Omit<Raw, "UPSTREAM_REGISTRY" | "STORAGE_DIR"> & {
    UPSTREAM_REGISTRY: string;
    STORAGE_DIR: string;
  }
>;

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`Invalid configuration:\n  ${issues.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** Parse an environment into a frozen Config. Throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== "")));
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`));
  }
  const raw = parsed.data;
  // Run through npm (`npm start`), npm exports its configured registry as npm_config_registry.
  const upstream = raw.UPSTREAM_REGISTRY ?? env.npm_config_registry ?? "https://registry.npmjs.org/";
  return Object.freeze({
    ...raw,
    UPSTREAM_REGISTRY: upstream.endsWith("/") ? upstream : `${upstream}/`,
    STORAGE_DIR: raw.STORAGE_DIR ?? `${raw.DATA_DIR.replace(/\/$/, "")}/store`,
  });
}

let cached: Config | undefined;

/** The process-wide configuration, parsed on first use. */
export function config(): Config {
  cached ??= loadConfig();
  return cached;
}

/** Parse a duration such as `12h` into seconds. */
export function durationSeconds(value: string): number {
  const n = Number(value.slice(0, -1));
  const unit = value.at(-1);
  return n * (unit === "d" ? 86_400 : unit === "h" ? 3_600 : unit === "m" ? 60 : 1);
}
