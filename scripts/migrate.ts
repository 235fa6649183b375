/**
 * Prisma migrations with no native engine: Prisma's schema engine compiled to WebAssembly
 * (`@prisma/schema-engine-wasm`, pinned) driven through `@prisma/adapter-pg`.
 * See docs/migrations.md. Commands:
 *   deploy          apply pending migrations (what `npm run migrate` runs)
 *   status          show applied / pending / edited migrations (exit 1 when not up to date)
 *   check           replay migrations on a shadow database and diff against schema.prisma (exit 1 on drift)
 *   create <name>   write prisma/migrations/<timestamp>_<name>/migration.sql from the schema diff
 * Needs DATABASE_URL. Creating a shadow database needs the CREATEDB privilege.
 *
 * This is a CLI tool, so it writes to stdout directly.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import pg from "pg";
import { PrismaPg } from "@prisma/adapter-pg";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import * as bg from "@prisma/schema-engine-wasm/schema_engine_bg";
import type { MigrationList, SchemaEngine } from "@prisma/schema-engine-wasm";

const root = resolve(import.meta.dirname, "..");
const schemaPath = process.env.PRISMA_SCHEMA ?? join(root, "prisma/schema.prisma");
const migrationsDir = process.env.PRISMA_MIGRATIONS ?? join(root, "prisma/migrations");
const filters = { externalTables: [], externalEnums: [] };

// adapter-pg has no mapping for OID 18 ("char", used by pg_catalog): report it as text.
// The patch lives only in this migration process, never in the app.
const resultProto = (pg as unknown as { Result: { prototype: { addFields(f: { dataTypeID: number }[]): void } } })
  .Result.prototype;
const addFields = resultProto.addFields;
resultProto.addFields = function (fields) {
  for (const f of fields) if (f.dataTypeID === 18) f.dataTypeID = 25;
  return addFields.call(this, fields);
};

function out(line: string): void {
  process.stdout.write(line + "\n");
}

function databaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL is required");
  return url;
}

class ShadowAwarePg extends PrismaPg {
  constructor(private readonly url: string) {
    super({ connectionString: url });
  }
  // PrismaPg's own shadow factory connects to the main database (pg lets connectionString override
  // `database`), so create a throwaway database ourselves and drop it on dispose.
  override async connectToShadowDb() {
    const name = `prisma_migrate_shadow_db_${randomUUID().replaceAll("-", "")}`;
    const admin = new pg.Client({ connectionString: this.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    const shadowUrl = new URL(this.url);
    shadowUrl.pathname = `/${name}`;
    const adapter = await new PrismaPg({ connectionString: shadowUrl.toString() }).connect();
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      await dispose();
      const dropper = new pg.Client({ connectionString: this.url });
      await dropper.connect();
      await dropper.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await dropper.end();
    };
    return adapter;
  }
}

// The wasm engine reports Rust panics through this global before throwing.
let panicMessage = "";
(globalThis as Record<string, unknown>).PRISMA_WASM_PANIC_REGISTRY = {
  set_message: (message: string) => {
    if (process.env.DEBUG) process.stderr.write(`panic: ${message}\n`);
    panicMessage = message;
  },
};

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
}

async function loadEngine(): Promise<SchemaEngine> {
  const wasmPath = join(root, "node_modules/@prisma/schema-engine-wasm/schema_engine_bg.wasm");
  // @types/node does not declare the WebAssembly globals.
  const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  const module = new wasm.Module(readFileSync(wasmPath));
  const instance = new wasm.Instance(module, { "./schema_engine_bg.js": bg });
  const exports = instance.exports as unknown as { __wbindgen_start(): void };
  (bg as unknown as { __wbg_set_wasm(e: unknown): void }).__wbg_set_wasm(exports);
  exports.__wbindgen_start();
  const log = (msg: string) => {
    if (process.env.DEBUG) process.stderr.write(`${msg}\n`);
  };
  const factory = bindMigrationAwareSqlAdapterFactory(new ShadowAwarePg(databaseUrl()));
  const schema = readFileSync(schemaPath, "utf8");
  return (bg.SchemaEngine as unknown as typeof SchemaEngine).new({ datamodels: [[schemaPath, schema]] }, log, factory);
}

function migrationsList(): MigrationList {
  const lockPath = join(migrationsDir, "migration_lock.toml");
  const dirs = existsSync(migrationsDir)
    ? readdirSync(migrationsDir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
    : [];
  return {
    baseDir: migrationsDir,
    lockfile: { path: "migration_lock.toml", content: existsSync(lockPath) ? readFileSync(lockPath, "utf8") : null },
    shadowDbInitScript: "",
    migrationDirectories: dirs.map((dir) => ({
      path: dir,
      migrationFile: { path: "migration.sql", content: { tag: "ok", value: readFileSync(join(migrationsDir, dir, "migration.sql"), "utf8") } },
    })),
  };
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

async function main(): Promise<number> {
  const [command, name] = process.argv.slice(2);
  const engine = await loadEngine();
  const schema = { files: [{ path: schemaPath, content: readFileSync(schemaPath, "utf8") }] };
  switch (command) {
    case "deploy": {
      const { appliedMigrationNames } = await engine.applyMigrations({ migrationsList: migrationsList(), filters });
      out(appliedMigrationNames.length ? `Applied: ${appliedMigrationNames.join(", ")}` : "No pending migrations.");
      return 0;
    }
    case "status": {
      const d = await engine.diagnoseMigrationHistory({ migrationsList: migrationsList(), optInToShadowDatabase: false, filters });
      out(JSON.stringify(d, null, 2));
      const clean = d.history === null && d.editedMigrationNames.length === 0 && d.failedMigrationNames.length === 0;
      return clean ? 0 : 1;
    }
    case "check":
    case "create": {
      const list = migrationsList();
      const from = list.migrationDirectories.length ? { tag: "migrations" as const, ...list } : { tag: "empty" as const };
      const to = { tag: "schemaDatamodel" as const, ...schema };
      const diff = await engine.diff({ from, to, script: command === "create", exitCode: true, filters });
      const text = (diff.stdout ?? "").trim();
      if (command === "check") {
        out(diff.exitCode === 0 || !text ? "No difference detected." : text);
        return diff.exitCode === 0 || !text ? 0 : 1;
      }
      if (!name || !/^[a-z0-9_]+$/.test(name)) throw new Error("usage: migrate create <name> (lowercase, digits, _)");
      if (diff.exitCode === 0 || !text || text.startsWith("-- This is an empty migration")) {
        out("No schema changes: nothing to create.");
        return 0;
      }
      mkdirSync(migrationsDir, { recursive: true });
      const lockPath = join(migrationsDir, "migration_lock.toml");
      if (!existsSync(lockPath)) writeFileSync(lockPath, 'provider = "postgresql"\n');
      const dir = join(migrationsDir, `${timestamp()}_${name}`);
      mkdirSync(dir);
      writeFileSync(join(dir, "migration.sql"), text + "\n");
      out(`Created ${dir}/migration.sql`);
      return 0;
    }
    default:
      throw new Error("usage: migrate deploy|status|check|create <name>");
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}${panicMessage ? `\n${panicMessage}` : ""}\n`);
    process.exit(2);
  },
);
