/**
 * README.md's configuration table documents exactly the variables src/config.ts reads, with the
 * defaults it applies (where the table gives a literal one).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configKeys, loadConfig } from "../src/config.ts";

const ROOT = join(import.meta.dirname, "..");

/** Rows of the table under "## Configuration": variable names (a row may name several) and the default cell. */
function configurationTable(): { keys: string[]; defaults: string[] }[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.split(/^## /m).find((s) => s.startsWith("Configuration\n"));
  if (!section) throw new Error('README.md has no "## Configuration" section');
  return section
    .split("\n")
    .filter((line) => /^\| `[A-Z]/.test(line))
    .map((line) => {
      const [, vars = "", def = ""] = line.split("|");
      return {
        keys: [...vars.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1]!),
        defaults: [...def.matchAll(/`([^`]*)`/g)].map((m) => m[1]!),
      };
    });
}

describe("README configuration table", () => {
  const rows = configurationTable();

  it("lists every variable of src/config.ts, and nothing else", () => {
    const documented = rows.flatMap((r) => r.keys);
    expect([...documented].sort()).toEqual([...configKeys].sort());
    expect(new Set(documented).size, "a variable is listed twice").toBe(documented.length);
  });

  it("states the defaults src/config.ts applies (rows with one literal default per variable)", () => {
    const defaults = loadConfig({}) as unknown as Record<string, unknown>;
    for (const { keys, defaults: given } of rows) {
      if (given.length !== keys.length) continue;
      keys.forEach((key, i) => {
        const value = given[i]!;
        if (/[A-Z][A-Z_]{2,}/.test(value)) return; // names another variable (e.g. `DATA_DIR/store`), not a literal
        const parsed = loadConfig({ [key]: value }) as unknown as Record<string, unknown>;
        expect(parsed[key], `${key}: README says ${value}`).toEqual(defaults[key]);
      });
    }
  });
});
