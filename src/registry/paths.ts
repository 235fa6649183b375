/**
 * Paths of npm's read protocol under the registry prefix, as clients send them:
 *
 *   <name>                          packument       (scoped: @scope%2fname, %40scope%2fname or @scope/name)
 *   <name>/<version|tag>            one version document
 *   <name>/-/<basename>-<v>.tgz     tarball          (scoped: @scope/name/-/name-1.0.0.tgz, @scope%2fname/-/…)
 */
import semver from "semver";
import { nameProblem } from "../lockfile/names.ts";
import { basenameOf } from "./packument.ts";

export type RegistryPath =
  | { kind: "packument"; name: string }
  | { kind: "version"; name: string; spec: string }
  | { kind: "tarball"; name: string; version: string }
  | { kind: "invalid"; message: string };

function decode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** Parses the part of the path after the prefix (`/npm/`), without the query string. */
export function parseRegistryPath(rest: string): RegistryPath {
  const decoded = rest
    .split("/")
    .map(decode)
    .reduce<string | null>((acc, seg) => (acc === null || seg === null ? null : acc === "" ? seg : `${acc}/${seg}`), "");
  if (decoded === null) return { kind: "invalid", message: "the path is not valid percent-encoding" };
  const m = /^(@[^/]+\/[^/]+|[^/@][^/]*)(?:\/(.*))?$/.exec(decoded);
  if (!m) return { kind: "invalid", message: `not a package path: /${decoded}` };
  const name = m[1]!;
  const problem = nameProblem(name);
  if (problem !== null) return { kind: "invalid", message: `${JSON.stringify(name)} is not a valid package name (${problem})` };
  const tail = m[2];
  if (tail === undefined || tail === "") return { kind: "packument", name };
  if (tail.startsWith("-/")) {
    const file = tail.slice(2);
    const prefix = `${basenameOf(name)}-`;
    if (file.includes("/") || !file.startsWith(prefix) || !file.endsWith(".tgz")) {
      return { kind: "invalid", message: `${file} is not a tarball of ${name} (expected ${prefix}<version>.tgz)` };
    }
    const version = file.slice(prefix.length, -".tgz".length);
    if (semver.valid(version) !== version) return { kind: "invalid", message: `${file}: ${JSON.stringify(version)} is not a version` };
    return { kind: "tarball", name, version };
  }
  if (tail.includes("/")) return { kind: "invalid", message: `not a package path: /${decoded}` };
  return { kind: "version", name, spec: tail };
}
