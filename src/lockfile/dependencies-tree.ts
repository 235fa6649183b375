import { AppError } from "../errors.ts";
import type { Collector } from "./collector.ts";
import { assertInstallPath, optionalString, requiredVersion } from "./entry.ts";
import { describeType, invalidShape, isJsonObject, own, printable, quote, type JsonObject } from "./json.ts";
import { assertPackageName } from "./names.ts";
import { classifySource, resolvedSource } from "./resolved.ts";
import { isExactVersion } from "./versions.ts";

interface Pending {
  path: string;
  key: string;
  value: unknown;
}

/**
 * lockfileVersion 1: the nested `dependencies` tree. Walked with an explicit stack (a hostile file may nest thousands
 * of levels deep), depth first in document order. Paths are built as `node_modules/a/node_modules/b` and bounded by
 * MAX_INSTALL_PATH.
 */
export function collectDependencyTree(root: JsonObject, collector: Collector): void {
  const top = own(root, "dependencies");
  if (top === undefined) return;
  if (!isJsonObject(top)) throw invalidShape("dependencies", `must be an object, not ${describeType(top)}`);
  const stack: Pending[] = [];
  pushChildren(stack, top, "node_modules/");
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { path, key, value } = item;
    assertPackageName(path, key);
    if (!isJsonObject(value)) throw invalidShape(path, `the entry must be an object, not ${describeType(value)}`);
    const children = own(value, "dependencies");
    if (children !== undefined) {
      if (!isJsonObject(children)) throw invalidShape(path, `"dependencies" must be an object, not ${describeType(children)}`);
      pushChildren(stack, children, `${path}/node_modules/`);
    }
    collectEntry(path, key, value, collector);
  }
}

/** Pushes in reverse so that popping visits the children in document order. */
function pushChildren(stack: Pending[], dependencies: JsonObject, prefix: string): void {
  const entries = Object.entries(dependencies);
  for (let i = entries.length - 1; i >= 0; i--) {
    const [key, value] = entries[i] as [string, unknown];
    const path = prefix + key;
    assertInstallPath(path); // bounds the depth too: each level adds at least 14 characters
    stack.push({ path, key, value });
  }
}

function collectEntry(path: string, key: string, entry: JsonObject, collector: Collector): void {
  if (own(entry, "bundled") === true) {
    collector.skip(path, "bundled inside its parent's tarball");
    return;
  }
  const spec = requiredVersion(path, entry);
  let name = key;
  let version = spec;
  if (spec.startsWith("npm:")) {
    // An npm alias: "x": { "version": "npm:real-name@1.2.3" } installs real-name@1.2.3 in node_modules/x.
    const target = spec.slice("npm:".length);
    const at = target.lastIndexOf("@");
    if (at <= 0) {
      throw new AppError("invalid_version", `${printable(path)}: alias ${quote(spec)} names no version`, { details: { path, version: spec } });
    }
    name = target.slice(0, at);
    version = target.slice(at + 1);
    assertPackageName(path, name);
  } else if (!isExactVersion(spec)) {
    // v1 writes the specifier itself for non-registry dependencies: git URLs, file: paths, tarball URLs.
    const source = classifySource(spec, { githubShorthand: true });
    if (source.kind === "skip") {
      collector.skip(path, source.reason);
      return;
    }
    if (source.kind === "registry") {
      collector.skip(path, `remote tarball URL (${printable(spec, 100)})`);
      return;
    }
    // Anything else (a range such as ^1.0.0) is rejected as invalid_version by the collector.
  }
  const resolved = optionalString(path, entry, "resolved");
  const source = resolvedSource(path, resolved);
  if (source?.kind === "skip") {
    collector.skip(path, source.reason);
    return;
  }
  collector.add({
    path,
    name,
    version,
    integrity: optionalString(path, entry, "integrity"),
    resolved,
    source: source?.kind === "registry" ? source : null,
  });
}
