// HTTP/2 upstreams (h2c, prior knowledge) for clusters whose port speaks
// HTTP2 or GRPC, as Istio chooses: one multiplexed node:http2 session per
// endpoint, reopened when it closes. It drives the same handler callbacks as
// undici's dispatcher (onRequestStart, onResponseStart, onResponseData,
// onResponseEnd with trailers, onResponseError), so the pipeline, retries and
// timeouts do not care which protocol carries an attempt.

import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { isHopByHop } from "../http/headers.js";

/** Request headers HTTP/2 forbids, besides the hop-by-hop ones (and "te" other than "trailers"). */
const FORBIDDEN = new Set(["host", "http2-settings"]);

class StreamController implements Dispatcher.DispatchController {
  aborted = false;
  paused = false;
  reason: Error | null = null;
  constructor(private readonly stream: ClientHttp2Stream) {}
  abort(reason: Error): void {
    this.aborted = true;
    this.reason = reason;
    this.stream.close(constants.NGHTTP2_CANCEL);
  }
  pause(): void {
    this.paused = true;
    this.stream.pause();
  }
  resume(): void {
    this.paused = false;
    this.stream.resume();
  }
}

export class H2Upstream {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  /** Why a session failed (a refused connection), reported to its streams instead of a generic cancel. */
  private readonly failures = new WeakMap<ClientHttp2Session, Error>();

  constructor(private readonly connectTimeoutMs: number) {}

  private session(origin: string): ClientHttp2Session {
    let s = this.sessions.get(origin);
    if (s && !s.closed && !s.destroyed) return s;
    s = connect(origin);
    const session = s;
    session.setTimeout(this.connectTimeoutMs, () => {
      if (!session.connecting) return;
      session.destroy(Object.assign(new Error("connect timeout"), { code: "UND_ERR_CONNECT_TIMEOUT" }));
    });
    session.once("connect", () => session.setTimeout(0));
    session.on("error", (err: Error) => this.failures.set(session, err)); // each stream reports it to its request
    session.once("close", () => {
      if (this.sessions.get(origin) === session) this.sessions.delete(origin);
    });
    session.unref();
    this.sessions.set(origin, session);
    return session;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers: Record<string, string | string[]> = { ":method": opts.method, ":path": opts.path, ":scheme": "http" };
    const flat = opts.headers as string[];
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i]!;
      const value = flat[i + 1]!;
      if (name === "host") headers[":authority"] = value;
      else if (name === "te") {
        if (value.toLowerCase() === "trailers") headers.te = "trailers";
      } else if (!isHopByHop(name) && !FORBIDDEN.has(name)) {
        const prev = headers[name];
        headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
      }
    }
    const body = opts.body as Readable | null | undefined;
    const session = this.session(String(opts.origin));
    const stream = session.request(headers, { endStream: !body });
    const controller = new StreamController(stream);
    handler.onRequestStart?.(controller, {});
    if (body) body.pipe(stream);
    let trailers: Record<string, string | string[] | undefined> = {};
    let failed = false;
    stream.on("response", (h: IncomingHttpHeaders) => {
      const status = Number(h[":status"]);
      const out: Record<string, string | string[] | undefined> = {};
      for (const [k, v] of Object.entries(h)) if (!k.startsWith(":")) out[k] = v;
      handler.onResponseStart?.(controller, status, out, "");
    });
    stream.on("trailers", (t: IncomingHttpHeaders) => {
      trailers = {};
      for (const [k, v] of Object.entries(t)) if (!k.startsWith(":")) trailers[k] = v;
    });
    stream.on("data", (chunk: Buffer) => handler.onResponseData?.(controller, chunk));
    stream.once("end", () => {
      if (!failed) handler.onResponseEnd?.(controller, trailers);
    });
    stream.once("error", (err: Error) => {
      failed = true;
      handler.onResponseError?.(controller, this.failures.get(session) ?? err);
    });
    stream.once("close", () => {
      // A stream reset without an error event (RST_STREAM from the upstream) still ends the attempt.
      if (!failed && !stream.readableEnded && stream.rstCode !== constants.NGHTTP2_NO_ERROR && !controller.aborted) {
        failed = true;
        handler.onResponseError?.(controller, Object.assign(new Error(`stream reset: ${stream.rstCode}`), { code: "UND_ERR_SOCKET" }));
      }
    });
    return true;
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}
