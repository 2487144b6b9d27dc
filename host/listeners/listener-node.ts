// The node:http front door (engine "node"), and the fallback when the uWS binary
// cannot load. It answers absolute-form (HTTP proxy) requests and malformed ones
// as Envoy does (400, 431) too, but is slower than instio's own listener
// (listener-h1.ts, the default); node:http2's compatibility API reuses it.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Server as NetServer, type Socket } from "node:net";
import { pipeline, Transform, type Readable } from "node:stream";
import { MAX_TIMER_MS } from "../config/fields.js";
import type { HttpSettings } from "../config/model.js";
import { defaultHttpSettings } from "../config/settings.js";
import { headerValue, type ConnectionPeer, type Downstream, type DownstreamEvents } from "./downstream.js";
import { listenOn, type Listener, type RequestHandler, type UpgradeRouter } from "./listener.js";
import { relayRawUpgrade, upgradeHeaders, upgradeRequest } from "./upgrade.js";

/** Headers HTTP/2 forbids (RFC 9113 §8.2.2): node:http2 throws on them. */
const H2_CONNECTION_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/**
 * A request on node's HTTP/1.1 server, or on its HTTP/2 server through the
 * compatibility API (pseudo-headers give the authority; responses drop the
 * headers HTTP/2 forbids).
 */
export class NodeDownstream implements Downstream {
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  readonly query: string | undefined;
  readonly headers: string[];
  readonly remoteAddress: string;
  readonly hasBody: boolean;
  readonly localAddress: string;
  private readonly h2: boolean;
  bodyBytes = 0;
  events: DownstreamEvents | undefined;
  private done = false;

  constructor(
    private readonly req: IncomingMessage | Http2ServerRequest,
    private readonly res: ServerResponse | Http2ServerResponse,
    readonly scheme: string = "http",
    readonly peer: ConnectionPeer | undefined = undefined,
    readonly originalDestination: string | undefined = undefined,
  ) {
    this.h2 = req.httpVersionMajor === 2;
    this.method = req.method ?? "GET";
    let target = req.url ?? "/";
    let authority = (req.headers[":authority"] as string | undefined) ?? req.headers.host;
    // Absolute-form (RFC 9112 §3.2.2), as sent to an HTTP proxy: the target's authority wins over Host.
    if (!target.startsWith("/")) {
      const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
      if (m) {
        authority = m[1];
        target = m[2] || "/";
        if (target.startsWith("?")) target = `/${target}`;
      }
    }
    const q = target.indexOf("?");
    this.path = q < 0 ? target : target.slice(0, q);
    this.query = q < 0 ? undefined : target.slice(q + 1);
    this.authority = authority || undefined;
    const raw = req.rawHeaders;
    const headers: string[] = [];
    // HTTP/2 carries the authority as a pseudo-header; upstream (HTTP/1.1) it is the Host header.
    if (this.h2 && this.authority !== undefined && req.headers.host === undefined) headers.push("host", this.authority);
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (name.startsWith(":")) continue;
      headers.push(name, name === "host" && this.authority !== undefined ? this.authority : raw[i + 1]!);
    }
    this.headers = headers;
    const cl = req.headers["content-length"];
    // An HTTP/2 request without content-length may still have a body (the stream ends it).
    this.hasBody = (cl !== undefined && cl !== "0") || req.headers["transfer-encoding"] !== undefined || (this.h2 && cl === undefined && !(req as Http2ServerRequest).stream.endAfterHeaders);
    this.remoteAddress = req.socket.remoteAddress ?? "";
    this.localAddress = `${req.socket.localAddress ?? ""}:${req.socket.localPort ?? 0}`;
    // Over HTTP/2 the stream carries the writable state and its back-pressure.
    const writable = this.h2 ? (req as Http2ServerRequest).stream : (res as ServerResponse);
    res.on("close", () => {
      if (!writable.writableFinished) this.events?.onDownstreamAborted();
    });
    writable.on("drain", () => this.events?.onDownstreamWritable());
  }

  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  body(): Readable {
    // Counted on the way through: a second "data" listener on req would start
    // the flow before undici reads, and lose what arrived in between.
    const counted = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.bodyBytes += chunk.length;
        done(null, chunk);
      },
    });
    // The client may go away mid-body after the upstream client stopped listening: no 'error' may go unheard.
    counted.on("error", () => {});
    return pipeline(this.req, counted, () => {});
  }

  sendHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void {
    if (this.res.destroyed) return;
    const out = contentLength >= 0 ? [...headers, "content-length", String(contentLength)] : headers;
    if (this.h2 && !bodyless && headerValue(out, "grpc-status") !== undefined) {
      // A gRPC "trailers-only" response (status in the headers): held until we know whether a body follows,
      // so that it can go out as one HEADERS frame that ends the stream, as gRPC clients require.
      this.heldHead = { status, headers: out };
      return;
    }
    this.writeHead(status, out);
    if (bodyless) {
      this.done = true;
      this.res.end();
    }
  }

  private heldHead: { status: number; headers: string[] } | undefined;

  private flushHeldHead(): void {
    const held = this.heldHead;
    if (!held) return;
    this.heldHead = undefined;
    this.writeHead(held.status, held.headers);
  }

  sendChunk(chunk: Buffer): boolean {
    if (this.done || this.res.destroyed) return true;
    this.flushHeldHead();
    // node's streams keep what they are given until it is flushed: the borrowed chunk is copied.
    return (this.res as ServerResponse).write(Buffer.from(chunk)); // same signature on Http2ServerResponse
  }

  sendEnd(trailers?: Record<string, string | string[] | undefined>): void {
    if (this.done || this.res.destroyed) return;
    this.done = true;
    const held = this.heldHead;
    if (held && (!trailers || Object.keys(trailers).length === 0)) {
      (this.req as Http2ServerRequest).stream.respond({ ":status": held.status, ...this.h2Headers(held.headers) }, { endStream: true });
      return;
    }
    this.flushHeldHead();
    if (this.h2 && trailers && Object.keys(trailers).length > 0) {
      const t: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(trailers)) if (v !== undefined) t[k] = v;
      (this.res as Http2ServerResponse).addTrailers(t);
    }
    this.res.end();
  }

  sendLocal(status: number, headers: string[], body: string | Buffer): void {
    if (this.done || this.res.destroyed) return;
    if (this.h2 && Buffer.byteLength(body) === 0 && headerValue(headers, "grpc-status") !== undefined) {
      this.done = true; // a gRPC local reply: trailers-only, one HEADERS frame ending the stream
      (this.req as Http2ServerRequest).stream.respond({ ":status": status, ...this.h2Headers(headers) }, { endStream: true });
      return;
    }
    this.done = true;
    this.writeHead(status, [...headers, "content-length", String(Buffer.byteLength(body))]);
    this.res.end(body);
  }

  reset(): void {
    this.done = true;
    if (this.h2) (this.req as Http2ServerRequest).stream.close(0x2); // INTERNAL_ERROR, as Envoy resets the stream
    else (this.res as ServerResponse).destroy();
  }

  private writeHead(status: number, headers: string[]): void {
    if (!this.h2) {
      (this.res as ServerResponse).writeHead(status, headers);
      return;
    }
    (this.res as Http2ServerResponse).writeHead(status, this.h2Headers(headers));
  }

  /** A flat header list as an HTTP/2 header object, without the headers HTTP/2 forbids. */
  private h2Headers(headers: string[]): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      if (H2_CONNECTION_HEADERS.has(name)) continue;
      const prev = out[name];
      out[name] = prev === undefined ? headers[i + 1]! : Array.isArray(prev) ? [...prev, headers[i + 1]!] : [prev, headers[i + 1]!];
    }
    return out;
  }
}

export function listenNode(address: string, port: number, handler: RequestHandler, upgrades?: UpgradeRouter, http: HttpSettings = defaultHttpSettings(), reusePort = false): Promise<Listener> {
  const server = createServer({
    maxHeaderSize: http.maxRequestHeadersBytes,
    requestTimeout: 0,
    headersTimeout: http.requestHeadersTimeoutMs,
    // node checks its headers timeout on this period (30 s by default); a quarter of the timeout keeps it close.
    connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.floor(http.requestHeadersTimeoutMs / 4) || 30_000)),
    keepAliveTimeout: Math.min(http.idleTimeoutMs, MAX_TIMER_MS),
    requireHostHeader: true,
  }, (req, res) => {
    if (req.rawHeaders.length / 2 > http.maxHeadersCount) {
      // node keeps at most maxHeadersCount headers and drops the rest silently; Envoy answers 431.
      res.writeHead(431, { "content-type": "text/plain", connection: "close" }).end("Request Header Fields Too Large");
      return;
    }
    const ds = new NodeDownstream(req, res);
    ds.events = handler(ds);
  });
  server.maxHeadersCount = http.maxHeadersCount + 1;
  if (upgrades) {
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
      const headers: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push(req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!);
      const remote = socket.remoteAddress ?? "";
      socket.pause();
      upgrades(upgradeRequest(req.method ?? "GET", req.url ?? "/", headers, remote, "http"), (decision) => {
        relayRawUpgrade(decision, socket, head, `${req.method} ${req.url} HTTP/1.1`, upgradeHeaders(headers, remote, "http"));
      });
    });
  }
  // node:http parses with llhttp; its errors map to Envoy's codec replies.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return;
    const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
    const timedOut = err.code === "ERR_HTTP_REQUEST_TIMEOUT"; // headersTimeout: the request-headers timeout
    const status = tooLarge ? "431 Request Header Fields Too Large" : timedOut ? "408 Request Timeout" : "400 Bad Request";
    const body = tooLarge ? "Request Header Fields Too Large" : timedOut ? "request header timeout" : "Bad Request";
    socket.end(`HTTP/1.1 ${status}\r\ncontent-length: ${body.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${body}`);
  });
  return listenServer(server, address, port, "idle", reusePort);
}

/**
 * Binds a node:http server and wraps it as a Listener. `close` ends idle
 * connections (a proxy lets requests in flight finish) or all of them (admin); `reusePort` as listenOn's.
 */
export function listenServer(server: Server, address: string, port: number, closing: "idle" | "all", reusePort = false): Promise<Listener> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    listenOn(server, address, port, reusePort, () => {
      server.off("error", reject);
      const bound = server.address();
      resolve({
        engine: "node",
        address,
        port: typeof bound === "object" && bound ? bound.port : port,
        stopAccepting: () => {
          // net's close, not http's: http.Server.close also drops idle keep-alive connections, and a
          // client sending on one just then gets a reset. Draining responses carry Connection: close instead.
          if (server.listening) NetServer.prototype.close.call(server);
        },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            if (closing === "all") server.closeAllConnections();
            else server.closeIdleConnections();
          }),
      });
    });
  });
}
