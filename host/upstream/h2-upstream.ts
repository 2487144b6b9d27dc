// HTTP/2 upstreams for clusters whose port speaks HTTP2 or GRPC, as Istio
// chooses: h2c with prior knowledge, or over TLS when the cluster originates it
// (ISTIO_MUTUAL between sidecars, with Istio's ALPN istio-h2); one multiplexed
// node:http2 session per endpoint, reopened when it closes. It drives the same handler callbacks as
// undici's dispatcher (onRequestStart, onResponseStart, onResponseData,
// onResponseEnd with trailers, onResponseError), so the pipeline, retries and
// timeouts do not care which protocol carries an attempt.

import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Readable } from "node:stream";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { spiffeOf } from "../config/hosts.js";
import { splitAuthority } from "../http/authority.js";
import type { Dispatcher } from "undici";
import { isHopByHop } from "../http/headers.js";

/** Request headers HTTP/2 forbids, besides the hop-by-hop ones (and "te" other than "trailers"). */
const FORBIDDEN = new Set(["host", "http2-settings"]);

/** A session's mutual-TLS identities, known once it has connected (see UpstreamIdentity). */
interface SessionIdentity {
  peerPrincipal: string | undefined;
  localPrincipal: string | undefined;
}

class StreamController implements Dispatcher.DispatchController {
  aborted = false;
  paused = false;
  reason: Error | null = null;
  constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly identity: SessionIdentity | undefined,
  ) {}
  get peerPrincipal(): string | undefined {
    return this.identity?.peerPrincipal;
  }
  get localPrincipal(): string | undefined {
    return this.identity?.localPrincipal;
  }
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

  private readonly identities = new WeakMap<ClientHttp2Session, SessionIdentity>();

  /** `tls`: the cluster's client TLS options (their getters read per connection, as a renewal needs), ALPN included. */
  constructor(
    private readonly connectTimeoutMs: number,
    private readonly tls?: ConnectionOptions,
  ) {}

  /**
   * The session to `origin`. Over TLS without a configured SNI the request's host is the server name (as
   * for HTTP/1.1 upstreams), so sessions are kept per origin and server name.
   */
  private session(origin: string, authority: string | undefined): ClientHttp2Session {
    const tls = this.tls;
    const servername = tls && tls.servername === undefined && authority ? splitAuthority(authority).host : undefined;
    const key = servername ? `${origin}\u0000${servername}` : origin;
    let s = this.sessions.get(key);
    if (s && !s.closed && !s.destroyed) return s;
    // node:http2 forces its own ALPN list on https: origins, so the TLS socket is made here, with Istio's.
    s = tls ? connect(origin, { createConnection: (url: URL) => tlsConnect({ ...tls, host: url.hostname, port: Number(url.port), ...(servername ? { servername } : {}) }) }) : connect(origin);
    const session = s;
    session.setTimeout(this.connectTimeoutMs, () => {
      if (!session.connecting) return;
      session.destroy(Object.assign(new Error("connect timeout"), { code: "UND_ERR_CONNECT_TIMEOUT" }));
    });
    session.once("connect", () => {
      session.setTimeout(0);
      if (tls?.cert === undefined) return;
      const socket = session.socket as unknown as TLSSocket;
      const id = this.identityOf(session);
      id.peerPrincipal = spiffeOf(socket.getPeerX509Certificate()?.subjectAltName);
      id.localPrincipal = spiffeOf(socket.getX509Certificate()?.subjectAltName);
    });
    session.on("error", (err: Error) => this.failures.set(session, err)); // each stream reports it to its request
    session.once("close", () => {
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    });
    session.unref();
    this.sessions.set(key, session);
    return session;
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers: Record<string, string | string[]> = { ":method": opts.method, ":path": opts.path, ":scheme": this.tls ? "https" : "http" };
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
    const authority = headers[":authority"];
    const session = this.session(String(opts.origin), typeof authority === "string" ? authority : undefined);
    const stream = session.request(headers, { endStream: !body });
    const controller = new StreamController(stream, this.tls ? this.identityOf(session) : undefined);
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

  /** The session's identities, filled in when it connects (a stream's response comes after). */
  private identityOf(session: ClientHttp2Session): SessionIdentity {
    let id = this.identities.get(session);
    if (!id) this.identities.set(session, (id = { peerPrincipal: undefined, localPrincipal: undefined }));
    return id;
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}

