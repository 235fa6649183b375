#!/usr/bin/env node
// Launcher for the `spm` CLI (scripts/spm.ts): registers tsx from this package's own dependencies, so
// `spm` works when installed globally or linked, from any directory.
import { register } from "tsx/esm/api";

register();
const { run } = await import("../scripts/spm.ts");
run(process.argv.slice(2));
