/**
 * Why the gate will not serve a version, as one line a person can act on. npm prints a registry
 * error as `<status> <statusText> - <METHOD> <url> - <body.error>`, so this text ends up in npm's
 * own output (and in `policyRestrictions.message` of a packument, which npm prints as
 * "Could not download x@1 due to policy violations: …").
 */
import type { PackageStatus } from "../queue/states.ts";

/** What the refusal needs to know about a package row. */
export interface RefusalRow {
  version: string;
  status: PackageStatus;
  reasonCode: string | null;
  reasonMessage: string | null;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  /** results.review.reasons */
  reviewReasons: string[] | null;
}

export interface Refusal {
  /** 403: the gate knows the version and refuses it; 404: it never heard of it. */
  status: 403 | 404;
  message: string;
}

const IN_PROGRESS_LABEL: Partial<Record<PackageStatus, string>> = {
  requested: "queued",
  checking_licence: "checking the licence",
  licence_checked: "waiting for download",
  downloading: "downloading",
  downloaded: "waiting for the scan",
  scanning: "scanning",
};

export function isInProgress(status: PackageStatus): boolean {
  return IN_PROGRESS_LABEL[status] !== undefined;
}

/** A message that repeats the package id at its start loses it: `x@1: boom` → `boom`, `x@1 is bad` → `bad`. */
function withoutPrefix(pkg: string, message: string): string {
  const m = message.trim();
  for (const prefix of [`${pkg}: `, `${pkg} is `, `${pkg} `]) if (m.startsWith(prefix)) return m.slice(prefix.length).trim();
  return m;
}

function oneLine(s: string, max = 500): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The refusal of one known, not approved version. */
export function refusalOf(name: string, row: RefusalRow): Refusal {
  const pkg = `${name}@${row.version}`;
  switch (row.status) {
    case "rejected": {
      const why = row.reasonMessage ? withoutPrefix(pkg, row.reasonMessage) : (row.reasonCode ?? "no reason recorded");
      return { status: 403, message: oneLine(`${pkg} is rejected: ${why}`) };
    }
    case "pending_approval": {
      const reasons = row.reviewReasons && row.reviewReasons.length > 0 ? row.reviewReasons.join("; ") : (row.reasonMessage ?? "");
      return { status: 403, message: oneLine(reasons ? `${pkg} is awaiting approval (${reasons})` : `${pkg} is awaiting approval`) };
    }
    case "failed": {
      const why = row.lastErrorMessage ? withoutPrefix(pkg, row.lastErrorMessage) : (row.lastErrorCode ?? "unknown error");
      return { status: 403, message: oneLine(`${pkg} failed vetting: ${why}; an admin can retry it`) };
    }
    case "approved":
      // Only reached when an approved row has no servable tarball (see the registry route).
      return { status: 403, message: `${pkg} is approved but its tarball is missing from the gate's store; tell an admin` };
    default:
      return { status: 403, message: `${pkg} is being vetted (${IN_PROGRESS_LABEL[row.status] ?? row.status}); try again shortly` };
  }
}

export function notRequested(name: string, version: string): Refusal {
  return { status: 404, message: `${name}@${version} is not requested: upload a lockfile that contains it` };
}

/** Short state word for lists. */
function stateWord(status: PackageStatus): string {
  if (status === "pending_approval") return "awaiting approval";
  if (isInProgress(status)) return "being vetted";
  return status;
}

/**
 * Why a name has nothing to serve: 404 when it was never requested, else 403 listing the versions'
 * states briefly (the first `maxListed` versions, newest first, each with its reason).
 */
export function packageRefusal(name: string, rows: readonly RefusalRow[], maxListed = 5): Refusal {
  if (rows.length === 0) return { status: 404, message: `${name} is not requested: upload a lockfile that contains it` };
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(stateWord(r.status), (counts.get(stateWord(r.status)) ?? 0) + 1);
  const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(", ");
  const listed = rows.slice(0, maxListed).map((r) => refusalOf(name, r).message);
  const more = rows.length > maxListed ? `; … and ${rows.length - maxListed} more` : "";
  return { status: 403, message: `${name} has no approved version (${summary}): ${listed.join("; ")}${more}` };
}

/** The refusals of several versions as one text (npm shows it after "due to policy violations:"). */
export function refusalsText(name: string, rows: readonly RefusalRow[], maxListed = 20): string {
  const listed = rows.slice(0, maxListed).map((r) => refusalOf(name, r).message);
  if (rows.length > maxListed) listed.push(`… and ${rows.length - maxListed} more versions not approved`);
  return listed.join("\n");
}
