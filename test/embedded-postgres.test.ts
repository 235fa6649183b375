/**
 * The embedded PostgreSQL of `npm start` (src/db/embedded.ts) after its server was killed outright: a
 * new server waits for the old one's processes to exit instead of failing, and a server that cannot
 * start says why.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../src/db/embedded.ts";

const dir = mkdtempSync(join(tmpdir(), "spm-embedded-"));
const started: EmbeddedDatabase[] = [];

afterAll(async () => {
  for (const db of started) await db.stop().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

/** The pids of the server's processes: the postmaster and its children (they have sessions of their own). */
function serverProcesses(): { postmaster: number; children: number[] } {
  const postmaster = Number(readFileSync(join(dir, "pg", "postmaster.pid"), "utf8").split("\n")[0]);
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(postmaster)], { encoding: "utf8" });
  return { postmaster, children: out.split("\n").map((l) => Number(l.trim())).filter((n) => n > 0) };
}

describe("embedded PostgreSQL", () => {
  it("starts again on a data directory whose server was killed, once the old server's processes have gone", async () => {
    const first = await startEmbeddedPostgres({ dir });
    started.push(first); // its stop() must return even though the server was killed
    const { postmaster, children } = serverProcesses();
    expect(children.length).toBeGreaterThan(0);
    // Hold the old server's children (they keep its shared memory) and kill the postmaster outright.
    for (const pid of children) process.kill(pid, "SIGSTOP");
    process.kill(postmaster, "SIGKILL");
    // Let them go a little later: until then PostgreSQL refuses the data directory.
    const release = setTimeout(() => {
      for (const pid of children) {
        try {
          process.kill(pid, "SIGCONT");
        } catch {
          // gone
        }
      }
    }, 1_500);
    const t0 = Date.now();
    const second = await startEmbeddedPostgres({ dir });
    started.push(second);
    clearTimeout(release);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_400);
    const c = new pg.Client({ connectionString: second.url });
    await c.connect();
    expect((await c.query<{ ok: number }>("SELECT 1 AS ok")).rows[0]!.ok).toBe(1);
    await c.end();
  });

  it("says what PostgreSQL said when it cannot start", async () => {
    const err = await startEmbeddedPostgres({ dir, postgresFlags: ["-c", "no_such_setting=1"] }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/^embedded PostgreSQL did not start: .*no_such_setting/s);
  });
});
