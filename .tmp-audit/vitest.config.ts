import { defineConfig } from "vitest/config";
export default defineConfig({
  test: { root: "/work/main", include: [".tmp-audit/**/*.test.ts"], globalSetup: ["test/global-setup.ts"], testTimeout: 60_000, hookTimeout: 120_000 },
});
