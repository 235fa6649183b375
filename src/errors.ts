/**
 * The one registry of error codes. API routes answer `{ error: { code, message, hint } }` with the
 * registered HTTP status; pipeline steps use the same codes for last_error / reason_code.
 */

export interface ErrorSpec {
  status: number;
  hint: string;
}

export const errorCodes = {
  // request / input
  bad_request: { status: 400, hint: "Check the request body against the API documentation at /docs." },
  validation_failed: { status: 400, hint: "Fix the fields named in the message and send the request again." },
  not_json: { status: 400, hint: "Upload the package-lock.json file itself, unchanged; it must be valid UTF-8 JSON." },
  lockfile_invalid: { status: 400, hint: "Regenerate the lockfile with `npm install --package-lock-only` and upload it again." },
  lockfile_version_unsupported: {
    status: 400,
    hint: "Only lockfileVersion 1, 2 and 3 (npm 5 and later) are supported; regenerate it with a current npm.",
  },
  lockfile_empty: { status: 400, hint: "The lockfile lists no registry packages; run `npm install` first so it records dependencies." },
  invalid_package_name: { status: 400, hint: "Package names must be valid npm names; the lockfile may have been edited by hand." },
  invalid_version: { status: 400, hint: "Versions must be exact semver versions as npm writes them; the lockfile may have been edited by hand." },
  no_file: { status: 400, hint: "Send the lockfile as multipart field `file`, or as the raw request body with Content-Type application/json." },
  multiple_files: { status: 400, hint: "Send one lockfile per upload: one file part, named `file`, and no other file parts." },
  too_many_fields: { status: 400, hint: "Send only the lockfile as the file part named `file`; the upload needs no other form fields." },
  payload_too_large: { status: 413, hint: "The upload is larger than MAX_UPLOAD_BYTES; split the project or raise the limit." },
  unsupported_media_type: { status: 415, hint: "Use multipart/form-data (field `file`) or application/json." },
  // auth
  unauthorized: { status: 401, hint: "Log in with POST /api/auth/login and send the token as `Authorization: Bearer <token>`." },
  token_expired: { status: 401, hint: "The token has expired; log in again." },
  invalid_credentials: { status: 401, hint: "Check the username and password." },
  forbidden: { status: 403, hint: "Your role does not allow this; ask an admin." },
  comment_required: { status: 400, hint: "Overriding a policy rejection needs a comment that says why." },
  // resources
  not_found: { status: 404, hint: "Check the path." },
  request_not_found: { status: 404, hint: "List requests with GET /api/packages/requests." },
  package_not_found: { status: 404, hint: "Check the package id; list a request's packages with GET /api/packages/requests/:id/processing-status." },
  conflict: { status: 409, hint: "The resource already exists or changed meanwhile; reload and try again." },
  rate_limited: { status: 429, hint: "Slow down and retry later." },
  // server
  database_unavailable: { status: 503, hint: "PostgreSQL is not reachable; retry shortly." },
  internal: { status: 500, hint: "This is a bug; the server log has the details under the request id." },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCodes;

/** An error the API turns into `{ error: { code, message, hint } }` with the registered status. */
export class AppError extends Error {
  readonly status: number;
  readonly hint: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options: { hint?: string; details?: unknown } = {},
  ) {
    super(message);
    this.name = "AppError";
    this.status = errorCodes[code].status;
    this.hint = options.hint ?? errorCodes[code].hint;
    this.details = options.details;
  }
  readonly details: unknown;

  toBody(): { error: { code: string; message: string; hint: string; details?: unknown } } {
    return { error: { code: this.code, message: this.message, hint: this.hint, ...(this.details === undefined ? {} : { details: this.details }) } };
  }
}

/**
 * Codes recorded on package rows (last_error_code / reason_code). Pipeline outcomes, not HTTP errors.
 * `transient` codes are retried with backoff; `permanent` fail at once; `policy` codes reject.
 */
export const pipelineCodes = {
  upstream_unavailable: "transient",
  upstream_timeout: "transient",
  upstream_error: "transient",
  circuit_open: "transient",
  database_error: "transient",
  step_error: "transient",
  lease_expired: "transient",
  worker_exited: "transient",
  worker_shutdown: "transient",
  package_not_found: "permanent",
  version_not_found: "permanent",
  tarball_too_large: "permanent",
  tarball_url_rejected: "permanent",
  tarball_corrupt: "permanent",
  licence_denied: "policy",
  integrity_mismatch: "policy",
  manifest_mismatch: "policy",
  malicious: "policy",
  critical_vulnerability: "policy",
  unsafe_tarball: "policy",
  rejected_by_reviewer: "policy",
} as const;

export type PipelineCode = keyof typeof pipelineCodes;
