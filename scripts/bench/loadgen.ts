/**
 * A small keep-alive HTTP load generator (run as its own process by registry.ts, so that it does not
 * share the server's event loop): `connections` loops over one node:http Agent with keep-alive, each
 * sending GETs back to back for `durationMs`. Prints one JSON line: requests, bytes, errors, non-2xx,
 * latency percentiles, requests/s and MiB/s.
 *
 * argv[2]: JSON { url, headers?, connections, durationMs }
 */
import http from "node:http";

interface Args {
  url: string;
  headers?: Record<string, string>;
  connections: number;
  durationMs: number;
}

const args = JSON.parse(process.argv[2] ?? "{}") as Args;
const agent = new http.Agent({ keepAlive: true, maxSockets: args.connections, maxFreeSockets: args.connections });
let requests = 0;
let bytes = 0;
let errors = 0;
let non2xx = 0;
const latencies: number[] = [];

function once(): Promise<void> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get(args.url, { agent, headers: args.headers }, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => (n += c.length));
      res.on("end", () => {
        if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) {
          requests++;
          bytes += n;
          latencies.push(performance.now() - t0);
        } else non2xx++;
        resolve();
      });
      res.on("error", () => {
        errors++;
        resolve();
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
    req.on("error", () => {
      errors++;
      resolve();
    });
  });
}

async function main(): Promise<void> {
  // warm-up: open every connection once
  await Promise.all(Array.from({ length: args.connections }, () => once()));
  requests = 0;
  bytes = 0;
  latencies.length = 0;
  const t0 = performance.now();
  const end = t0 + args.durationMs;
  await Promise.all(
    Array.from({ length: args.connections }, async () => {
      while (performance.now() < end) await once();
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? NaN;
  agent.destroy();
  process.stdout.write(
    JSON.stringify({ requests, bytes, errors, non2xx, secs, rps: requests / secs, mibps: bytes / secs / 2 ** 20, p50: pct(50), p99: pct(99) }) + "\n",
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
