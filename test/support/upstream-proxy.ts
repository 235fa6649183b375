/**
 * A pass-through proxy in front of a fixture upstream registry, for response shapes the fixture does not
 * produce itself: tarballs of the names in `chunked` are sent WITHOUT a Content-Length header
 * (Transfer-Encoding: chunked), as a registry or CDN streaming a body of unknown length would.
 *
 * Packuments are rewritten so that their dist.tarball URLs point at the proxy (the worker only fetches
 * tarballs from its configured upstream's origin). Faults are not proxied: use the fixture directly for those.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface UpstreamProxy {
  /** e.g. http://127.0.0.1:PORT/ (trailing slash). */
  url: string;
  /** Package names whose tarballs are streamed without Content-Length. */
  chunked: Set<string>;
  close(): Promise<void>;
}

export async function startUpstreamProxy(target: string): Promise<UpstreamProxy> {
  const chunked = new Set<string>();
  const sockets = new Set<Socket>();
  let url = "";
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = req.url ?? "/";
      const upstream = await fetch(new URL(path.replace(/^\/+/, ""), target), {
        headers: { accept: String(req.headers.accept ?? "*/*") },
      });
      const body = Buffer.from(await upstream.arrayBuffer());
      const contentType = upstream.headers.get("content-type") ?? "application/octet-stream";
      const sep = path.indexOf("/-/");
      if (sep < 0) {
        const text = body.toString("utf8").split(target).join(url);
        res.writeHead(upstream.status, { "content-type": contentType, "content-length": String(Buffer.byteLength(text)) });
        res.end(text);
        return;
      }
      const name = decodeURIComponent(path.slice(1, sep));
      if (!chunked.has(name)) {
        res.writeHead(upstream.status, { "content-type": contentType, "content-length": String(body.length) });
        res.end(body);
        return;
      }
      // No Content-Length: node's http server falls back to chunked transfer encoding.
      res.writeHead(upstream.status, { "content-type": contentType });
      for (let offset = 0; offset < body.length; offset += 1024) res.write(body.subarray(offset, offset + 1024));
      res.end();
    })().catch(() => res.destroy());
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    chunked,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
