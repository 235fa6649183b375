import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/** Paths redacted from every log line: credentials never reach the logs. */
export const redactPaths = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "password",
  "token",
  "*.password",
  "*.token",
  "*.passwordHash",
  "JWT_SECRET",
  "DATABASE_URL",
];

export function loggerOptions(level: string, name: string): LoggerOptions {
  const pretty = process.stdout.isTTY && process.env.NODE_ENV !== "production";
  return {
    name,
    level,
    redact: { paths: redactPaths, censor: "[redacted]" },
    ...(pretty ? { transport: { target: "pino-pretty", options: { translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" } } } : {}),
  };
}

export function createLogger(name: string, level = process.env.LOG_LEVEL || "info"): Logger {
  return pino(loggerOptions(level, name));
}
