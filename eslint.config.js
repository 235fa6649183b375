// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "src/generated/", "dist/", ".data/", "coverage/", "**/*.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", Buffer: "readonly", console: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", URL: "readonly", fetch: "readonly", AbortSignal: "readonly", AbortController: "readonly", performance: "readonly", TextDecoder: "readonly", TextEncoder: "readonly", Response: "readonly", Request: "readonly", FormData: "readonly", Blob: "readonly", NodeJS: "readonly", globalThis: "readonly", structuredClone: "readonly", setImmediate: "readonly", queueMicrotask: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
  {
    // Product code logs through pino, never the console.
    files: ["src/**/*.ts", "api/**/*.ts", "worker/**/*.ts"],
    rules: { "no-console": "error" },
  },
);
