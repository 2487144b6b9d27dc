// HTTP/1.1 upstream connections: keep-alive pools per endpoint, one request at
// a time per connection, driving the same handler callbacks as undici's
// dispatcher and h2-upstream.ts (onRequestStart, onResponseStart,
// onResponseData, onResponseEnd, onResponseError), so the pipeline, retries,
// timeouts and circuit breakers do not care which client carries an attempt.
//
// Why not undici: profiling the proxy under load (`--cpu-prof`, bench:proxy)
// put undici's per-request work (request object and header validation,
// llhttp callbacks crossing Wasm, stream plumbing, a setImmediate before each
// write) at about a fifth of the proxy's CPU. This client does what a proxy
// needs and nothing else: the request head is one string and one write, the
// response head is parsed in one pass over the bytes, and body slices are
// handed on without copies.
//
// Plain TCP connections read into one buffer shared by all of them (net's
// `onread`): no buffer is allocated per read, and body slices handed to
// onResponseData are borrowed, valid during the call only.
//
// HOT PATH — change with care: dispatch, the response parser and release run
// for every request. Per request there is one UpstreamRequest, the head string
// and the response header object; no closures (socket listeners are bound
// once per connection).

import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type SecureContext, type TLSSocket } from "node:tls";
import { localPrincipalOf, TlsSessionCache } from "./tls-sessions.js";
import { spiffeOf } from "../config/hosts.js";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { splitAuthority } from "../http/authority.js";
import { BODY_LENGTH, BODY_STATES_END, CHUNK_DATA, CHUNK_DATA_END, CHUNK_SIZE, CRLF, CRLFCRLF, chunkSize, HEAD, MAX_CHUNK_SIZE_LINE, TRAILERS } from "../http/h1-framing.js";

export interface H1PoolOptions {
  connectTimeoutMs: number;
  /** TCP keepalive idle time; undefined: no keepalive probes. */
  tcpKeepaliveMs?: number;
  /** Connections per endpoint (Envoy's max_connections bounds the cluster; single-endpoint clusters agree). */
  maxConnections: number;
  /** Requests per connection before it is closed; 0: unlimited. */
  maxRequestsPerConnection: number;
  /** Envoy's max_connection_duration: a connection this old is not reused; 0: no limit. */
  maxConnectionDurationMs: number;
  /** An idle connection is closed after this long (and sooner when the upstream's Keep-Alive says so). */
  idleTimeoutMs: number;
  /** TLS origination; the SNI defaults to the request's authority when `servername` is not set. */
  tls?: ConnectionOptions;
  /** The source address of the connections (Envoy's upstream_bind_config); the system's choice when unset. */
  localAddress?: string;
}

/** Envoy's default max_response_headers_kb. */
const MAX_HEAD_BYTES = 60 * 1024;
/** A connection is not reused this close to the upstream's announced keep-alive timeout (the close may be on its way). */
const KEEP_ALIVE_MARGIN_MS = 1000;
/** Where every plain connection's reads land; parsed before the next read can overwrite it. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const EMPTY_TRAILERS: Record<string, string | string[] | undefined> = Object.freeze({}) as Record<string, string | string[] | undefined>;

// Parser states of a connection, after the ones shared with the server (h1-framing.ts).
/** No response expected. */
const IDLE = BODY_STATES_END;
/** A body without content-length or chunking: it ends when the upstream closes. */
const BODY_UNTIL_CLOSE = BODY_STATES_END + 1;

/** Methods whose empty body is announced with content-length: 0, as undici and curl do. */
const EXPECTS_PAYLOAD = new Set(["POST", "PUT", "PATCH"]);

function upstreamError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** One attempt: the handler's controller, queued or on a connection. */
class UpstreamRequest implements Dispatcher.DispatchController {
  aborted = false;
  paused = false;
  reason: Error | null = null;
  connection: Connection | undefined;
  /** The response ended (or failed): later aborts are no-ops. */
  settled = false;
  readonly head: string;
  readonly body: Readable | null;
  readonly bodyless: boolean;
  readonly servername: string;

  constructor(
    readonly pool: OriginPool,
    readonly handler: Dispatcher.DispatchHandler,
    opts: Dispatcher.DispatchOptions,
  ) {
    const method = opts.method;
    const path = opts.path;
    if (!VALID_PATH.test(path)) throw upstreamError(`invalid request path ${JSON.stringify(path)}`, "UND_ERR_INVALID_ARG");
    const headers = opts.headers as string[];
    const body = (opts.body as Readable | null | undefined) ?? null;
    let head = `${method} ${path} HTTP/1.1\r\n`;
    let hasLength = false;
    let host = "";
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (name === "content-length") hasLength = true;
      else if (name === "host") host = value;
      head += `${name}: ${value}\r\n`;
    }
    if (body) {
      if (!hasLength) head += "transfer-encoding: chunked\r\n";
    } else if (!hasLength && EXPECTS_PAYLOAD.has(method)) head += "content-length: 0\r\n";
    this.head = head + "\r\n";
    this.body = body;
    this.chunked = body !== null && !hasLength;
    this.bodyless = method === "HEAD";
    this.servername = host;
  }

  readonly chunked: boolean;

  get peerPrincipal(): string | undefined {
    return this.connection?.peerPrincipal;
  }
  get localPrincipal(): string | undefined {
    return this.connection?.localPrincipal;
  }

  abort(reason: Error): void {
    if (this.aborted || this.settled) return;
    this.aborted = true;
    this.reason = reason;
    const conn = this.connection;
    if (conn) conn.destroyFor(this);
    else this.pool.dequeue(this);
    this.fail(reason);
  }

  pause(): void {
    this.paused = true;
    this.connection?.socket.pause();
  }

  resume(): void {
    this.paused = false;
    this.connection?.socket.resume();
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.handler.onResponseError?.(this, err);
  }
}

/** Request targets as undici accepts them: no spaces or control characters. */
const VALID_PATH = /^[\x21-\xff]*$/;
/** "HTTP/1.1 200 OK": the version, a space, three digits, then a reason or nothing. */
const STATUS_LINE = /^HTTP\/1\.[01] [1-9]\d\d( |$)/;
/** A lone CR or LF, or a NUL, in a head would smuggle a header through to the client. */
const BAD_HEAD = /\r(?!\n)|(?<!\r)\n|\0/;

/** Connections to one endpoint (origin "http://host:port" or "https://host:port"). */
class OriginPool {
  readonly idle: Connection[] = [];
  connected = 0;
  private readonly queue: UpstreamRequest[] = [];
  readonly host: string;
  readonly port: number;
  constructor(
    readonly upstream: H1Upstream,
    readonly origin: string,
  ) {
    const m = ORIGIN.exec(origin);
    if (!m) throw upstreamError(`invalid upstream origin ${JSON.stringify(origin)}`, "UND_ERR_INVALID_ARG");
    this.host = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!;
    this.port = m[3] ? Number(m[3]) : m[1] === "https" ? 443 : 80;
    if (this.port < 1 || this.port > 65535) throw upstreamError(`invalid upstream port in ${JSON.stringify(origin)}`, "UND_ERR_INVALID_ARG");
  }

  send(req: UpstreamRequest): void {
    const now = performance.now();
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      if (conn.reusableAt(now)) {
        conn.start(req);
        return;
      }
      conn.close();
    }
    if (this.connected < this.upstream.options.maxConnections) new Connection(this, req.servername).start(req);
    else this.queue.push(req);
  }

  dequeue(req: UpstreamRequest): void {
    const i = this.queue.indexOf(req);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** A connection finished its request and may serve another. */
  release(conn: Connection): void {
    const next = this.queue.shift();
    if (next) conn.start(next);
    else if (this.upstream.closing) conn.close(); // the cluster is gone: nothing more comes for it
    else {
      conn.idleSince = performance.now();
      this.idle.push(conn);
    }
  }

  /** A connection closed: its slot may open a connection for a queued request. */
  closed(conn: Connection): void {
    this.connected--;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    const next = this.queue.shift();
    if (next) new Connection(this, next.servername).start(next);
    else if (this.connected === 0) this.upstream.forget(this); // passthrough to many hosts must not grow the map forever
  }

  /** Closes connections idle past their time (a sweep, so that no timer is set per request). */
  sweep(now: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) if (!this.idle[i]!.reusableAt(now)) this.idle[i]!.close();
  }
}

const ORIGIN = /^(https?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._~-]+)(?::(\d{1,5}))?$/;

/** One upstream connection and its response parser. */
class Connection {
  readonly socket: Socket;
  private readonly createdAt = performance.now();
  idleSince = 0;
  private requests = 0;
  private current: UpstreamRequest | undefined;
  private state = IDLE;
  /** Bytes of a head, chunk-size line or trailer section that arrived split across reads. */
  private pending: Buffer | undefined;
  private remaining = 0;
  private trailers: Record<string, string | string[] | undefined> = EMPTY_TRAILERS;
  private keepAlive = true;
  /** The upstream's Keep-Alive timeout hint, ms (Infinity when it gave none). */
  private keepAliveHintMs = Infinity;
  private requestWritten = false;
  private connecting = true;
  private connectTimer: NodeJS.Timeout | undefined;
  private error: Error | undefined;
  private dead = false;

  constructor(
    private readonly pool: OriginPool,
    servername: string,
  ) {
    const o = pool.upstream.options;
    pool.connected++;
    if (o.tls) {
      // SNI names a host: never an address (an IPv6 literal keeps its brackets in an authority).
      const authority = o.tls.servername ?? splitAuthority(servername).host;
      const sni = authority && isIP(authority) === 0 && !authority.startsWith("[") ? authority : undefined;
      const context = (this.tlsContext = o.tls.secureContext); // one per certificate (pools.ts), read once per connection
      const sessions = pool.upstream.tlsSessions;
      const session = sessions.offer(pool.origin, context, sni);
      const socket = tlsConnect({ ...o.tls, secureContext: context, host: pool.host, port: pool.port, ...(sni ? { servername: sni } : {}), ...(session ? { session } : {}) });
      socket.on("session", (ticket: Buffer) => sessions.remember(pool.origin, context, sni, ticket));
      this.socket = socket;
      this.socket.once("secureConnect", this.onConnect);
    } else {
      this.socket = netConnect({ host: pool.host, port: pool.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}), onread: { buffer: READ_BUFFER, callback: this.onRead } });
      this.socket.once("connect", this.onConnect);
    }
    this.socket.on("data", this.onData); // TLS sockets (and none other) deliver their own buffers
    this.socket.setNoDelay(true);
    if (o.tcpKeepaliveMs !== undefined) this.socket.setKeepAlive(true, o.tcpKeepaliveMs);
    this.socket.on("error", this.onError);
    this.socket.on("close", this.onClose);
    this.socket.on("drain", this.onDrain);
    this.connectTimer = setTimeout(connectTimedOut, o.connectTimeoutMs, this);
  }

  /** The TLS context this connection was made with (its certificate). */
  private tlsContext: SecureContext | undefined;
  /** Over mutual TLS: the peer certificate's SPIFFE id and ours (the pipeline's metrics read them). */
  peerPrincipal: string | undefined;
  localPrincipal: string | undefined;

  private readonly onConnect = (): void => {
    this.connecting = false;
    if (this.pool.upstream.options.tls?.cert !== undefined) {
      const tls = this.socket as TLSSocket;
      // One parse of each certificate (getPeerCertificate would also hash it three ways and copy it whole).
      this.peerPrincipal = spiffeOf(tls.getPeerX509Certificate()?.subjectAltName);
      this.localPrincipal = localPrincipalOf(tls, this.tlsContext);
    }
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
  };

  connectTimeout(): void {
    if (this.connecting) this.socket.destroy(upstreamError("connect timeout", "UND_ERR_CONNECT_TIMEOUT"));
  }

  reusableAt(now: number): boolean {
    const o = this.pool.upstream.options;
    if (this.dead || this.socket.destroyed) return false;
    const idleLimit = Math.min(o.idleTimeoutMs, this.keepAliveHintMs - KEEP_ALIVE_MARGIN_MS);
    if (now - this.idleSince >= idleLimit) return false;
    return o.maxConnectionDurationMs <= 0 || now - this.createdAt < o.maxConnectionDurationMs;
  }

  start(req: UpstreamRequest): void {
    this.current = req;
    req.connection = this;
    this.requests++;
    this.state = HEAD;
    this.keepAlive = true;
    this.requestWritten = false;
    if (req.paused) this.socket.pause();
    this.socket.write(req.head, "latin1");
    const body = req.body;
    if (!body) {
      this.requestWritten = true;
      return;
    }
    body.on("data", this.onBodyData);
    body.once("end", this.onBodyEnd);
    body.once("error", this.onBodyError);
  }

  private readonly onBodyData = (chunk: Buffer): void => {
    const req = this.current!;
    const socket = this.socket;
    let ok: boolean;
    if (req.chunked) {
      if (chunk.length === 0) return;
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, "latin1");
      socket.write(chunk);
      ok = socket.write(CRLF);
      socket.uncork();
    } else ok = socket.write(chunk);
    if (!ok) req.body!.pause();
  };

  private readonly onDrain = (): void => {
    const body = this.current?.body;
    if (body && !this.requestWritten) body.resume();
  };

  private readonly onBodyEnd = (): void => {
    const req = this.current!;
    if (req.chunked) this.socket.write("0\r\n\r\n", "latin1");
    this.detachBody(req);
    this.requestWritten = true;
  };

  private readonly onBodyError = (err: Error): void => {
    const req = this.current;
    if (!req) return;
    this.destroyFor(req);
    req.fail(err);
  };

  private detachBody(req: UpstreamRequest): void {
    const body = req.body;
    if (!body) return;
    body.removeListener("data", this.onBodyData);
    body.removeListener("end", this.onBodyEnd);
    body.removeListener("error", this.onBodyError);
  }

  /** The request was aborted: the connection is mid-exchange and cannot be reused. */
  destroyFor(req: UpstreamRequest): void {
    if (this.current !== req) return;
    this.detachBody(req);
    this.current = undefined;
    this.dead = true;
    this.socket.destroy();
  }

  close(): void {
    this.dead = true;
    this.socket.destroy();
  }

  private readonly onError = (err: Error): void => {
    this.error ??= err;
  };

  private readonly onClose = (): void => {
    clearTimeout(this.connectTimer);
    this.dead = true;
    const req = this.current;
    this.current = undefined;
    if (req) {
      this.detachBody(req);
      if (this.state === BODY_UNTIL_CLOSE && this.error === undefined) this.complete(req);
      else req.fail(this.error ?? upstreamError("other side closed", "UND_ERR_SOCKET"));
    }
    this.pool.closed(this);
  };

  private readonly onRead = (nread: number, buf: Buffer): boolean => {
    // A view bounded to this read: searches must not run into an earlier read's bytes.
    this.onData(buf.subarray(0, nread));
    return true;
  };

  /** Bytes arrived (borrowed: parsed now, copied where kept). */
  private readonly onData = (chunk: Buffer): void => {
    let buf = chunk;
    const req = this.current;
    if (!req) {
      // Bytes from an idle connection (nothing was asked): it cannot be trusted with a request.
      this.close();
      return;
    }
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    try {
      this.parse(req, buf);
    } catch (err) {
      this.destroyFor(req);
      req.fail(err as Error);
    }
  };

  /** Runs the response parser over `buf` for `req`; throws on a malformed response. */
  private parse(req: UpstreamRequest, buf: Buffer): void {
    let at = 0;
    const end = buf.length;
    while (at < end && this.current === req) {
      switch (this.state) {
        case HEAD: {
          const stop = buf.indexOf(CRLFCRLF, at);
          if (stop < 0) {
            if (end - at > MAX_HEAD_BYTES) throw upstreamError("upstream response headers too large", "UND_ERR_HEADERS_OVERFLOW");
            this.pending = Buffer.from(buf.subarray(at));
            return;
          }
          this.parseHead(req, buf.toString("latin1", at, stop));
          at = stop + 4;
          break;
        }
        case BODY_LENGTH:
        case CHUNK_DATA: {
          // Counted bytes: the rest of a content-length body, or of one chunk.
          const n = Math.min(this.remaining, end - at);
          this.remaining -= n;
          this.deliver(req, buf, at, at + n);
          at += n;
          if (this.remaining > 0) break;
          if (this.state === BODY_LENGTH) this.complete(req);
          else this.state = CHUNK_DATA_END;
          break;
        }
        case CHUNK_SIZE: {
          const eol = buf.indexOf(CRLF, at);
          if (eol < 0) {
            if (end - at > MAX_CHUNK_SIZE_LINE) throw upstreamError("malformed chunk size", "HPE_INVALID_CHUNK_SIZE");
            this.pending = Buffer.from(buf.subarray(at));
            return;
          }
          const line = buf.toString("latin1", at, eol);
          const size = chunkSize(line);
          if (size < 0) throw upstreamError(`malformed chunk size ${JSON.stringify(line)}`, "HPE_INVALID_CHUNK_SIZE");
          this.remaining = size;
          this.state = this.remaining === 0 ? TRAILERS : CHUNK_DATA;
          at = eol + 2;
          break;
        }
        case CHUNK_DATA_END: {
          if (end - at < 2) {
            this.pending = Buffer.from(buf.subarray(at));
            return;
          }
          if (buf[at] !== 13 || buf[at + 1] !== 10) throw upstreamError("malformed chunk end", "HPE_STRICT");
          at += 2;
          this.state = CHUNK_SIZE;
          break;
        }
        case TRAILERS: {
          if (end - at >= 2 && buf[at] === 13 && buf[at + 1] === 10) {
            at += 2;
            this.complete(req);
            break;
          }
          const stop = buf.indexOf(CRLFCRLF, at);
          if (stop < 0) {
            if (end - at > MAX_HEAD_BYTES) throw upstreamError("upstream trailers too large", "UND_ERR_HEADERS_OVERFLOW");
            this.pending = Buffer.from(buf.subarray(at));
            return;
          }
          const trailers: Record<string, string | string[] | undefined> = {};
          const text = buf.toString("latin1", at, stop);
          if (BAD_HEAD.test(text)) throw upstreamError("malformed trailers", "HPE_INVALID_CONSTANT");
          parseFields(text, 0, trailers);
          this.trailers = trailers;
          at = stop + 4;
          this.complete(req);
          break;
        }
        case BODY_UNTIL_CLOSE:
          this.deliver(req, buf, at, end);
          at = end;
          break;
        default:
          // Bytes past the end of the response: the upstream is not speaking HTTP/1.1 as asked.
          this.keepAlive = false;
          return;
      }
    }
  }

  private deliver(req: UpstreamRequest, buf: Buffer, from: number, to: number): void {
    if (to > from && !req.aborted) req.handler.onResponseData?.(req, buf.subarray(from, to));
  }

  private parseHead(req: UpstreamRequest, head: string): void {
    const lineEnd = head.indexOf("\r\n");
    const statusLine = lineEnd < 0 ? head : head.slice(0, lineEnd);
    if (!STATUS_LINE.test(statusLine) || BAD_HEAD.test(head)) throw upstreamError(`malformed response head ${JSON.stringify(statusLine.slice(0, 40))}`, "HPE_INVALID_CONSTANT");
    const status = Number(statusLine.slice(9, 12));
    const headers: Record<string, string | string[] | undefined> = {};
    if (lineEnd >= 0) parseFields(head, lineEnd + 2, headers);
    if (status < 200 && status !== 101) return; // interim (100 Continue, 103): the final head follows
    this.trailers = EMPTY_TRAILERS;
    const connection = headers.connection;
    if (statusLine[7] === "0") this.keepAlive = typeof connection === "string" && connection.toLowerCase() === "keep-alive";
    else if (typeof connection === "string" && /(^|,)\s*close\s*(,|$)/i.test(connection)) this.keepAlive = false;
    const hint = headers["keep-alive"];
    if (typeof hint === "string") {
      const m = /timeout=(\d+)/i.exec(hint);
      if (m) this.keepAliveHintMs = Number(m[1]) * 1000;
    }
    const te = headers["transfer-encoding"];
    const cl = headers["content-length"];
    if (req.bodyless || status === 204 || status === 304 || status === 101) {
      this.state = IDLE;
      if (status === 101) this.keepAlive = false;
    } else if (te !== undefined) {
      if (typeof te !== "string" || !/(^|,)\s*chunked\s*$/i.test(te)) throw upstreamError(`unsupported transfer-encoding ${JSON.stringify(te)}`, "HPE_INVALID_TRANSFER_ENCODING");
      // Both framings at once is how responses get smuggled; llhttp (undici, Node) refuses it too.
      if (cl !== undefined) throw upstreamError("content-length with transfer-encoding", "HPE_UNEXPECTED_CONTENT_LENGTH");
      this.state = CHUNK_SIZE;
    } else if (cl !== undefined) {
      if (typeof cl !== "string" || !/^\d{1,15}$/.test(cl)) throw upstreamError(`invalid content-length ${JSON.stringify(cl)}`, "HPE_INVALID_CONTENT_LENGTH");
      this.remaining = Number(cl);
      this.state = this.remaining === 0 ? IDLE : BODY_LENGTH;
    } else {
      this.state = BODY_UNTIL_CLOSE;
      this.keepAlive = false;
    }
    if (!req.aborted) req.handler.onResponseStart?.(req, status, headers, "");
    if (this.state === IDLE && this.current === req) this.complete(req);
  }

  /** The response is complete: the handler hears of it, then the connection goes back to the pool (or closes). */
  private complete(req: UpstreamRequest): void {
    this.state = IDLE;
    if (!this.requestWritten) {
      // The upstream answered before the request body was all sent: that body cannot go anywhere now.
      this.keepAlive = false;
    }
    this.current = undefined;
    req.connection = undefined;
    this.detachBody(req);
    req.settled = true;
    if (!req.aborted) req.handler.onResponseEnd?.(req, this.trailers);
    this.finished();
  }

  /** Back to the pool when the exchange is over on both sides and the connection may be reused. */
  private finished(): void {
    if (this.current !== undefined || this.dead) return;
    if (this.socket.isPaused()) this.socket.resume();
    const o = this.pool.upstream.options;
    const spent = o.maxRequestsPerConnection > 0 && this.requests >= o.maxRequestsPerConnection;
    if (!this.keepAlive || spent || this.pending !== undefined) {
      this.close();
      return;
    }
    this.pool.release(this);
  }
}

function connectTimedOut(conn: Connection): void {
  conn.connectTimeout();
}

/** Parses "name: value" lines of `text` from `at` into `into` (names lowercased; repeated names collect into arrays). */
function parseFields(text: string, at: number, into: Record<string, string | string[] | undefined>): void {
  const end = text.length;
  while (at < end) {
    let eol = text.indexOf("\r\n", at);
    if (eol < 0) eol = end;
    const colon = text.indexOf(":", at);
    if (colon < 0 || colon > eol || colon === at) throw upstreamError(`malformed header line ${JSON.stringify(text.slice(at, Math.min(eol, at + 40)))}`, "HPE_INVALID_HEADER_TOKEN");
    const c = text.charCodeAt(at);
    if (c === 32 || c === 9) throw upstreamError("obsolete header line folding", "HPE_INVALID_HEADER_TOKEN");
    const name = text.slice(at, colon).toLowerCase();
    const value = text.slice(colon + 1, eol).trim();
    const prev = into[name];
    if (prev === undefined) into[name] = value;
    else if (typeof prev === "string") into[name] = [prev, value];
    else prev.push(value);
    at = eol + 2;
  }
}

/**
 * The HTTP/1.1 client of one cluster (or of the default pool): a pool of
 * connections per endpoint origin, limited by the cluster's connectionPool.
 */
export class H1Upstream {
  private readonly pools = new Map<string, OriginPool>();
  /** TLS sessions by endpoint, kept apart from the pools, which go when their last connection closes. */
  readonly tlsSessions = new TlsSessionCache();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(readonly options: H1PoolOptions) {}

  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const origin = opts.origin as string;
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new OriginPool(this, origin);
      this.pools.set(origin, pool);
      this.sweeper ??= setInterval(sweep, Math.max(1000, Math.min(this.options.idleTimeoutMs, 30_000)), this).unref();
    }
    const req = new UpstreamRequest(pool, handler, opts);
    handler.onRequestStart?.(req, {});
    if (!req.aborted) pool.send(req);
    return true;
  }

  /** Open connections per origin, as Envoy's cx_active (admin /clusters). */
  get stats(): Record<string, { connected: number }> {
    const out: Record<string, { connected: number }> = {};
    for (const [origin, pool] of this.pools) out[origin] = { connected: pool.connected };
    return out;
  }

  /** Drops an endpoint's pool once it has no connection left. */
  forget(pool: OriginPool): void {
    if (this.pools.get(pool.origin) === pool) this.pools.delete(pool.origin);
  }

  sweepIdle(): void {
    const now = performance.now();
    for (const pool of this.pools.values()) pool.sweep(now);
  }

  /** Closing: idle connections close now, busy ones once their exchange ends (queued requests still go out). */
  closing = false;

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    for (const pool of this.pools.values()) for (const conn of [...pool.idle]) conn.close();
    this.pools.clear();
  }
}

function sweep(upstream: H1Upstream): void {
  upstream.sweepIdle();
}
