/**
 * One error shape for every /api route: `{ error: { code, message, hint } }`, codes from src/errors.ts.
 * Fastify's own errors (validation, body too large, bad content type) are mapped onto the registry.
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { AppError, type ErrorCode } from "../../src/errors.ts";

const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "payload_too_large",
  FST_REQ_FILE_TOO_LARGE: "payload_too_large",
  // The multipart count limits are not about size (the upload route words these itself; this is the fallback).
  FST_FILES_LIMIT: "multiple_files",
  FST_FIELDS_LIMIT: "too_many_fields",
  FST_PARTS_LIMIT: "too_many_fields",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "bad_request",
  FST_ERR_CTP_EMPTY_JSON_BODY: "bad_request",
  FST_INVALID_MULTIPART_CONTENT_TYPE: "unsupported_media_type",
  FST_JWT_NO_AUTHORIZATION_IN_HEADER: "unauthorized",
  FST_JWT_AUTHORIZATION_TOKEN_INVALID: "unauthorized",
  FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED: "unauthorized",
  FST_JWT_BAD_REQUEST: "unauthorized",
  FST_JWT_AUTHORIZATION_TOKEN_EXPIRED: "token_expired",
};

export function toAppError(err: FastifyError | Error): AppError {
  if (err instanceof AppError) return err;
  const fe = err as FastifyError;
  if (fe.validation) return new AppError("validation_failed", fe.message);
  const mapped = fe.code ? fastifyCodes[fe.code] : undefined;
  if (mapped) return new AppError(mapped, fe.message);
  if (isDatabaseDown(err)) return new AppError("database_unavailable", "the database is not reachable");
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new AppError("bad_request", fe.message);
  return new AppError("internal", "internal error");
}

/** Connection-level failures from pg / the Prisma adapter. */
export function isDatabaseDown(err: unknown): boolean {
  const text = `${(err as { code?: string }).code ?? ""} ${(err as Error).message ?? ""} ${String((err as { cause?: unknown }).cause ?? "")}`;
  return /ECONNREFUSED|ECONNRESET|Connection terminated|57P01|57P03|DatabaseNotReachable|connect ETIMEDOUT|timeout exceeded when trying to connect/i.test(text);
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const appErr = toAppError(err);
    if (appErr.status >= 500) request.log.error({ err }, "request failed");
    else request.log.info({ code: appErr.code, msg: appErr.message }, "request refused");
    void reply.status(appErr.status).send(appErr.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send(new AppError("not_found", `no route for ${request.method} ${request.url.split("?")[0]}`).toBody());
  });
}
