/** Build package-lock.json (v3) documents for tests. */
export interface LockEntry {
  name: string;
  version: string;
  integrity?: string | null;
  resolved?: string | null;
}

export function lockfileV3(entries: LockEntry[]): string {
  const packages: Record<string, unknown> = { "": { name: "test-app", version: "1.0.0" } };
  for (const e of entries) {
    packages[`node_modules/${e.name}`] = {
      version: e.version,
      ...(e.resolved ? { resolved: e.resolved } : {}),
      ...(e.integrity ? { integrity: e.integrity } : {}),
    };
  }
  return JSON.stringify({ name: "test-app", version: "1.0.0", lockfileVersion: 3, requires: true, packages });
}
