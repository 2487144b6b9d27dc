// A small node:http server for the admin and agent ports: a path table, method
// checks as Envoy's admin makes them, and a Listener handle.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Listener } from "../listeners/listener.js";
import { listenServer } from "../listeners/listener-node.js";

export interface Route {
  /** Mutating endpoints take POST only; Envoy answers a GET to them with 400. */
  method: "GET" | "POST";
  help: string;
  handle(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void | Promise<void>;
}

export function send(res: ServerResponse, status: number, body: string, type = "text/plain; charset=UTF-8"): void {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), "cache-control": "no-cache, max-age=0" }).end(body);
}

/** Requests from this machine only (Istio's agent refuses remote /quitquitquit and /drain). */
export function isLocal(req: IncomingMessage): boolean {
  const a = req.socket.remoteAddress ?? "";
  return a === "127.0.0.1" || a === "::1" || a === "::ffff:127.0.0.1" || a.startsWith("127.");
}

export function serveEndpoints(address: string, port: number, routes: Record<string, Route>, title: string): Promise<Listener> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://admin");
    const route = routes[url.pathname];
    if (url.pathname === "/" || url.pathname === "/help") {
      const lines = Object.entries(routes).map(([p, r]) => `  ${r.method === "POST" ? "POST " : ""}${p}: ${r.help}`);
      send(res, 200, `${title}\n${lines.join("\n")}\n`);
      return;
    }
    if (!route) {
      send(res, 404, `invalid path. admin commands are:\n${Object.keys(routes).join("\n")}\n`);
      return;
    }
    if (route.method === "POST" && req.method !== "POST") {
      send(res, 400, "This endpoint requires POST\n");
      return;
    }
    Promise.resolve(route.handle(req, res, url.searchParams)).catch((err: Error) => {
      if (!res.headersSent) send(res, 500, `${err.message}\n`);
    });
  });
  return listenServer(server, address, port, "all");
}
