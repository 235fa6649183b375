import { AppError } from "../errors.ts";
import { invalidShape, printable, quote } from "./json.ts";
import { baseName } from "./names.ts";
import { withoutBuild } from "./versions.ts";

/** A registry-shaped tarball URL: `<registry>/<dir…>/-/<file>.tgz`, with the path percent-decoded. */
export interface TarballUrl {
  kind: "registry";
  href: string;
  /** The decoded path segment before `/-/` (`lodash`, `node`, or `@types/node` when written `@types%2fnode`). */
  last: string;
  /** The segment before that (`@types` for `…/@types/node/-/…`; a registry path prefix otherwise). */
  previous: string;
  /** Decoded path after the `-` segment, e.g. `lodash-4.17.21.tgz`. */
  file: string;
}

/** What a `resolved` URL (or a v1 `version` that is not semver) points at. */
export type Source = TarballUrl | { kind: "skip"; reason: string } | { kind: "unknown" };

const GIT = /^(?:git(?:\+[a-z0-9.+-]+)?:|git@|ssh:\/\/|github:|gitlab:|bitbucket:|gist:)/i;
/** npm's shorthand for GitHub (`user/repo#ref`), as old v1 files may hold it in `version` (never in `resolved`). */
const GITHUB_SHORTHAND = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(?:#.*)?$/;
/**
 * An http(s) URL whose path needs no normalisation: no percent-escapes, query, fragment, backslash or user info, so
 * the text after the host is exactly what `new URL(...).pathname` would give (dot segments are checked apart).
 */
const PLAIN_HTTP = /^https?:\/\/[A-Za-z0-9.-]+(?::[0-9]{1,5})?(\/[A-Za-z0-9._~!$&'()*+,;=:@-]*)+$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

/**
 * Classifies a dependency specifier as npm writes it into `resolved` (or into a v1 `version`). Registry tarball URLs
 * have the shape `<registry>/<name>/-/<basename>-<version>.tgz` on any host (mirrors such as Nexus or Artifactory keep
 * the shape under their own prefix); any other http(s) URL is a remote tarball.
 */
export function classifySource(spec: string, options: { githubShorthand?: boolean } = {}): Source {
  if (/^https?:\/\//i.test(spec)) {
    const tarball = tarballUrl(spec);
    return tarball ?? { kind: "skip", reason: `remote tarball URL (${short(spec)})` };
  }
  if (GIT.test(spec) || (options.githubShorthand === true && GITHUB_SHORTHAND.test(spec))) {
    return { kind: "skip", reason: `git dependency (${short(spec)})` };
  }
  if (/^file:/i.test(spec)) return { kind: "skip", reason: `local file dependency (${short(spec)})` };
  return { kind: "unknown" };
}

/** The URL's registry tarball shape, or null when it has none. */
function tarballUrl(spec: string): TarballUrl | null {
  if (PLAIN_HTTP.test(spec) && !DOT_SEGMENT.test(spec)) {
    // Fast path (the common case, run for every entry of a large lockfile): no URL object, no decoding.
    const pathname = spec.slice(spec.indexOf("/", spec.indexOf("//") + 2));
    const dash = pathname.lastIndexOf("/-/");
    if (dash < 0) return null;
    const file = pathname.slice(dash + 3);
    if (dash === 0 || !file.endsWith(".tgz")) return null; // needs at least "/<name>/-/<file>"
    const cut = pathname.lastIndexOf("/", dash - 1);
    const before = pathname.lastIndexOf("/", cut - 1);
    const previous = cut <= 0 ? "" : pathname.slice(before + 1, cut);
    return { kind: "registry", href: spec, last: pathname.slice(cut + 1, dash), previous, file };
  }
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return null;
  }
  if (url.search !== "" || url.hash !== "") return null;
  let segments: string[];
  try {
    segments = url.pathname.split("/").map((segment) => decodeURIComponent(segment));
  } catch {
    return null;
  }
  const dash = segments.lastIndexOf("-");
  if (dash < 2 || dash >= segments.length - 1) return null; // needs at least "/<name>/-/<file>"
  const file = segments.slice(dash + 1).join("/");
  if (!file.endsWith(".tgz")) return null;
  return { kind: "registry", href: url.href, last: segments[dash - 1] ?? "", previous: dash >= 3 ? (segments[dash - 2] ?? "") : "", file };
}

/**
 * Throws `lockfile_invalid` when a registry-shaped URL is the tarball of another package or version than the entry
 * claims: a lockfile that says `a@1.0.0` but downloads `b` or `a@0.9.0` is not to be trusted.
 */
export function assertTarballMatches(path: string, tarball: TarballUrl, name: string, version: string): void {
  const { last, previous, file } = tarball;
  const nameMatches = name.startsWith("@")
    ? last === name /* @scope%2fname */ || `${previous}/${last}` === name
    : last === name && !previous.startsWith("@"); // `node` must not match `…/@types/node/-/…`
  const base = baseName(name);
  const plain = withoutBuild(version);
  // `<basename>-<version>.tgz` is the registry's form; some old registries (sinopia) used the full scoped name.
  const fileMatches =
    file === `${base}-${version}.tgz` ||
    file === `${base}-${plain}.tgz` ||
    file === `${name}-${version}.tgz` ||
    file === `${name}-${plain}.tgz`;
  if (!nameMatches || !fileMatches) {
    throw new AppError(
      "lockfile_invalid",
      `${printable(path)}: resolved URL ${quote(tarball.href)} is not the registry tarball of ${printable(name)}@${printable(version)}`,
      { details: { path, name, version, resolved: tarball.href } },
    );
  }
}

function short(spec: string): string {
  return printable(spec, 100);
}

/**
 * Classifies an entry's `resolved`: a skip reason, a registry tarball (checked against name@version later), or none.
 * Throws `lockfile_invalid` for a value npm cannot install from.
 */
export function resolvedSource(path: string, resolved: string | null): Source | null {
  if (resolved === null) return null;
  const source = classifySource(resolved);
  if (source.kind === "unknown") {
    throw invalidShape(path, `resolved ${quote(resolved)} is not a URL npm can install from`, { resolved });
  }
  return source;
}
