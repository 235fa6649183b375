/**
 * The pipeline's state machine. Each stage has a queued status (waiting to be claimed), an active
 * (`-ing`) status held under a lease, and the status a successful step moves the row to.
 *
 *   requested → checking_licence → licence_checked → downloading → downloaded → scanning
 *     → pending_approval → approved | rejected          (failed: retries used up; retriable)
 */
import type { PackageStatus } from "../generated/prisma/enums.ts";

export type { PackageStatus };

export const STAGE_NAMES = ["licence", "download", "scan"] as const;
export type StageName = (typeof STAGE_NAMES)[number];

export interface StageStates {
  name: StageName;
  queued: PackageStatus;
  active: PackageStatus;
  done: PackageStatus;
}

export const STAGES: readonly StageStates[] = Object.freeze([
  { name: "licence", queued: "requested", active: "checking_licence", done: "licence_checked" },
  { name: "download", queued: "licence_checked", active: "downloading", done: "downloaded" },
  { name: "scan", queued: "downloaded", active: "scanning", done: "pending_approval" },
]);

export const ALL_STATUSES: readonly PackageStatus[] = Object.freeze([
  "requested",
  "checking_licence",
  "licence_checked",
  "downloading",
  "downloaded",
  "scanning",
  "pending_approval",
  "approved",
  "rejected",
  "failed",
]);

/** States no worker will move on its own. `pending_approval` waits for a person. */
export const TERMINAL_STATUSES: readonly PackageStatus[] = Object.freeze(["approved", "rejected", "failed"]);
/** Where a request counts as done: nothing left for the pipeline to do. */
export const SETTLED_STATUSES: readonly PackageStatus[] = Object.freeze(["approved", "rejected", "failed", "pending_approval"]);
export const ACTIVE_STATUSES: readonly PackageStatus[] = Object.freeze(STAGES.map((s) => s.active));
export const QUEUED_STATUSES: readonly PackageStatus[] = Object.freeze(STAGES.map((s) => s.queued));

export function stageByActive(status: PackageStatus): StageStates | undefined {
  return STAGES.find((s) => s.active === status);
}

export function stageByName(name: StageName): StageStates {
  const stage = STAGES.find((s) => s.name === name);
  if (!stage) throw new Error(`unknown stage ${name}`);
  return stage;
}
