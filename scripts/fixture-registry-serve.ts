/**
 * Serves the test fixture registry (test/support/fixture-registry.ts) as a stand-alone upstream for
 * local runs without the internet, e.g. scripts/stack-smoke.sh:
 *
 *   node --import tsx scripts/fixture-registry-serve.ts
 *
 * Listens on 127.0.0.1 (random port), prints `FIXTURE_REGISTRY_URL=http://127.0.0.1:PORT/` as its
 * first stdout line, then one `PACKAGE name@version` line per served version, then `READY`.
 * Stops on SIGTERM / SIGINT (exit 0). Every package is MIT-licensed, published 30 days ago, with
 * harmless code. This is a CLI tool, so it writes to stdout directly.
 */
import { startFixtureRegistry, type FixtureVersion } from "../test/support/fixture-registry.ts";

const mit = (version: string, code: string, manifest: Record<string, unknown> = {}): FixtureVersion => ({
  version,
  license: "MIT",
  manifest: { main: "index.js", description: "fixture package for local smoke runs", ...manifest },
  files: { "index.js": code, "README.md": "A fixture package.\n", LICENSE: "MIT License\n" },
});

/** name → versions. Two versions of smoke-is-number, so a lockfile can nest one of them. */
const FIXTURE_PACKAGES: Record<string, FixtureVersion[]> = {
  "smoke-left-pad": [mit("1.3.0", "module.exports = (s, n, c = ' ') => String(s).padStart(n, c);\n")],
  "smoke-is-number": [
    mit("6.0.0", "module.exports = (n) => typeof n === 'number';\n"),
    mit("7.0.0", "module.exports = (n) => typeof n === 'number' && Number.isFinite(n);\n"),
  ],
  "smoke-range": [
    mit("2.1.4", "const isNumber = require('smoke-is-number');\nmodule.exports = (a, b) => isNumber(a) && isNumber(b) ? [a, b] : [];\n", {
      dependencies: { "smoke-is-number": "^6.0.0" },
    }),
  ],
  "@smoke/strings": [mit("0.4.2", "exports.upper = (s) => String(s).toUpperCase();\n")],
};

async function main(): Promise<void> {
  const registry = await startFixtureRegistry();
  for (const [name, versions] of Object.entries(FIXTURE_PACKAGES)) registry.addPackage(name, versions);
  process.stdout.write(`FIXTURE_REGISTRY_URL=${registry.url}\n`);
  for (const [name, versions] of Object.entries(FIXTURE_PACKAGES)) {
    for (const v of versions) process.stdout.write(`PACKAGE ${name}@${v.version}\n`);
  }
  process.stdout.write("READY\n");
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    registry.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`fixture-registry-serve: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
