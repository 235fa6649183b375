/** Stage `scanning` (placeholder until the scanner lands): never approves anything. */
import type { ClaimedRow } from "../queue/sql.ts";
import type { PipelineContext } from "./context.ts";
import type { StepOutcome } from "./step.ts";

export type ScanContext = PipelineContext;

export async function scanStep(_row: ClaimedRow, _ctx: ScanContext): Promise<StepOutcome> {
  return { kind: "advance", to: "pending_approval", reason: "scan not available: needs review", reasonCode: "needs_review", reasonMessage: "scanner not installed" };
}
