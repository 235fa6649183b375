/**
 * Static checks of the container setup (no Docker needed): docker-compose.yml, Dockerfile.api,
 * Dockerfile.worker, .dockerignore and .env.example against each other and against src/config.ts.
 * `.ci/compose-config.sh` additionally runs docker-compose's own parser where it is installed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { configKeys, loadConfig } from "../src/config.ts";
import { WORKER_BUNDLE, WORKER_NODE_FLAGS } from "../scripts/build-worker.ts";

const root = resolve(import.meta.dirname, "..");
const read = (file: string) => readFileSync(join(root, file), "utf8");

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = Record<string, Json>;

const asObj = (v: Json | undefined): Obj => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});

const compose = asObj(parse(read("docker-compose.yml"), { merge: true }) as Json);
const services = asObj(compose.services);
const service = (name: string): Obj => {
  const s = services[name];
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return asObj(s);
};

const APP_SERVICES = ["migrate", "api", "worker"] as const;
/** Variables the official postgres image reads (only allowed on the postgres service). */
const POSTGRES_IMAGE_VARS = new Set([
  "POSTGRES_USER",
  "POSTGRES_PASSWORD",
  "POSTGRES_PASSWORD_FILE",
  "POSTGRES_DB",
  "POSTGRES_INITDB_ARGS",
  "POSTGRES_INITDB_WALDIR",
  "POSTGRES_HOST_AUTH_METHOD",
  "PGDATA",
]);
/** Read straight from process.env (src/logger.ts), not through loadConfig: an empty value is not ignored. */
const READ_RAW = ["LOG_LEVEL", "NODE_ENV"];
const SECRETS = ["POSTGRES_PASSWORD", "JWT_SECRET"];

// ---- .env.example ----

interface EnvDoc {
  /** Uncommented lines: what `cp .env.example .env` sets. */
  active: Record<string, string>;
  /** Commented `#VAR=value` lines: the documented default. */
  documented: Record<string, string>;
}

function readEnvExample(): EnvDoc {
  const doc: EnvDoc = { active: {}, documented: {} };
  for (const line of read(".env.example").split("\n")) {
    const m = /^(#)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    (m[1] ? doc.documented : doc.active)[m[2]!] = m[3]!;
  }
  return doc;
}
const envExample = readEnvExample();

// ---- compose interpolation (the subset compose supports: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}) ----

interface Ref {
  name: string;
  op: "" | ":-" | "-" | ":?" | "?";
  arg: string;
}

function interpolate(text: string, vars: Record<string, string | undefined>, refs: Ref[] = []): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced, op, arg, bare) => {
    if (whole === "$$") return "$";
    const name = (braced ?? bare) as string;
    refs.push({ name, op: (op ?? "") as Ref["op"], arg: (arg ?? "") as string });
    const value = vars[name];
    switch (op) {
      case ":-":
        return value ? value : (arg as string);
      case "-":
        return value ?? (arg as string);
      case ":?":
      case "?":
        if (op === ":?" ? !value : value === undefined) throw new Error(`${name}: ${arg as string}`);
        return value!;
      default:
        return value ?? "";
    }
  });
}

function walkStrings(v: Json | undefined, fn: (s: string) => void): void {
  if (typeof v === "string") fn(v);
  else if (Array.isArray(v)) v.forEach((x) => walkStrings(x, fn));
  else if (v !== null && typeof v === "object") Object.values(v).forEach((x) => walkStrings(x, fn));
}

const allRefs: Ref[] = [];
walkStrings(compose as Json, (s) => interpolate(s, new Proxy({}, { get: () => "x" }), allRefs));
const referenced = new Set(allRefs.map((r) => r.name));

/** A service's environment as the container sees it, resolved with the values of `cp .env.example .env`. */
function environment(name: string, vars: Record<string, string | undefined> = envExample.active): Record<string, string> {
  const env = service(name).environment;
  const entries: [string, string][] = Array.isArray(env)
    ? env.map((e) => {
        const [k, ...v] = String(e).split("=");
        return [k!, v.join("=")];
      })
    : Object.entries(asObj(env)).map(([k, v]) => [k, v === null ? "" : String(v)]);
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(v, vars)]));
}

const envKeys = (name: string) => {
  const env = service(name).environment;
  return Array.isArray(env) ? env.map((e) => String(e).split("=")[0]!) : Object.keys(asObj(env));
};

function commandOf(name: string): string[] {
  const cmd = service(name).command;
  return Array.isArray(cmd) ? cmd.map(String) : typeof cmd === "string" ? cmd.split(/\s+/) : [];
}

/** Go-style durations as compose writes them: 40s, 1m30s, 1h, 500ms. */
function durationSeconds(value: Json | undefined): number {
  const text = String(value ?? "");
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) throw new Error(`not a duration: ${text}`);
  const unit = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 } as const;
  return parts.reduce((n, p) => n + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

function healthcheckText(name: string): string {
  const test = asObj(service(name).healthcheck).test;
  return Array.isArray(test) ? test.map(String).join(" ") : String(test ?? "");
}

/** The worker's command everywhere it runs in production: its bundle (built in the image) under WORKER_NODE_FLAGS. */
const WORKER_COMMAND = ["node", ...WORKER_NODE_FLAGS, WORKER_BUNDLE];

/**
 * Files a command runs: `.ts`/`.js` arguments and `npm run <script>`. The worker's bundle is built in
 * its image (Dockerfile.worker) from worker/main.ts, so that source must exist instead.
 */
function checkCommand(cmd: string[], where: string): void {
  const files = cmd.filter((a) => /\.(ts|js|mjs)$/.test(a)).map((f) => (f === WORKER_BUNDLE ? "worker/main.ts" : f));
  const scripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
  const runAt = cmd.findIndex((a, i) => a === "npm" && (cmd[i + 1] === "run" || cmd[i + 1] === "run-script"));
  expect(files.length + (runAt >= 0 ? 1 : 0), `${where}: runs no file or npm script: ${cmd.join(" ")}`).toBeGreaterThan(0);
  for (const f of files) expect(existsSync(join(root, f)), `${where}: ${f} does not exist`).toBe(true);
  if (runAt >= 0) expect(scripts[cmd[runAt + 2]!], `${where}: no npm script ${cmd[runAt + 2]}`).toBeDefined();
}

// ---- Dockerfiles ----

interface Instruction {
  op: string;
  args: string;
}

function dockerfile(file: string): Instruction[] {
  const lines = read(file).split("\n");
  const out: Instruction[] = [];
  let current = "";
  for (const raw of lines) {
    const line = raw.trim();
    if (line.startsWith("#") && current === "") continue;
    if (line.startsWith("#")) continue; // comment lines inside a continuation are dropped by Docker too
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    current += line;
    if (current.trim()) {
      const m = /^(\S+)\s*(.*)$/.exec(current.trim())!;
      out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() });
    }
    current = "";
  }
  return out;
}

/** The last stage's instructions (the image that runs), with the global ARG defaults. */
function runtimeStage(file: string): { stages: string[]; last: Instruction[]; args: Record<string, string> } {
  const all = dockerfile(file);
  const args: Record<string, string> = {};
  const stages: string[] = [];
  let last: Instruction[] = [];
  for (const ins of all) {
    if (ins.op === "ARG" && stages.length === 0) {
      const [k, v] = ins.args.split("=");
      args[k!] = v ?? "";
    }
    if (ins.op === "FROM") {
      stages.push(ins.args.replace(/\$\{?([A-Z_]+)\}?/g, (_, n: string) => args[n] ?? ""));
      last = [];
    }
    last.push(ins);
  }
  return { stages, last, args };
}

function envOf(instructions: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of instructions.filter((i) => i.op === "ENV")) {
    for (const pair of ins.args.split(/\s+/)) {
      const [k, ...v] = pair.split("=");
      if (k) env[k] = v.join("=");
    }
  }
  return env;
}

const execForm = (args: string): string[] => JSON.parse(args.replace(/^(--\S+\s+)*CMD\s+/, "")) as string[];

// ---- the checks ----

describe("docker-compose.yml", () => {
  it("has the postgres, migrate, api and worker services, and declares its named volumes", () => {
    expect(Object.keys(services).sort()).toEqual(["api", "migrate", "postgres", "worker"]);
    const volumes = Object.keys(asObj(compose.volumes));
    for (const name of Object.keys(services)) {
      for (const v of (service(name).volumes ?? []) as Json[]) {
        const source = typeof v === "string" ? v.split(":")[0]! : String(asObj(v).source);
        if (!source.startsWith(".") && !source.startsWith("/")) expect(volumes, `${name}: volume ${source}`).toContain(source);
      }
    }
  });

  it("passes only variables of src/config.ts to the app, and only the postgres image's own to postgres", () => {
    const known = new Set(configKeys);
    for (const name of APP_SERVICES) {
      for (const key of envKeys(name)) expect(known.has(key), `${name}: ${key} is not in the config schema (src/config.ts)`).toBe(true);
    }
    for (const key of envKeys("postgres")) expect(POSTGRES_IMAGE_VARS.has(key), `postgres: ${key} is not a postgres image variable`).toBe(true);
  });

  it("gives each app service an environment that src/config.ts accepts", () => {
    // As copied from .env.example, and with every documented default written out.
    for (const vars of [envExample.active, { ...envExample.documented, ...envExample.active }]) {
      for (const name of APP_SERVICES) {
        const env = environment(name, vars);
        expect(() => loadConfig(env), name).not.toThrow();
        for (const key of READ_RAW) if (key in env) expect(env[key], `${name}: ${key} must not be empty`).not.toBe("");
      }
    }
    expect(loadConfig(environment("api")).JWT_SECRET).toBeDefined();
    for (const name of APP_SERVICES) expect(loadConfig(environment(name)).NODE_ENV, name).toBe("production");
  });

  it("runs files and scripts that exist", () => {
    for (const name of APP_SERVICES) checkCommand(commandOf(name), name);
    expect(commandOf("api")).toEqual(["node", "--import", "tsx", "api/main.ts"]);
    expect(commandOf("worker")).toEqual(WORKER_COMMAND);
    expect(commandOf("migrate")).toEqual(["node", "--import", "tsx", "scripts/migrate.ts", "deploy"]);
  });

  it("publishes the api on its PORT, listening on every interface of the container", () => {
    const config = loadConfig(environment("api"));
    expect(config.HOST).toBe("0.0.0.0");
    const ports = (service("api").ports ?? []) as Json[];
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) {
      const target =
        typeof p === "object" && p !== null
          ? Number(asObj(p).target)
          : Number(interpolate(String(p), envExample.active).split("/")[0]!.split(":").at(-1));
      expect(target, `api port mapping ${JSON.stringify(p)}`).toBe(config.PORT);
    }
    const health = /127\.0\.0\.1:(\d+)\/health/.exec(healthcheckText("api"));
    expect(health, "api healthcheck fetches http://127.0.0.1:PORT/health").not.toBeNull();
    expect(Number(health![1])).toBe(config.PORT);
  });

  it("checks each worker's /health on WORKER_METRICS_PORT and lets it scale", () => {
    const worker = service("worker");
    const config = loadConfig(environment("worker"));
    expect(config.WORKER_METRICS_PORT, "worker: WORKER_METRICS_PORT must be set").toBeDefined();
    expect(config.HOST).toBe("0.0.0.0");
    const health = /127\.0\.0\.1:(\d+)\/health/.exec(healthcheckText("worker"));
    expect(health, "worker healthcheck fetches http://127.0.0.1:WORKER_METRICS_PORT/health").not.toBeNull();
    expect(Number(health![1])).toBe(config.WORKER_METRICS_PORT);
    expect(Number(asObj(worker.deploy).replicas)).toBeGreaterThanOrEqual(2);
    // --scale worker=N needs no fixed name and no fixed host port.
    expect(worker.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
  });

  it("gives workers longer to stop than their own shutdown deadline", () => {
    const grace = loadConfig(environment("worker")).WORKER_GRACE_SECONDS;
    const stop = durationSeconds(service("worker").stop_grace_period ?? "10s");
    expect(stop).toBeGreaterThan(grace);
    // worker/main.ts exits on its own after WORKER_GRACE_SECONDS + 15 s at the latest.
    expect(stop).toBeGreaterThan(grace + 15);
    // The API's close-with-grace waits up to 10 s.
    expect(durationSeconds(service("api").stop_grace_period ?? "10s")).toBeGreaterThan(10);
  });

  it("shares the package store: read-write for workers, read-only for the api, at STORAGE_DIR", () => {
    const mount = (name: string) => {
      const dir = loadConfig(environment(name)).STORAGE_DIR;
      const found = ((service(name).volumes ?? []) as Json[]).map(String).find((v) => v.split(":")[1] === dir);
      expect(found, `${name}: nothing mounted at STORAGE_DIR ${dir}`).toBeDefined();
      return found!.split(":");
    };
    const [workerVolume, , workerMode] = mount("worker");
    const [apiVolume, , apiMode] = mount("api");
    expect(workerVolume).toBe(apiVolume);
    expect(Object.keys(asObj(compose.volumes))).toContain(workerVolume);
    expect(workerMode ?? "rw").toBe("rw");
    expect(apiMode).toBe("ro");
  });

  it("starts in order: postgres healthy → migrate completed → api and workers", () => {
    const dep = (name: string, on: string) => asObj(asObj(service(name).depends_on)[on]).condition;
    expect(dep("migrate", "postgres")).toBe("service_healthy");
    expect(dep("api", "migrate")).toBe("service_completed_successfully");
    expect(dep("worker", "migrate")).toBe("service_completed_successfully");
    expect(healthcheckText("postgres")).toContain("pg_isready");
    // A one-shot must not be restarted after it succeeded; the long-running ones must be.
    expect(["no", undefined]).toContain(service("migrate").restart);
    for (const name of ["postgres", "api", "worker"]) expect(service(name).restart, name).toBe("unless-stopped");
    // The migrate job runs the API image.
    expect(service("migrate").image).toBe(service("api").image);
    expect(asObj(service("migrate").build).dockerfile ?? "Dockerfile.api").toBe(asObj(service("api").build).dockerfile);
    for (const name of APP_SERVICES) expect(existsSync(join(root, String(asObj(service(name).build).dockerfile))), name).toBe(true);
  });

  it("uses PostgreSQL 17 and points DATABASE_URL at it with its own credentials", () => {
    // 18's NOT NULL constraints cannot be introspected by the pinned Prisma schema engine.
    expect(String(service("postgres").image)).toMatch(/^postgres:17(?:$|[.-])/);
    const pg = environment("postgres");
    for (const name of APP_SERVICES) {
      const url = new URL(environment(name).DATABASE_URL!);
      expect(url.hostname, name).toBe("postgres");
      expect(url.port || "5432", name).toBe("5432");
      expect(decodeURIComponent(url.username), name).toBe(pg.POSTGRES_USER);
      expect(decodeURIComponent(url.password), name).toBe(pg.POSTGRES_PASSWORD);
      expect(url.pathname.slice(1), name).toBe(pg.POSTGRES_DB);
    }
  });

  it("has no default for a secret: compose refuses to start without it", () => {
    for (const secret of SECRETS) {
      const refs = allRefs.filter((r) => r.name === secret);
      expect(refs.length, secret).toBeGreaterThan(0);
      for (const r of refs) expect(r.op, `${secret} must be \${${secret}:?message}`).toBe(":?");
    }
    for (const name of Object.keys(services)) {
      for (const secret of SECRETS) {
        const raw = asObj(service(name).environment)[secret];
        if (raw !== undefined) expect(String(raw), `${name}: ${secret}`).toMatch(/^\$\{/);
      }
    }
    expect(() => environment("api", { ...envExample.active, JWT_SECRET: "" })).toThrow(/JWT_SECRET/);
    expect(() => environment("postgres", { ...envExample.active, POSTGRES_PASSWORD: undefined })).toThrow(/POSTGRES_PASSWORD/);
  });
});

describe(".env.example", () => {
  it("lists every variable docker-compose.yml interpolates, and nothing else", () => {
    const listed = new Set([...Object.keys(envExample.active), ...Object.keys(envExample.documented)]);
    for (const name of referenced) expect(listed.has(name), `.env.example does not list ${name}`).toBe(true);
    for (const name of listed) expect(referenced.has(name), `.env.example lists ${name}, which docker-compose.yml does not use`).toBe(true);
  });

  it("sets every required variable, explains how to generate secrets, and keeps them out of git", () => {
    for (const r of allRefs.filter((x) => x.op === ":?" || x.op === "?")) {
      expect(envExample.active[r.name], `${r.name} is required: give it an uncommented placeholder`).toBeTruthy();
    }
    expect(read(".env.example")).toContain("openssl rand -base64 48");
    expect(read(".gitignore").split("\n")).toContain(".env");
  });

  it("documents the defaults src/config.ts really applies", () => {
    const known = new Set(configKeys);
    const defaults = loadConfig({}) as unknown as Record<string, unknown>;
    for (const [key, value] of Object.entries(envExample.documented)) {
      if (!known.has(key) || key === "PUBLIC_URL") continue; // PUBLIC_URL: an example, it has no default
      const parsed = loadConfig({ [key]: value }) as unknown as Record<string, unknown>;
      expect(parsed[key], `.env.example: #${key}=${value} is not the default`).toEqual(defaults[key]);
    }
  });
});

describe("Dockerfiles", () => {
  const images = [
    { file: "Dockerfile.api", cmd: ["node", "--import", "tsx", "api/main.ts"], source: "api/main.ts", service: "api" },
    { file: "Dockerfile.worker", cmd: WORKER_COMMAND, source: "worker/main.ts", service: "worker" },
  ] as const;

  for (const image of images) {
    describe(image.file, () => {
      const { stages, last } = runtimeStage(image.file);
      const all = dockerfile(image.file);
      const env = envOf(last);

      it("builds in stages on node:22-bookworm-slim and runs as node in production", () => {
        expect(stages.length).toBeGreaterThanOrEqual(2);
        for (const s of stages) expect(s).toMatch(/^node:22-bookworm-slim(\s|$)/);
        expect(last.filter((i) => i.op === "USER").at(-1)?.args).toBe("node");
        expect(env.NODE_ENV).toBe("production");
        expect(env.HOST).toBe("0.0.0.0");
        const allowed = new Set([...configKeys, "NPM_CONFIG_UPDATE_NOTIFIER"]);
        for (const key of Object.keys(env)) expect(allowed.has(key), `${image.file}: ENV ${key} is not a config variable`).toBe(true);
        expect(() => loadConfig(env)).not.toThrow();
      });

      it("runs no dependency install script and generates the Prisma client in the build stage", () => {
        const installs = all.filter((i) => i.op === "RUN" && /\bnpm (ci|install|i)\b/.test(i.args));
        expect(installs.length).toBeGreaterThanOrEqual(2);
        for (const i of installs) expect(i.args, i.args).toContain("--ignore-scripts");
        expect(last.some((i) => i.op === "RUN" && /npm ci\b.*--omit=dev/.test(i.args))).toBe(true);
        expect(all.some((i) => i.op === "RUN" && /npm run db:generate/.test(i.args))).toBe(true);
        expect(last.some((i) => i.op === "COPY" && /--from=\S+\s+\S*src\/generated/.test(i.args))).toBe(true);
      });

      it("copies sources that exist and are not excluded by .dockerignore", () => {
        const ignored = new Set(read(".dockerignore").split("\n").map((l) => l.trim()));
        for (const ins of all.filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))) {
          const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith("--"));
          for (const src of parts.slice(0, -1)) {
            expect(existsSync(join(root, src)), `${image.file}: COPY ${src}`).toBe(true);
            expect(ignored.has(src), `${image.file}: COPY ${src}, but .dockerignore excludes it`).toBe(false);
          }
        }
      });

      it(`runs ${image.source} in exec form and has a HEALTHCHECK`, () => {
        const cmd = execForm(last.filter((i) => i.op === "CMD").at(-1)!.args);
        expect(cmd).toEqual(image.cmd);
        expect(existsSync(join(root, image.source))).toBe(true);
        expect(commandOf(image.service)).toEqual(cmd);
        const health = last.find((i) => i.op === "HEALTHCHECK");
        expect(health?.args).toMatch(/CMD \[/);
        expect(health?.args).toContain("/health");
      });
    });
  }

  it("agree with the compose file on ports", () => {
    const api = envOf(runtimeStage("Dockerfile.api").last);
    const worker = envOf(runtimeStage("Dockerfile.worker").last);
    expect(Number(api.PORT)).toBe(loadConfig(environment("api")).PORT);
    expect(runtimeStage("Dockerfile.api").last.find((i) => i.op === "EXPOSE")?.args).toBe(api.PORT);
    expect(Number(worker.WORKER_METRICS_PORT)).toBe(loadConfig(environment("worker")).WORKER_METRICS_PORT);
    expect(api.STORAGE_DIR).toBe(loadConfig(environment("worker")).STORAGE_DIR);
  });

  it("keep secrets, dependencies and generated code out of the build context", () => {
    const ignored = read(".dockerignore").split("\n").map((l) => l.trim());
    for (const entry of ["node_modules", ".env", ".git", ".data", "src/generated"]) expect(ignored).toContain(entry);
  });
});
