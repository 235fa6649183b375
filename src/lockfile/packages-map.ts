import type { Collector } from "./collector.ts";
import { assertInstallPath, optionalString, requiredVersion } from "./entry.ts";
import { describeType, invalidShape, isJsonObject, own, printable, type JsonObject } from "./json.ts";
import { assertPackageName, installNameOfKey } from "./names.ts";
import { resolvedSource } from "./resolved.ts";

/**
 * lockfileVersion 2/3: the flat `packages` map keyed by install path. `""` is the root project; keys outside any
 * node_modules folder (`packages/a`, `../lib`) are workspace or local folders, the targets of links.
 */
export function collectPackagesMap(packages: JsonObject, collector: Collector): void {
  for (const key of Object.keys(packages)) {
    if (key === "") continue;
    const value = packages[key]; // an own key: Object.keys lists only those
    assertInstallPath(key);
    if (!isJsonObject(value)) throw invalidShape(key, `the entry must be an object, not ${describeType(value)}`);
    const resolved = optionalString(key, value, "resolved");
    const link = own(value, "link") === true;

    const installName = installNameOfKey(key);
    if (installName === null) {
      collector.skip(key, link ? linkReason(resolved) : "workspace or local folder (the source of a link, not a registry package)");
      continue;
    }
    assertPackageName(key, installName);
    if (link) {
      collector.skip(key, linkReason(resolved));
      continue;
    }
    if (own(value, "inBundle") === true) {
      collector.skip(key, "bundled inside its parent's tarball");
      continue;
    }
    const source = resolvedSource(key, resolved);
    if (source?.kind === "skip") {
      collector.skip(key, source.reason);
      continue;
    }
    const version = requiredVersion(key, value);
    // `name` is present when it differs from the folder: an npm alias ("x": "npm:y@1") installs y in node_modules/x.
    const declared = optionalString(key, value, "name");
    if (declared !== null && declared !== installName) assertPackageName(key, declared);
    const name = declared ?? installName;
    collector.add({
      path: key,
      name,
      version,
      integrity: optionalString(key, value, "integrity"),
      resolved,
      source: source?.kind === "registry" ? source : null,
    });
  }
}

function linkReason(resolved: string | null): string {
  return resolved === null
    ? "link to a local folder (workspace or file: dependency)"
    : `link to ${printable(resolved, 100)} (workspace or file: dependency)`;
}
