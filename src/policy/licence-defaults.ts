/**
 * Default licence verdicts, for an organisation that ships proprietary software built on
 * npm packages. Ids are canonical SPDX ids (current, non-deprecated forms; the evaluator
 * maps deprecated spellings such as `GPL-3.0` or `GPL-2.0+` onto these).
 *
 * allow  – permissive: use, modify and redistribute with at most attribution / notice duties.
 * review – weak or file-level copyleft, or terms that need a human look for the way the
 *          package is used (e.g. modifications of MPL files must be published; LGPL needs
 *          relinking to stay possible when bundled).
 * deny   – strong or network copyleft, "source-available" licences that restrict use, and
 *          non-commercial licences.
 */
import type { LicencePolicy, Verdict } from "./licence-evaluate.ts";

const allow = (ids: readonly string[]): Array<[string, Verdict]> => ids.map((id) => [id, "allow"]);
const review = (ids: readonly string[]): Array<[string, Verdict]> => ids.map((id) => [id, "review"]);
const deny = (ids: readonly string[]): Array<[string, Verdict]> => ids.map((id) => [id, "deny"]);

export const defaultLicenceVerdicts: ReadonlyArray<[string, Verdict]> = [
  ...allow([
    "MIT",
    "MIT-0",
    "X11",
    "ISC",
    "0BSD",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-2-Clause-Views",
    "BSD-3-Clause",
    "BSD-3-Clause-Clear",
    "Apache-2.0",
    "Unlicense",
    "CC0-1.0",
    "WTFPL",
    "Zlib",
    "BSL-1.0",
    "Python-2.0",
    "PSF-2.0",
    "BlueOak-1.0.0",
    "Artistic-2.0",
    "PostgreSQL",
    "Unicode-DFS-2016",
    "Unicode-3.0",
    "AFL-2.1",
    "AFL-3.0",
    "UPL-1.0",
    // Creative Commons attribution-only: an attribution duty, nothing more.
    "CC-BY-3.0",
    // Fonts: the OFL's conditions bind the font files, not the software that ships them.
    "OFL-1.1",
  ]),
  ...review([
    "MPL-1.1",
    "MPL-2.0",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "EPL-1.0",
    "EPL-2.0",
    "CDDL-1.0",
    "CDDL-1.1",
    // CC-BY-4.0: the organisation's policy classes it with the weak-copyleft licences, so it
    // gets a human look (caniuse-lite, in nearly every front-end tree, uses it).
    "CC-BY-4.0",
    // Share-alike: derivatives of the licensed material itself must carry the same licence.
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    // EUPL: copyleft on the work itself, but its scope is the work and its derivatives
    // (not programs that merely use it — EU law treats interfaces needed for
    // interoperability as not protected), and its compatibility clause allows relicensing
    // to GPL/LGPL/MPL/EPL and others. That is closer to weak than to strong copyleft, so
    // it gets a human look rather than a flat denial.
    "EUPL-1.0",
    "EUPL-1.1",
    "EUPL-1.2",
  ]),
  ...deny([
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "AGPL-1.0-only",
    "AGPL-1.0-or-later",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "SSPL-1.0",
    "OSL-3.0",
    // Source-available, not open source: use restricted (competing services / production).
    "BUSL-1.1",
    "Elastic-2.0",
    // Non-commercial.
    "CC-BY-NC-1.0",
    "CC-BY-NC-2.0",
    "CC-BY-NC-2.5",
    "CC-BY-NC-3.0",
    "CC-BY-NC-3.0-DE",
    "CC-BY-NC-3.0-IGO",
    "CC-BY-NC-4.0",
    "CC-BY-NC-ND-1.0",
    "CC-BY-NC-ND-2.0",
    "CC-BY-NC-ND-2.5",
    "CC-BY-NC-ND-3.0",
    "CC-BY-NC-ND-3.0-DE",
    "CC-BY-NC-ND-3.0-IGO",
    "CC-BY-NC-ND-4.0",
    "CC-BY-NC-SA-1.0",
    "CC-BY-NC-SA-2.0",
    "CC-BY-NC-SA-2.0-DE",
    "CC-BY-NC-SA-2.0-FR",
    "CC-BY-NC-SA-2.0-UK",
    "CC-BY-NC-SA-2.5",
    "CC-BY-NC-SA-3.0",
    "CC-BY-NC-SA-3.0-DE",
    "CC-BY-NC-SA-3.0-IGO",
    "CC-BY-NC-SA-4.0",
  ]),
];

/** The default policy; `unknown` is the verdict for unidentified or unlisted licences. */
export function defaultLicencePolicy(unknown: Verdict = "review"): LicencePolicy {
  return { verdicts: new Map(defaultLicenceVerdicts), unknown, exceptions: "as-base" };
}
