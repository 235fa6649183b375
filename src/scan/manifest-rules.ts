/**
 * Checks on a tarball's package.json: identity against what the registry promised, and the
 * lifecycle scripts npm runs when the package is installed from a registry.
 */
import semver from "semver";
import { commandRedFlags } from "./code-rules.ts";
import { clip, type FindingCollector } from "./findings.ts";

/** Lifecycle scripts npm runs for a registry install (`prepare` only runs for git/local installs). */
export const INSTALL_LIFECYCLE = ["preinstall", "install", "postinstall"] as const;
export type InstallLifecycle = (typeof INSTALL_LIFECYCLE)[number];

export const IMPLICIT_GYP_COMMAND = "node-gyp rebuild";

export type ManifestParse = { ok: true; manifest: Record<string, unknown> } | { ok: false; reason: string };

/** Parses package.json bytes the way npm does (a leading BOM is allowed); must be a JSON object. */
export function parseManifest(body: Buffer): ManifestParse {
  let text = body.toString("utf8");
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `package.json is not valid JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, reason: "package.json is not a JSON object" };
  }
  return { ok: true, manifest: value as Record<string, unknown> };
}

function versionsEqual(a: string, b: string): boolean {
  const va = semver.valid(a);
  const vb = semver.valid(b);
  return va !== null && vb !== null ? semver.eq(va, vb) : a === b;
}

/** `manifest_mismatch` when the tarball's package.json names another package or version. */
export function checkIdentity(
  manifest: Record<string, unknown>,
  expected: { name: string; version: string },
  findings: FindingCollector,
): void {
  const name = manifest.name;
  const version = manifest.version;
  if (typeof name !== "string") {
    findings.add("manifest_mismatch", `package.json has no name; the registry says this tarball is ${expected.name}@${expected.version}.`, {
      file: "package.json",
    });
  } else if (name !== expected.name) {
    findings.add(
      "manifest_mismatch",
      `package.json names the package "${name}", but the registry serves this tarball as "${expected.name}"; the tarball may have been swapped.`,
      { file: "package.json", evidence: `"name": ${JSON.stringify(name)}` },
    );
  }
  if (typeof version !== "string") {
    findings.add("manifest_mismatch", `package.json has no version; the registry says this tarball is version ${expected.version}.`, {
      file: "package.json",
    });
  } else if (!versionsEqual(version, expected.version)) {
    findings.add(
      "manifest_mismatch",
      `package.json says version "${version}", but the registry serves this tarball as version "${expected.version}"; the tarball may have been swapped.`,
      { file: "package.json", evidence: `"version": ${JSON.stringify(version)}` },
    );
  }
}

export interface InstallScripts {
  /** lifecycle → command, as npm will run them (including the implicit `node-gyp rebuild`). */
  scripts: Record<string, string>;
  /** True when `install` is npm's implicit `node-gyp rebuild` for a root binding.gyp. */
  implicitGyp: boolean;
}

/**
 * The install-time scripts npm runs for this manifest. As in npm (read-package-json /
 * @npmcli/package-json), a `binding.gyp` at the package root with neither `install` nor
 * `preinstall` script (and no `"gypfile": false`) makes `install` = `node-gyp rebuild`.
 */
export function installScriptsOf(manifest: Record<string, unknown> | null, hasBindingGyp: boolean): InstallScripts {
  const scripts: Record<string, string> = {};
  const declared = manifest?.scripts;
  if (declared !== null && typeof declared === "object" && !Array.isArray(declared)) {
    for (const event of INSTALL_LIFECYCLE) {
      const command = (declared as Record<string, unknown>)[event];
      if (typeof command === "string" && command.trim() !== "") scripts[event] = command;
    }
  }
  let implicitGyp = false;
  if (hasBindingGyp && scripts.install === undefined && scripts.preinstall === undefined && manifest?.gypfile !== false) {
    scripts.install = IMPLICIT_GYP_COMMAND;
    implicitGyp = true;
  }
  return { scripts, implicitGyp };
}

/** Other scripts of the manifest (for following `npm run x` from an install script). */
export function allScriptsOf(manifest: Record<string, unknown> | null): Record<string, string> {
  const out: Record<string, string> = {};
  const declared = manifest?.scripts;
  if (declared !== null && typeof declared === "object" && !Array.isArray(declared)) {
    for (const [k, v] of Object.entries(declared as Record<string, unknown>)) if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** One `install_script` finding per install-time script, naming red flags in the command. */
export function installScriptFindings(
  install: InstallScripts,
  findings: FindingCollector,
  /** Red flags of commands each script runs indirectly (`npm run x`, binding.gyp `<!(…)`), by lifecycle event. */
  nestedRedFlags: Readonly<Record<string, readonly string[]>> = {},
): void {
  for (const [event, command] of Object.entries(install.scripts)) {
    const shown = clip(command, 120);
    const flags = [...new Set([...commandRedFlags(command), ...(nestedRedFlags[event] ?? [])])];
    if (event === "install" && install.implicitGyp) {
      findings.add(
        "install_script",
        `binding.gyp at the package root makes npm run "${IMPLICIT_GYP_COMMAND}" at install time (an implicit install script), compiling native code on the installing machine` +
          (flags.length > 0 ? `; its command expansions ${joinPhrases(flags)}.` : "."),
        { file: "binding.gyp", evidence: IMPLICIT_GYP_COMMAND },
      );
      continue;
    }
    const message =
      flags.length > 0
        ? `${event} runs "${shown}", which ${joinPhrases(flags)}; review exactly what it fetches and executes before approving.`
        : `${event} runs "${shown}" when the package is installed; check what it does before approving.`;
    findings.add("install_script", message, { file: "package.json", evidence: command });
  }
}

export function joinPhrases(parts: readonly string[]): string {
  if (parts.length <= 1) return parts.join("");
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}
