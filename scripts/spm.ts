#!/usr/bin/env -S node --import tsx
/**
 * spm: the command-line client of the Secure Package Manager API.
 *
 *   spm login [--url U] [--username X]         password from SPM_PASSWORD or a hidden prompt; stores the token
 *   spm upload <package-lock.json> [--wait]    vet a lockfile; --wait shows progress, then a summary (CI gate)
 *   spm status <request>                       progress and summary of one request
 *   spm retry [--request N] [ids…]             move failed packages back to the queue
 *   spm approve <ids…> [--request N] [--comment C] [--override]
 *   spm reject <ids…> [--request N] [--comment C]
 *   spm whoami | spm token
 *
 * Server and token: --url, else SPM_URL / SPM_TOKEN, else ~/.config/spm/config.json (written by login).
 * Exit codes: 0 ok; 1 something was rejected or failed (upload --wait, status); 2 usage, connection or API error.
 */
import { chmodSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createInterface } from "node:readline/promises";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ALL_STATUSES, STAGES, type PackageStatus } from "../src/queue/states.ts";

const EXIT_OK = 0;
const EXIT_GATE = 1;
const EXIT_ERROR = 2;
const DEFAULT_URL = "http://127.0.0.1:3000";

const USAGE = `usage: spm <command> [options]

  login [--url U] [--username X]        log in (password: SPM_PASSWORD or prompt); saves the token
  upload <package-lock.json> [--wait] [--interval S] [--timeout S]
                                        upload a lockfile; --wait: progress, summary, exit 1 if anything
                                        was rejected or failed
  status <request>                      progress and summary of a request
  retry [--request N] [ids...]          move failed packages (all, of a request, or ids) back to the queue
  approve <ids...> [--request N] [--comment C] [--override]
  reject <ids...> [--request N] [--comment C]
  whoami                                who the token belongs to
  token                                 print the token (for .npmrc: //host/npm/:_authToken=...)

Every command takes --url U. Environment: SPM_URL, SPM_TOKEN, SPM_PASSWORD.
Config: ${configPath()}
Exit codes: 0 ok, 1 rejected or failed packages, 2 usage / connection / API errors.
`;

class CliError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode = EXIT_ERROR,
  ) {
    super(message);
  }
}

const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);

// ---------------------------------------------------------------------------------------------
// configuration

interface StoredConfig {
  url?: string;
  token?: string;
  username?: string;
}

interface Settings {
  url: string;
  token: string | null;
}

function configPath(): string {
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "spm", "config.json");
}

function readConfig(): StoredConfig {
  try {
    const parsed = JSON.parse(readFileSync(configPath(), "utf8")) as unknown;
    return typeof parsed === "object" && parsed !== null ? (parsed as StoredConfig) : {};
  } catch {
    return {};
  }
}

function writeConfig(c: StoredConfig): void {
  const path = configPath();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, JSON.stringify(c, null, 2) + "\n", { mode: 0o600 });
  chmodSync(path, 0o600);
}

function settings(urlFlag: string | undefined): Settings {
  const file = readConfig();
  const url = (urlFlag ?? process.env.SPM_URL ?? file.url ?? DEFAULT_URL).replace(/\/+$/, "");
  try {
    new URL(url);
  } catch {
    throw new CliError(`not a URL: ${url}`, "pass --url http://host:port or set SPM_URL");
  }
  return { url, token: process.env.SPM_TOKEN || file.token || null };
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface ApiErrorBody {
  error?: { code?: string; message?: string; hint?: string } | string;
}

async function api<T>(
  s: Settings,
  method: string,
  path: string,
  opts: { json?: unknown; raw?: Buffer; headers?: Record<string, string>; auth?: boolean } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", ...(opts.headers ?? {}) };
  if (opts.auth !== false) {
    if (!s.token) throw new CliError("not logged in", "run `spm login` or set SPM_TOKEN");
    headers.authorization = `Bearer ${s.token}`;
  }
  let body: string | Buffer | undefined;
  if (opts.raw) {
    body = opts.raw;
    headers["content-type"] ??= "application/json";
  } else if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers["content-type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(`${s.url}${path}`, { method, headers, body });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(
      `cannot reach ${s.url}: ${cause?.code ?? cause?.message ?? (e as Error).message}`,
      "check --url / SPM_URL and that the server is running",
    );
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? (JSON.parse(text) as unknown) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const e = (parsed as ApiErrorBody | null)?.error;
    if (e && typeof e === "object") throw new CliError(e.message ?? `HTTP ${res.status}`, e.hint);
    if (typeof e === "string") throw new CliError(e);
    throw new CliError(`${method} ${path}: HTTP ${res.status} ${res.statusText}`);
  }
  return parsed as T;
}

// ---------------------------------------------------------------------------------------------
// prompts

async function readLineFromStdin(): Promise<string> {
  let data = "";
  for await (const chunk of process.stdin) {
    data += String(chunk);
    if (data.includes("\n")) break;
  }
  return data.split("\n")[0]!.replace(/\r$/, "");
}

async function promptVisible(question: string): Promise<string> {
  if (!process.stdin.isTTY) return readLineFromStdin();
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}

async function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return readLineFromStdin();
  err(question);
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  stdin.resume();
  return new Promise<string>((resolve, reject) => {
    let value = "";
    const finish = () => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      err("\n");
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          finish();
          resolve(value);
          return;
        }
        if (ch === "\u0003") {
          finish();
          reject(new CliError("cancelled"));
          return;
        }
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else if (ch >= " ") value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

// ---------------------------------------------------------------------------------------------
// argument parsing

type Options = NonNullable<ParseArgsConfig["options"]>;
const common: Options = { url: { type: "string" }, help: { type: "boolean", short: "h" } };

function parse(args: string[], options: Options) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CliError((e as Error).message, "see `spm --help`");
  }
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function positiveInt(v: string, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 2147483647) throw new CliError(`${what} must be a positive integer, not ${JSON.stringify(v)}`);
  return Number(v);
}

function seconds(v: string | undefined, what: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${what} must be a positive number of seconds`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// progress and summary

type Status = PackageStatus;
const STATUSES = ALL_STATUSES;
type Counts = Partial<Record<Status, number>>;

interface ProcessingStatus {
  request_id: number;
  counts: Counts;
  total: number;
  settled: number;
  percent_complete: number;
  done: boolean;
  packages: PackageRow[];
}

interface PackageRow {
  id: number;
  name: string;
  version: string;
  status: Status;
  attempts: number;
  last_error: { code: string; message: string | null } | null;
  reason: { code: string; message: string | null } | null;
}

const rank = (s: Status) => STATUSES.indexOf(s);
const n = (c: Counts, s: Status) => c[s] ?? 0;

export interface StageProgress {
  name: string;
  done: number;
  active: number;
  total: number;
}

/** Per stage: packages past it (rejected and failed ones count as finished everywhere) and in it. */
export function stageProgress(counts: Counts): StageProgress[] {
  const total = STATUSES.reduce((a, s) => a + n(counts, s), 0);
  const finished = n(counts, "rejected") + n(counts, "failed");
  return STAGES.map((stage) => {
    let done = finished;
    for (const s of STATUSES) if (s !== "rejected" && s !== "failed" && rank(s) >= rank(stage.done)) done += n(counts, s);
    return { name: stage.name, done, active: n(counts, stage.active), total };
  });
}

function bar(done: number, total: number, width: number, fancy: boolean): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  const [on, off] = fancy ? ["█", "░"] : ["#", "-"];
  return on.repeat(filled) + off.repeat(width - filled);
}

function outcomeLine(c: Counts): string {
  return `approved ${n(c, "approved")} · awaiting review ${n(c, "pending_approval")} · rejected ${n(c, "rejected")} · failed ${n(c, "failed")}`;
}

/** The lines of the live display, one per stage plus the outcome line. */
export function progressLines(counts: Counts, fancy: boolean): string[] {
  const stages = stageProgress(counts);
  const width = String(stages[0]?.total ?? 0).length;
  const lines = stages.map((s) => {
    const pct = s.total === 0 ? 100 : Math.floor((s.done / s.total) * 100);
    const active = s.active > 0 ? `  ${s.active} in progress` : "";
    return `${s.name.padEnd(9)}[${bar(s.done, s.total, 24, fancy)}] ${String(pct).padStart(3)}%  ${String(s.done).padStart(width)}/${s.total}${active}`;
  });
  lines.push(`${"outcome".padEnd(9)}${outcomeLine(counts)}`);
  return lines;
}

function plainProgress(counts: Counts): string {
  const stages = stageProgress(counts)
    .map((s) => `${s.name} ${s.done}/${s.total}`)
    .join(", ");
  return `${new Date().toISOString().slice(11, 19)} ${stages}; ${outcomeLine(counts)}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntilDone(s: Settings, requestId: number, intervalS: number, timeoutS: number | null): Promise<void> {
  const tty = process.stdout.isTTY === true;
  const started = Date.now();
  let drawn = 0;
  let lastPlain = "";
  let lastPlainAt = 0;
  let failures = 0;
  for (;;) {
    let st: ProcessingStatus;
    try {
      st = await api<ProcessingStatus>(s, "GET", `/api/packages/requests/${requestId}/processing-status?limit=1`);
      failures = 0;
    } catch (e) {
      if (!(e instanceof CliError) || !e.message.startsWith("cannot reach") || ++failures > 5) throw e;
      err(`${e.message}; retrying\n`);
      await sleep(intervalS * 1000);
      continue;
    }
    if (tty) {
      const lines = progressLines(st.counts, true);
      if (drawn > 0) out(`\x1b[${drawn}A`);
      out(lines.map((l) => `\x1b[2K${l}\n`).join(""));
      drawn = lines.length;
    } else {
      const stages = stageProgress(st.counts).map((x) => `${x.done}/${x.total}`).join() + outcomeLine(st.counts);
      if (st.done || (stages !== lastPlain && Date.now() - lastPlainAt >= 5000) || Date.now() - lastPlainAt >= 30_000) {
        out(`${plainProgress(st.counts)}\n`);
        lastPlain = stages;
        lastPlainAt = Date.now();
      }
    }
    if (st.done) return;
    if (timeoutS !== null && Date.now() - started > timeoutS * 1000) {
      throw new CliError(`request ${requestId} is not done after ${timeoutS} s`, `follow it with \`spm status ${requestId}\``);
    }
    await sleep(intervalS * 1000);
  }
}

async function allPackages(s: Settings, requestId: number): Promise<ProcessingStatus> {
  const pageSize = 10_000;
  const first = await api<ProcessingStatus>(s, "GET", `/api/packages/requests/${requestId}/processing-status?limit=${pageSize}&offset=0`);
  const packages = [...first.packages];
  for (let offset = pageSize; offset < first.total; offset += pageSize) {
    const page = await api<ProcessingStatus>(s, "GET", `/api/packages/requests/${requestId}/processing-status?limit=${pageSize}&offset=${offset}`);
    packages.push(...page.packages);
  }
  return { ...first, packages };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd() + "\n").join("");
}

const LABEL: Partial<Record<Status, string>> = { pending_approval: "awaiting review", rejected: "rejected", failed: "failed" };

function reasonOf(p: PackageRow): string {
  if (p.status === "failed") return p.last_error ? `${p.last_error.code}: ${p.last_error.message ?? ""}`.trim() : "";
  if (p.status === "rejected") return p.reason ? `${p.reason.code}: ${p.reason.message ?? ""}`.trim() : "";
  if (p.status === "pending_approval") return p.reason?.message ?? "";
  return p.status;
}

/** Prints the summary of a request; returns the exit code (1 when anything was rejected or failed). */
export function printSummary(st: ProcessingStatus): number {
  const c = st.counts;
  out(`\nrequest ${st.request_id}: ${st.total} packages${st.done ? "" : ` (${st.percent_complete}% processed, not done yet)`}\n\n`);
  const inPipeline = st.total - n(c, "approved") - n(c, "pending_approval") - n(c, "rejected") - n(c, "failed");
  const counts: string[][] = [
    ["RESULT", "COUNT"],
    ["approved", String(n(c, "approved"))],
    ["awaiting review", String(n(c, "pending_approval"))],
    ["rejected", String(n(c, "rejected"))],
    ["failed", String(n(c, "failed"))],
  ];
  if (inPipeline > 0) counts.push(["in the pipeline", String(inPipeline)]);
  out(table(counts));
  const order: Status[] = ["rejected", "failed", "pending_approval"];
  const listed = st.packages
    .filter((p) => order.includes(p.status))
    .sort((a, b) => order.indexOf(a.status) - order.indexOf(b.status) || a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  if (listed.length > 0) {
    out("\n");
    out(table([["ID", "PACKAGE", "STATUS", "REASON"], ...listed.map((p) => [String(p.id), `${p.name}@${p.version}`, LABEL[p.status] ?? p.status, reasonOf(p)])]));
  }
  const hints: string[] = [];
  if (n(c, "pending_approval") > 0) hints.push(`review: spm approve <ids> (approver) or spm reject <ids>`);
  if (n(c, "failed") > 0) hints.push(`retry failed packages: spm retry --request ${st.request_id}`);
  if (hints.length > 0) out(`\n${hints.join("\n")}\n`);
  return n(c, "rejected") + n(c, "failed") > 0 ? EXIT_GATE : EXIT_OK;
}

// ---------------------------------------------------------------------------------------------
// commands

async function login(args: string[]): Promise<number> {
  const { values } = parse(args, { username: { type: "string", short: "u" } });
  const s = settings(str(values.url));
  const username = str(values.username) ?? process.env.SPM_USERNAME ?? (await promptVisible("username: "));
  if (!username) throw new CliError("no username", "pass --username");
  const password = process.env.SPM_PASSWORD ?? (await promptHidden("password: "));
  if (!password) throw new CliError("no password", "type it at the prompt or set SPM_PASSWORD");
  const res = await api<{ token: string; expires_in: number; role: string }>(s, "POST", "/api/auth/login", {
    json: { username, password },
    auth: false,
  });
  writeConfig({ ...readConfig(), url: s.url, token: res.token, username });
  const u = new URL(s.url);
  const hours = Math.round((res.expires_in / 3600) * 10) / 10;
  out(`logged in to ${s.url} as ${username} (${res.role}); the token is valid for ${hours} h and saved in ${configPath()}\n\n`);
  out(`to install through the gate with npm:\n`);
  out(`  npm config set registry ${s.url}/npm/\n`);
  out(`  npm config set //${u.host}${u.pathname.replace(/\/+$/, "")}/npm/:_authToken "$(spm token)"\n`);
  return EXIT_OK;
}

async function token(args: string[]): Promise<number> {
  const { values } = parse(args, {});
  const s = settings(str(values.url));
  if (!s.token) throw new CliError("not logged in", "run `spm login` or set SPM_TOKEN");
  out(`${s.token}\n`);
  return EXIT_OK;
}

async function whoami(args: string[]): Promise<number> {
  const { values } = parse(args, {});
  const s = settings(str(values.url));
  const me = await api<{ username: string; role: string; expires_at: string }>(s, "GET", "/api/auth/me");
  out(`${me.username} (${me.role}) on ${s.url}; token expires ${me.expires_at}\n`);
  return EXIT_OK;
}

async function upload(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { wait: { type: "boolean", short: "w" }, interval: { type: "string" }, timeout: { type: "string" } });
  if (positionals.length !== 1) throw new CliError("upload needs exactly one lockfile", "spm upload package-lock.json [--wait]");
  const file = positionals[0]!;
  const s = settings(str(values.url));
  const interval = seconds(str(values.interval), "--interval", 2);
  const timeout = values.timeout === undefined ? null : seconds(str(values.timeout), "--timeout", 0);
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const res = await api<{ request_id: number; packages: { total: number; new: number; existing: number }; skipped: { path: string; reason: string }[] }>(
    s,
    "POST",
    "/api/packages/upload",
    { raw, headers: { "content-type": "application/json", "x-file-name": basename(file) } },
  );
  out(
    `request ${res.request_id}: ${res.packages.total} packages (${res.packages.new} new, ${res.packages.existing} already known)` +
      `${res.skipped.length > 0 ? `, ${res.skipped.length} entries skipped` : ""}\n`,
  );
  for (const sk of res.skipped.slice(0, 20)) out(`  skipped ${sk.path}: ${sk.reason}\n`);
  if (res.skipped.length > 20) out(`  … and ${res.skipped.length - 20} more skipped\n`);
  if (!values.wait) {
    out(`follow it with: spm status ${res.request_id}\n`);
    return EXIT_OK;
  }
  await waitUntilDone(s, res.request_id, interval, timeout);
  return printSummary(await allPackages(s, res.request_id));
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length !== 1) throw new CliError("status needs a request id", "spm status <request>");
  const id = positiveInt(positionals[0]!, "request");
  const s = settings(str(values.url));
  const st = await allPackages(s, id);
  if (!st.done) out(progressLines(st.counts, process.stdout.isTTY === true).join("\n") + "\n");
  return printSummary(st);
}

async function retry(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { request: { type: "string", short: "r" } });
  const s = settings(str(values.url));
  const request = str(values.request);
  if (request !== undefined && positionals.length > 0) throw new CliError("give either --request or package ids, not both");
  const body = request !== undefined ? { request_id: positiveInt(request, "--request") } : positionals.length > 0 ? { package_ids: positionals.map((p) => positiveInt(p, "package id")) } : {};
  const res = await api<{ retried: number }>(s, "POST", "/api/packages/processing/retry", { json: body });
  out(`${res.retried} failed package${res.retried === 1 ? "" : "s"} moved back to the queue\n`);
  return EXIT_OK;
}

async function decide(kind: "approve" | "reject", args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    request: { type: "string", short: "r" },
    comment: { type: "string", short: "m" },
    ...(kind === "approve" ? { override: { type: "boolean" } } : {}),
  });
  const s = settings(str(values.url));
  const request = str(values.request);
  if ((request === undefined) === (positionals.length === 0)) {
    throw new CliError(`${kind} needs package ids or --request N (not both)`, `spm ${kind} <ids...> | spm ${kind} --request N`);
  }
  const body: Record<string, unknown> =
    request !== undefined ? { request_id: positiveInt(request, "--request") } : { package_ids: positionals.map((p) => positiveInt(p, "package id")) };
  const comment = str(values.comment);
  if (comment !== undefined) body.comment = comment;
  if (values.override === true) body.override = true;
  const res = await api<Record<string, unknown> & { skipped?: { id: number; status: string | null; reason: string }[] }>(
    s,
    "POST",
    `/api/approver/packages/batch-${kind}`,
    { json: body },
  );
  const moved = kind === "approve" ? res.approved : res.rejected;
  out(`${kind === "approve" ? "approved" : "rejected"} ${typeof moved === "number" ? moved : 0}\n`);
  const skipped = Array.isArray(res.skipped) ? res.skipped : [];
  if (skipped.length > 0) {
    out(`skipped ${skipped.length}:\n`);
    for (const sk of skipped) out(`  #${sk.id}${sk.status ? ` (${sk.status})` : ""}: ${sk.reason}\n`);
  }
  return EXIT_OK;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    (command === undefined ? err : out)(USAGE);
    return command === undefined ? EXIT_ERROR : EXIT_OK;
  }
  if (args.includes("--help") || args.includes("-h")) {
    out(USAGE);
    return EXIT_OK;
  }
  switch (command) {
    case "login":
      return login(args);
    case "token":
      return token(args);
    case "whoami":
      return whoami(args);
    case "upload":
      return upload(args);
    case "status":
      return status(args);
    case "retry":
      return retry(args);
    case "approve":
    case "reject":
      return decide(command, args);
    default:
      throw new CliError(`unknown command ${command}`, "see `spm --help`");
  }
}

/** Run the CLI with these arguments (also the entry point of bin/spm.mjs). */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof CliError) {
        err(`error: ${e.message}\n`);
        if (e.hint) err(`hint: ${e.hint}\n`);
        process.exitCode = e.exitCode;
      } else {
        err(`error: ${(e as Error).stack ?? String(e)}\n`);
        process.exitCode = EXIT_ERROR;
      }
    },
  );
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.filename === realpathSync(process.argv[1]);
if (invokedDirectly) run(process.argv.slice(2));
