import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  // Not env("DATABASE_URL"): generating the client must work without a database URL.
  datasource: { url: process.env.DATABASE_URL },
});
