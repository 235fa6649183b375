export { scanTarball, TarballCorruptError, DEFAULT_MAX_ENTRIES, type ScanLimits, type TarballScanResult } from "./tarball-scan.ts";
export { compareSeverity, maxSeverity, ruleSeverity, severityRank, type Finding, type RuleId, type Severity } from "./findings.ts";
