/**
 * The pipeline: a table of stages → step functions. Claim priority runs later stages first, so
 * packages already under way finish before new ones start.
 */
import type { RunnerStage } from "../queue/runner.ts";
import { stageByName } from "../queue/states.ts";
import { downloadStep } from "./download-step.ts";
import { licenceStep, type LicenceContext } from "./licence-step.ts";
import { scanStep, type ScanContext } from "./scan-step.ts";

export type WorkerContext = LicenceContext & ScanContext;

export function pipelineStages(): RunnerStage<WorkerContext>[] {
  return [
    { states: stageByName("scan"), step: scanStep },
    { states: stageByName("download"), step: downloadStep },
    { states: stageByName("licence"), step: licenceStep },
  ];
}
