// The uWebSockets.js front door (the fast one).
//
// uWS hands out its request object only during the handler call, so everything
// the pipeline needs is read there, synchronously. Writes from later callbacks
// are corked, as uWS requires, so headers and body leave in one syscall.
//
// Known limits of this uWS build (20.30), which JavaScript cannot fix (README,
// "Listener engines"): pipelined requests, more than 48 headers, malformed
// requests and absolute-form targets are mishandled, lax framing is forwarded,
// and every response carries "uWebSockets: 20". It is an option; instio's own
// listener (listener-h1.ts) is the default.

import { Readable } from "node:stream";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { packageFile, seaRoot } from "../package-root.js";
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from "uWebSockets.js";
import { headerValue, type Downstream, type DownstreamEvents } from "./downstream.js";
import type { Listener, RequestHandler, UpgradeRouter } from "./listener.js";
import { statusText } from "../http/status-line.js";
import { upgradeHeaders, upgradeRequest } from "./upgrade.js";
import type { WebSocket } from "ws";

const require = createRequire(import.meta.url);

type UwsModule = typeof import("uWebSockets.js");

/** Loads the native uWS binary; undefined (with the reason) when it cannot run here. */
export function loadUws(): { uws: UwsModule | undefined; reason: string } {
  // Envoy accepts 60 KiB of request headers; uWS reads its limit from the environment at load.
  process.env.UWS_HTTP_MAX_HEADERS_SIZE ??= String(60 * 1024);
  const warn = console.warn;
  let warned = "";
  console.warn = (...args: unknown[]) => {
    warned += args.join(" ");
  };
  try {
    // The single binary carries the one native binary this platform needs (its package picks it by the same name).
    const uws = (seaRoot() ? require(fileURLToPath(packageFile(`uws/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`))) : require("uWebSockets.js")) as UwsModule;
    // The package silently swaps in a slow JS imitation when the binary fails; that is not uWS.
    if (typeof (uws as { SSLApp?: unknown }).SSLApp !== "function") return { uws: undefined, reason: warned.trim() || "native binary missing" };
    return { uws, reason: "" };
  } catch (err) {
    return { uws: undefined, reason: (err as Error).message };
  } finally {
    console.warn = warn;
  }
}

const METHODS: Record<string, string> = { get: "GET", post: "POST", put: "PUT", delete: "DELETE", head: "HEAD", options: "OPTIONS", patch: "PATCH", connect: "CONNECT", trace: "TRACE" };

// Filled by collectHeader during req.forEach: a module-level target avoids a closure per request.
let collecting: string[] = [];
function collectHeader(name: string, value: string): void {
  collecting.push(name, value);
}

// Writes run inside res.cork(), as uWS requires outside its own callbacks, so
// that head and body leave in one syscall. One module-level callback reads what
// to write from these, instead of a closure per response.
const BODYLESS_HEAD = 0;
const CHUNK = 1;
const END = 2;
const LOCAL = 3;
let corkedDownstream: UwsDownstream | undefined;
let corkedKind = CHUNK;

function writeCorked(): void {
  const ds = corkedDownstream!;
  if (corkedKind === CHUNK) ds.writeChunk();
  else if (corkedKind === END) ds.writeEnd();
  else if (corkedKind === LOCAL) ds.writeLocal();
  else ds.writeBodylessHead();
}

function corkedWrite(ds: UwsDownstream, kind: number): void {
  corkedDownstream = ds;
  corkedKind = kind;
  ds.res.cork(writeCorked);
  corkedDownstream = undefined;
}

/**
 * uWS cuts an HTTP response that makes no progress for 10 s (its compiled-in HTTP timeout): a
 * client that stops reading that long would be disconnected, where Envoy waits for
 * stream_idle_timeout. While a response waits for its socket to drain, its socket is touched every
 * few seconds: pause() then resume() re-arms uWS's timeout and keeps it polling for writability.
 * Only responses under backpressure are in the set; one timer per listener serves them all.
 */
class WritableWaits {
  private readonly waiting = new Set<UwsDownstream>();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => {
      for (const ds of this.waiting) ds.keepAlive();
    }, WRITABLE_KEEPALIVE_MS);
    this.timer.unref();
  }

  add(ds: UwsDownstream): void {
    this.waiting.add(ds);
  }

  delete(ds: UwsDownstream): void {
    this.waiting.delete(ds);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Well inside uWS's 10 s HTTP timeout, whose resolution is about 4 s. */
const WRITABLE_KEEPALIVE_MS = 3000;

class UwsDownstream implements Downstream {
  readonly originalDestination = undefined;
  readonly peer = undefined;
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  readonly query: string | undefined;
  readonly headers: string[];
  readonly remoteAddress: string;
  readonly hasBody: boolean;
  bodyBytes = 0;
  events: DownstreamEvents | undefined;
  private aborted = false;
  private done = false;
  private stream: Readable | undefined;
  private contentLength = -1;
  // A chunk uWS could not take whole when the length is known (tryEnd): retried from onWritable.
  private pending: Buffer | undefined;
  private pendingOffset = 0;
  private headStatus = 0;
  private headHeaders: string[] = [];
  private bodyless = false;
  /** The response says "connection: close" (draining): uWS closes only when told at end(). */
  private closeAfter = false;
  /** The request body is throttled (res.pause()) until its reader wants more. */
  private bodyPaused = false;

  constructor(
    readonly res: HttpResponse,
    req: HttpRequest,
    readonly scheme: string,
    readonly localAddress: string,
    private readonly waits: WritableWaits,
  ) {
    const m = req.getMethod();
    this.method = METHODS[m] ?? m.toUpperCase();
    this.path = req.getUrl();
    this.query = req.getQuery();
    collecting = [];
    req.forEach(collectHeader);
    const h = (this.headers = collecting);
    // One pass over what forEach collected instead of three more native getHeader calls.
    let authority: string | undefined;
    let hasBody = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name === "host") authority ??= h[i + 1] || undefined;
      else if (name === "content-length") hasBody ||= h[i + 1] !== "0";
      else if (name === "transfer-encoding") hasBody = true;
    }
    this.authority = authority;
    this.hasBody = hasBody;
    this.remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    res.onAborted(() => {
      this.aborted = true;
      this.waits.delete(this);
      this.stream?.destroy();
      this.events?.onDownstreamAborted();
    });
  }

  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  body(): Readable {
    const res = this.res;
    const stream = new Readable({
      read: () => {
        this.bodyPaused = false;
        res.resume();
      },
    });
    this.stream = stream;
    res.onData((chunk, isLast) => {
      // uWS reuses the chunk's memory after this callback: copy it.
      this.bodyBytes += chunk.byteLength;
      const wantsMore = chunk.byteLength === 0 || stream.push(Buffer.from(chunk.slice(0)));
      if (isLast) {
        stream.push(null);
        // The body is all read: nothing is left to throttle. A socket left paused would not read the
        // next request on this keep-alive connection until uWS's timeout reset it (the client saw
        // ECONNRESET about ten seconds later): the stream, having ended, never asks to resume.
        if (this.bodyPaused) {
          this.bodyPaused = false;
          res.resume();
        }
      } else if (!wantsMore) {
        this.bodyPaused = true;
        res.pause();
      }
    });
    return stream;
  }

  sendHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void {
    if (this.aborted) return;
    this.contentLength = contentLength;
    this.headStatus = status;
    this.headHeaders = headers;
    this.bodyless = bodyless;
    if (bodyless) {
      corkedWrite(this, BODYLESS_HEAD);
      this.done = true;
      return;
    }
    // Headers are written with the first chunk (or the end), in one corked write.
  }

  writeHead(): void {
    const res = this.res;
    res.writeStatus(statusText(this.headStatus));
    const h = this.headHeaders;
    for (let i = 0; i < h.length; i += 2) {
      // uWS writes its own Connection header when end() is told to close; a
      // response streamed with tryEnd (known length) cannot be closed that way,
      // so there the header itself tells the client.
      if (h[i] === "connection" && !this.streamsWithTryEnd()) {
        this.closeAfter = h[i + 1] === "close";
        continue;
      }
      res.writeHeader(h[i]!, h[i + 1]!);
    }
    this.headStatus = 0;
  }

  private streamsWithTryEnd(): boolean {
    return this.contentLength >= 0 && !this.bodyless && !this.local;
  }

  /**
   * A response without a body (HEAD, 204, 304), whose length may still be reported: as a header of
   * our own, then endWithoutBody() with no arguments, which adds no length and ends the response
   * now. Given a length, uWS waits for that many bytes, leaving the response pending, and closes
   * the connection when the next request arrives; given undefined, it reports 2^63 bytes. Nor can
   * it close the connection after such a response: the header tells the client to.
   */
  writeBodylessHead(): void {
    this.writeHead();
    if (this.contentLength >= 0) this.res.writeHeader("content-length", String(this.contentLength));
    if (this.closeAfter) this.res.writeHeader("connection", "close");
    this.res.endWithoutBody();
  }

  private chunk: Buffer | undefined;
  private wrote = true;
  /** Chunks that arrived while one was still partly unwritten (undici may deliver after pause()). */
  private queue: Buffer[] = [];
  /** The upstream finished while bytes were still queued: end once they are out. */
  private endRequested = false;

  writeChunk(): void {
    if (this.headStatus !== 0) this.writeHead();
    const chunk = this.chunk!;
    if (this.contentLength >= 0) this.wrote = this.tryEndChunk(chunk);
    else {
      this.wrote = this.res.write(chunk);
      if (!this.wrote) this.waitWritable(() => this.writable());
    }
  }

  /**
   * Known length: tryEnd writes what the socket takes now and nothing more; the
   * rest of the chunk is retried from onWritable. Returns false when some of it
   * had to wait.
   */
  private tryEndChunk(chunk: Buffer, owned = false): boolean {
    const offset = this.res.getWriteOffset();
    const [ok, done] = this.res.tryEnd(chunk, this.contentLength);
    if (done) {
      this.done = true;
      return true;
    }
    if (ok) return true;
    this.pending = owned ? chunk : Buffer.from(chunk); // a borrowed chunk kept for onWritable is copied
    this.pendingOffset = offset;
    this.waitWritable((offset) => this.retryPending(offset));
    return false;
  }

  /** The socket is full: `handler` runs when it drains; meanwhile uWS's timeout is kept off (WritableWaits). */
  private waitWritable(handler: (offset: number) => boolean): void {
    this.waits.add(this);
    this.res.onWritable(handler);
  }

  /** Re-arms uWS's 10 s timeout while the client is slow to read (not while the request body is throttled: pause() is its). */
  keepAlive(): void {
    if (this.aborted || this.done) {
      this.waits.delete(this);
      return;
    }
    if (this.bodyPaused) return;
    this.res.pause();
    this.res.resume();
  }

  private retryPending(offset: number): boolean {
    this.waits.delete(this);
    const pending = this.pending;
    if (!pending) return true;
    const [ok, done] = this.res.tryEnd(pending.subarray(offset - this.pendingOffset), this.contentLength);
    if (done) {
      this.done = true;
      this.pending = undefined;
      this.queue.length = 0;
      return true;
    }
    if (!ok) {
      this.waits.add(this); // still waiting: uWS calls this handler again
      return false;
    }
    this.pending = undefined;
    while (this.queue.length > 0) {
      if (!this.tryEndChunk(this.queue.shift()!, true)) return false; // waits for the next writable event
      if (this.done) return true;
    }
    if (this.endRequested) this.finish();
    else this.events?.onDownstreamWritable();
    return true;
  }

  private writable(): boolean {
    this.waits.delete(this);
    this.events?.onDownstreamWritable();
    return true;
  }

  sendChunk(chunk: Buffer): boolean {
    if (this.aborted || this.done) return true;
    if (this.pending) {
      this.queue.push(Buffer.from(chunk)); // borrowed: copied to be kept
      return false;
    }
    this.chunk = chunk;
    corkedWrite(this, CHUNK);
    this.chunk = undefined;
    return this.wrote;
  }

  writeEnd(): void {
    if (this.headStatus !== 0) this.writeHead();
    if (this.contentLength > 0) {
      // Still open with a known length: the upstream sent less than it announced.
      this.res.close();
      return;
    }
    this.res.end(undefined, this.closeAfter);
  }

  private finish(): void {
    if (this.aborted || this.done) return;
    this.done = true;
    corkedWrite(this, END);
  }

  sendEnd(): void {
    if (this.pending) this.endRequested = true;
    else this.finish();
  }

  sendLocal(status: number, headers: string[], body: string | Buffer): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.local = true;
    this.headStatus = status;
    this.headHeaders = headers;
    this.localBody = body;
    corkedWrite(this, LOCAL);
  }

  private localBody: string | Buffer = "";
  private local = false;
  writeLocal(): void {
    this.writeHead();
    this.res.end(this.localBody, this.closeAfter);
  }

  reset(): void {
    if (this.aborted || this.done) return;
    this.done = true;
    this.res.close();
  }
}

const HANDSHAKE_HEADER = /^(sec-websocket-.*|connection|upgrade)$/;

/** `ws`, loaded at the first WebSocket upgrade: a proxy that never sees one does not carry it in memory. */
let wsModule: typeof import("ws") | undefined;
function wsClient(): typeof import("ws") {
  return (wsModule ??= require("ws") as typeof import("ws"));
}

/** A proxied WebSocket: the client side is uWS's, the upstream side a `ws` client. */
interface WsPair {
  upstream: WebSocket;
  /** Set once the client side is open: tells the upstream listeners the client is gone. */
  closed?: () => void;
}

/**
 * WebSocket upgrades on uWS: uWS speaks the protocol to the client, so the
 * proxy opens a WebSocket to the upstream with the client's headers and
 * relays messages (text or binary) and closes both ways.
 */
function serveWebSockets(app: TemplatedApp, upgrades: UpgradeRouter): void {
  app.ws<WsPair>("/*", {
    maxPayloadLength: 16 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      const headers: string[] = [];
      req.forEach((k, v) => headers.push(k, v));
      const target = req.getQuery() ? `${req.getUrl()}?${req.getQuery()}` : req.getUrl();
      const method = req.getCaseSensitiveMethod().toUpperCase();
      const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
      const key = req.getHeader("sec-websocket-key");
      const protocols = req.getHeader("sec-websocket-protocol");
      let aborted = false;
      res.onAborted(() => (aborted = true));
      upgrades(upgradeRequest(method, target, headers, remote, "http"), (decision) => {
        if (aborted) return;
        if (decision.kind === "reply") {
          res.cork(() => {
            res.writeStatus(`${decision.status}`);
            for (let i = 0; i < decision.headers.length; i += 2) res.writeHeader(decision.headers[i]!, decision.headers[i + 1]!);
            res.end(decision.body);
          });
          return;
        }
        // The ws client writes its own handshake headers; everything else goes as the client sent it.
        const forwarded = upgradeHeaders(headers, remote, "http");
        const upstreamHeaders: Record<string, string> = {};
        for (let i = 0; i < forwarded.length; i += 2) if (!HANDSHAKE_HEADER.test(forwarded[i]!)) upstreamHeaders[forwarded[i]!] = forwarded[i + 1]!;
        const host = decision.host.includes(":") ? `[${decision.host}]` : decision.host;
        const { WebSocket } = wsClient();
        const upstream = new WebSocket(`ws://${host}:${decision.port}${target}`, protocols ? protocols.split(",").map((p) => p.trim()) : [], { headers: upstreamHeaders, perMessageDeflate: false });
        upstream.once("open", () => {
          if (aborted) {
            upstream.close();
            return;
          }
          // No extensions: messages are relayed as they are, uncompressed on both legs.
          res.cork(() => res.upgrade<WsPair>({ upstream }, key, upstream.protocol, "", context));
        });
        const refuse = (status: string, body: string): void => {
          if (aborted) return;
          aborted = true;
          res.cork(() => res.writeStatus(status).end(body));
        };
        upstream.once("unexpected-response", (_req, response) => {
          refuse(`${response.statusCode ?? 502}`, "");
          upstream.terminate();
        });
        upstream.once("error", (err) => refuse("503 Service Unavailable", `upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: ${err.message}`));
      });
    },
    open: (ws) => {
      const { upstream } = ws.getUserData();
      let open = true;
      upstream.on("message", (data: Buffer, isBinary: boolean) => {
        if (open) ws.send(data, isBinary);
      });
      upstream.once("close", (code: number, reason: Buffer) => {
        if (!open) return;
        open = false;
        ws.end(code === 1005 || code === 1006 ? 1000 : code, reason);
      });
      ws.getUserData().closed = () => (open = false);
    },
    message: (ws, message, isBinary) => {
      const { upstream } = ws.getUserData();
      if (upstream.readyState === upstream.OPEN) upstream.send(Buffer.from(message.slice(0)), { binary: isBinary });
    },
    close: (ws, code, message) => {
      const data = ws.getUserData();
      data.closed?.();
      const upstream = data.upstream;
      if (upstream.readyState !== upstream.OPEN) return;
      // 1005 (no code) and 1006 (abnormal) may not be sent on the wire.
      if (code === 1005 || code === 1006) upstream.close();
      else upstream.close(code, Buffer.from(message.slice(0)));
    },
  });
}

export function listenUws(uws: UwsModule, address: string, port: number, handler: RequestHandler, upgrades?: UpgradeRouter): Promise<Listener> {
  const app: TemplatedApp = uws.App();
  let local = `${address}:${port}`;
  const waits = new WritableWaits();
  const onRequest = (res: HttpResponse, req: HttpRequest): void => {
    const ds = new UwsDownstream(res, req, "http", local, waits);
    ds.events = handler(ds);
  };
  if (upgrades) serveWebSockets(app, upgrades);
  app.any("/*", onRequest);
  return new Promise((resolve, reject) => {
    app.listen(address, port, (socket: us_listen_socket | false) => {
      if (!socket) {
        reject(new Error(`cannot listen on ${address}:${port} (uWebSockets.js)`));
        return;
      }
      const bound = uws.us_socket_local_port(socket);
      local = `${address}:${bound}`;
      let accepting = true;
      const stopAccepting = (): void => {
        if (accepting) uws.us_listen_socket_close(socket);
        accepting = false;
      };
      resolve({
        engine: "uws",
        address,
        port: bound,
        stopAccepting,
        close: async () => {
          stopAccepting();
          waits.stop();
          (app as { close?: () => void }).close?.();
        },
      });
    });
  });
}
