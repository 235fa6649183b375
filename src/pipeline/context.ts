/** What the pipeline's steps may use: built once per worker process, shared by every step. */
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import type { ContentStore } from "../store/content-store.ts";
import type { RegistryClient } from "../upstream/registry-client.ts";
import type { StepContext } from "./step.ts";

export interface PipelineServices {
  config: Config;
  db: Db;
  registry: RegistryClient;
  store: ContentStore;
}

export type PipelineContext = StepContext & PipelineServices;

/** What the licence step learns from the packument and later steps reuse (results.upstream). */
export interface UpstreamFacts {
  tarball: string | null;
  integrity: string | null;
  shasum: string | null;
  publishedAt: string | null;
  deprecated: string | null;
}
