// instio's own HTTP/1.1 front door on node:net (engine "h1", the default).
//
// Why our own: the uWebSockets.js build that runs on Node 20 (20.30) answers
// pipelined requests wrongly, drops requests with more than 48 headers, closes
// malformed requests without a response and forwards ambiguous framing; none of
// that can be fixed from JS. This server answers as Envoy's HTTP/1 codec does:
//
//   - one request at a time per connection, pipelined requests in order (the
//     next one is parsed when the previous response is complete, as Envoy
//     pauses its parser after each message);
//   - 400 for a malformed request line or header, a bare CR or LF, obsolete
//     line folding, a repeated Host, a repeated or unparsable Content-Length,
//     both Transfer-Encoding and Content-Length, Transfer-Encoding whose final
//     coding is not chunked or that applies chunked twice (RFC 9112 §6.3, which
//     says 400 where Envoy answers 501); 501 for a coding before chunked that is
//     not implemented; 431 over the header limits (60 KiB, 100 headers: Envoy's
//     max_request_headers_kb and max_headers_count); 426 for HTTP/1.0, as Envoy
//     without accept_http_10 (Istio's default). Nothing reaches the pipeline,
//     and the connection closes. A missing Host is the pipeline's 400, as in
//     Envoy's HCM.
//   - a response that ends before its request was read closes the connection
//     (Envoy's HCM does the same), and so does a local 400;
//   - absolute-form targets (`GET http://host/path`, as HTTP_PROXY clients send)
//     are routed by their authority, which replaces Host (RFC 9112 §3.2.2);
//   - a request-headers timeout (slowloris) and an idle-connection timeout.
//
// HOT PATH — change with care: one regex test validates a whole head, one pass
// splits it; a response's head and first body bytes leave in one write.

import { createServer, type Server, type Socket } from "node:net";
import { STATUS_CODES } from "node:http";
import { Readable } from "node:stream";
import type { HttpSettings } from "../config/model.js";
import { headerValue, type ConnectionPeer, type Downstream, type DownstreamEvents } from "./downstream.js";
import { BODY_LENGTH, BODY_STATES_END, CHUNK_DATA, CHUNK_DATA_END, CHUNK_SIZE, CRLF, CRLFCRLF, chunkSize, HEAD, MAX_CHUNK_SIZE_LINE, TRAILERS } from "../http/h1-framing.js";
import { bindH1Server, type Listener, type RequestHandler, type UpgradeRouter } from "./listener.js";
import { statusText } from "../http/status-line.js";
import { relayRawUpgrade, upgradeHeaders, upgradeRequest } from "./upgrade.js";

const LAST_CHUNK = Buffer.from("0\r\n\r\n");
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

// The grammar of a request head (RFC 9112 §3, §5) in one expression: a token
// method, a target of visible bytes, HTTP/1.x, then "name:value" lines with a
// token name and a value without control characters (HTAB allowed). A bare CR
// or LF, a NUL, a space before a colon or a folded line (leading whitespace)
// all fail it.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const HEAD_GRAMMAR = new RegExp(`^${TOKEN} [\\x21-\\x7e\\x80-\\xff]+ HTTP/\\d\\.\\d(?:\\r\\n${TOKEN}:[\\t\\x20-\\x7e\\x80-\\xff]*)*$`);
const CONTENT_LENGTH = /^\d{1,15}$/;

// Parser states of a connection, after the ones shared with the client (h1-framing.ts).
/** The request is read; the next bytes belong to a pipelined request, parsed once the response is done. */
const WAITING = BODY_STATES_END;
const CLOSED = BODY_STATES_END + 1;

// Outgoing bytes are assembled in one scratch buffer and written from it. A
// write to a socket with nothing queued usually completes at once (loopback, a
// client that reads); the scratch buffer is then free again at once, and no
// memory was allocated for the response. When the kernel did not take it all,
// the socket keeps that buffer (at most one per connection) until nothing is
// queued any more, a pooled one becomes the scratch buffer, and the socket's
// later writes, queued behind it anyway, get buffers of their own size.
const OUT_BYTES = 128 * 1024;
const POOL_MAX = 64;
const pool: Buffer[] = [];
let scratch: Buffer = Buffer.allocUnsafeSlow(OUT_BYTES);

/** A buffer for `n` outgoing bytes of `conn`: the scratch buffer when nothing is queued on its socket. */
function outputBuffer(conn: H1Connection, n: number): Buffer {
  if (conn.socket.writableLength > 0 || n > OUT_BYTES) return Buffer.allocUnsafe(n);
  if (conn.held !== undefined) drained(conn);
  return scratch;
}

/** After writing from `buf`: a socket that did not take the scratch buffer's bytes at once keeps the buffer. */
function written(conn: H1Connection, buf: Buffer): void {
  if (buf !== scratch || conn.socket.writableLength === 0) return;
  conn.held = buf;
  scratch = pool.pop() ?? Buffer.allocUnsafeSlow(OUT_BYTES);
}

/** Nothing is queued on the socket any more: the buffer it kept is free. */
function drained(conn: H1Connection): void {
  if (pool.length < POOL_MAX) pool.push(conn.held!);
  conn.held = undefined;
}

const statusLines = new Map<number, string>();
/** "HTTP/1.1 200 OK\r\n", once per status. */
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) statusLines.set(status, (line = `HTTP/1.1 ${statusText(status)}\r\n`));
  return line;
}

/** A codec error: the status Envoy answers with, and why (names the rule at each throw). */
class Rejection {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {}
}

function rejectionBytes(r: Rejection): string {
  const body = r.status === 408 ? "request header timeout" : (STATUS_CODES[r.status] ?? "Bad Request");
  return `${statusLine(r.status)}content-length: ${body.length}\r\ncontent-type: text/plain\r\nserver: envoy\r\nconnection: close\r\n\r\n${body}`;
}

/** What the head parser hands back for a valid request. */
interface ParsedHead {
  method: string;
  authority: string | undefined;
  path: string;
  query: string | undefined;
  headers: string[];
  requestLine: string;
  chunked: boolean;
  contentLength: number;
  keepAlive: boolean;
  expectContinue: boolean;
  upgrade: boolean;
}

/** Parses and validates one request head (without its final CRLFCRLF); throws a Rejection. */
function parseHead(head: string, limits: HttpSettings): ParsedHead {
  if (!HEAD_GRAMMAR.test(head)) throw new Rejection(400, "malformed request head");
  let eol = head.indexOf("\r\n");
  if (eol < 0) eol = head.length;
  const sp1 = head.indexOf(" ");
  const sp2 = head.indexOf(" ", sp1 + 1);
  const version = head.slice(sp2 + 1, eol);
  // Envoy takes any version but 1.1 as HTTP/1.0, which it refuses unless accept_http_10 is set.
  if (version !== "HTTP/1.1") throw new Rejection(426, `unsupported version ${version}`);
  const method = head.slice(0, sp1);
  let target = head.slice(sp1 + 1, sp2);
  const headers: string[] = [];
  let hosts = 0;
  let host: string | undefined;
  let te: string | undefined;
  let tes = 0;
  let cl: string | undefined;
  let connection: string | undefined;
  let expect = false;
  let upgrade = false;
  let at = eol + 2;
  while (at < head.length) {
    let end = head.indexOf("\r\n", at);
    if (end < 0) end = head.length;
    const colon = head.indexOf(":", at);
    const name = head.slice(at, colon).toLowerCase();
    const value = head.slice(colon + 1, end).trim();
    headers.push(name, value);
    at = end + 2;
    switch (name) {
      case "host":
        hosts++;
        host = value;
        break;
      case "transfer-encoding":
        tes++;
        te = value;
        break;
      case "content-length":
        if (cl !== undefined) throw new Rejection(400, "repeated content-length"); // even equal ones, as Envoy's parser
        cl = value;
        break;
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case "expect":
        expect = value.toLowerCase() === "100-continue";
        break;
      case "upgrade":
        upgrade = true;
        break;
    }
  }
  if (headers.length / 2 > limits.maxHeadersCount) throw new Rejection(431, "too many headers");
  let authority = host;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const abs = /^https?:\/\/([^/?#]+)(.*)$/i.exec(target);
    if (abs) {
      // Absolute form: the target's authority is the request's, whatever Host says.
      authority = abs[1]!;
      target = abs[2] || "/";
      if (target.charCodeAt(0) === 63 /* ? */) target = `/${target}`;
      for (let i = 0; i < headers.length; i += 2) if (headers[i] === "host") headers[i + 1] = authority;
      if (hosts === 0) headers.push("host", authority);
      hosts = 1;
    } else if (!(target === "*" && method === "OPTIONS")) {
      throw new Rejection(400, "invalid request target");
    }
  }
  // RFC 9112 §3.2: more than one Host is a 400 (Envoy would join them with a comma and route on that).
  if (hosts > 1) throw new Rejection(400, "repeated host header");
  let chunked = false;
  let contentLength = 0;
  if (te !== undefined) {
    const codings = te.toLowerCase();
    if (tes > 1) throw new Rejection(400, "repeated transfer-encoding");
    if (cl !== undefined) throw new Rejection(400, "transfer-encoding with content-length");
    if (codings !== "chunked") {
      const last = codings.slice(codings.lastIndexOf(",") + 1).trim();
      // Chunked must be the final coding, or the body's end cannot be found (RFC 9112 §6.3); Envoy refuses other codings with 501.
      throw new Rejection(last === "chunked" ? 501 : 400, `unsupported transfer-encoding ${JSON.stringify(te)}`);
    }
    chunked = true;
  } else if (cl !== undefined) {
    if (!CONTENT_LENGTH.test(cl)) throw new Rejection(400, `invalid content-length ${JSON.stringify(cl)}`);
    contentLength = Number(cl);
  }
  const q = target.indexOf("?");
  return {
    method,
    authority,
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? undefined : target.slice(q + 1),
    headers,
    requestLine: head.slice(0, eol),
    chunked,
    contentLength,
    keepAlive: connection === undefined || !/(^|,)\s*close\s*(,|$)/i.test(connection),
    expectContinue: expect,
    upgrade: upgrade && connection !== undefined && /(^|,)\s*upgrade\s*(,|$)/i.test(connection),
  };
}

/** One request on an H1Connection: what the pipeline reads and writes. */
class H1Downstream implements Downstream {
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  readonly query: string | undefined;
  readonly headers: string[];
  readonly hasBody: boolean;
  bodyBytes = 0;
  events: DownstreamEvents | undefined;
  /** The response is complete (or the connection is gone): later writes are ignored. */
  done = false;
  /** The request body has been read to its end. */
  requestComplete: boolean;
  private stream: Readable | undefined;
  /** Body bytes that arrived before the pipeline asked for the body. */
  private early: Buffer[] | undefined;
  private earlyEnd = false;
  /** The response head, written with the first body bytes. */
  private head: string | undefined;
  private chunked = false;
  private remaining = -1;
  private closeAfter: boolean;
  aborted = false;

  constructor(
    private readonly conn: H1Connection,
    h: ParsedHead,
  ) {
    this.method = h.method;
    this.authority = h.authority;
    this.path = h.path;
    this.query = h.query;
    this.headers = h.headers;
    this.hasBody = h.chunked || h.contentLength > 0;
    this.requestComplete = !this.hasBody;
    this.closeAfter = !h.keepAlive;
  }

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  get localAddress(): string {
    return this.conn.listener.localAddress;
  }

  get scheme(): string {
    return this.conn.peer === undefined ? "http" : "https";
  }

  get peer(): ConnectionPeer | undefined {
    return this.conn.peer;
  }

  get originalDestination(): string | undefined {
    return this.conn.originalDestination;
  }

  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  body(): Readable {
    if (this.stream) return this.stream;
    const conn = this.conn;
    const stream = new Readable({ read: () => conn.resumeBody(this) });
    this.stream = stream;
    if (this.early) for (const c of this.early) stream.push(c);
    this.early = undefined;
    if (this.earlyEnd) stream.push(null);
    return stream;
  }

  /** Body bytes from the connection (owned: each read is a buffer of its own). False: stop reading for now. */
  pushBody(chunk: Buffer): boolean {
    this.bodyBytes += chunk.length;
    if (this.stream) return this.stream.push(chunk);
    (this.early ??= []).push(chunk);
    return this.bodyBytes < 64 * 1024;
  }

  endBody(): void {
    this.requestComplete = true;
    if (this.stream) this.stream.push(null);
    else this.earlyEnd = true;
  }

  /** The client went away or broke the body's framing: the exchange stops, quietly (no 'error' nobody listens to). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.stream?.destroy();
    if (!this.done) {
      this.done = true;
      this.events?.onDownstreamAborted();
    }
  }

  /** The response ended before the body was read: what still arrives is dropped by the connection. */
  dropBody(): void {
    this.stream?.destroy();
    this.early = undefined;
  }

  sendHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void {
    if (this.done) return;
    let head = statusLine(status);
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      if (name === "connection") {
        if (headers[i + 1]!.toLowerCase() === "close") this.closeAfter = true;
        continue;
      }
      head += `${name}: ${headers[i + 1]}\r\n`;
    }
    if (contentLength >= 0) {
      head += `content-length: ${contentLength}\r\n`;
      this.remaining = bodyless ? 0 : contentLength;
    } else if (!bodyless) {
      head += "transfer-encoding: chunked\r\n";
      this.chunked = true;
    }
    if (this.closeAfter || this.conn.closing || !this.requestComplete) {
      this.closeAfter = true;
      head += "connection: close\r\n";
    }
    head += "\r\n";
    if (bodyless) {
      this.conn.write(head);
      this.finish();
      return;
    }
    this.head = head;
  }

  sendChunk(chunk: Buffer): boolean {
    if (this.done || chunk.length === 0) return true;
    if (this.remaining > 0) this.remaining -= chunk.length;
    // One buffer for head, framing and data: the chunk is borrowed (h1-upstream's shared read buffer), so it is copied once, here.
    const head = this.head;
    this.head = undefined;
    const headLen = head === undefined ? 0 : head.length;
    const size = this.chunked ? chunk.length.toString(16) : "";
    const framing = this.chunked ? size.length + 4 : 0;
    const n = headLen + framing + chunk.length;
    const out = outputBuffer(this.conn, n);
    let at = head === undefined ? 0 : out.write(head, 0, "latin1");
    if (this.chunked) {
      at += out.write(size, at, "latin1");
      out[at++] = 13;
      out[at++] = 10;
    }
    at += chunk.copy(out, at);
    if (this.chunked) {
      out[at++] = 13;
      out[at++] = 10;
    }
    const ok = this.conn.write(out.length === n ? out : out.subarray(0, n));
    written(this.conn, out);
    return ok;
  }

  sendEnd(): void {
    if (this.done) return;
    const head = this.head;
    this.head = undefined;
    if (this.remaining > 0) {
      // The upstream sent less than it announced: the client must not take the short body as complete.
      if (head !== undefined) this.conn.write(head);
      this.done = true;
      this.conn.destroy();
      return;
    }
    if (this.chunked) {
      if (head !== undefined) this.conn.write(head + "0\r\n\r\n");
      else this.conn.write(LAST_CHUNK);
    } else if (head !== undefined) this.conn.write(head);
    this.finish();
  }

  sendLocal(status: number, headers: string[], body: string | Buffer): void {
    if (this.done) return;
    if (status === 400) this.closeAfter = true; // Envoy's HCM closes an HTTP/1 connection after a local 400
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    this.sendHead(status, headers, bytes.length, false);
    if (bytes.length > 0) this.sendChunk(bytes);
    this.sendEnd();
  }

  reset(): void {
    if (this.done) return;
    this.done = true;
    this.conn.destroy();
  }

  private finish(): void {
    this.done = true;
    this.conn.responseDone(this, this.closeAfter);
  }
}

/** One client connection: parses requests in order and hands each to the pipeline. */
class H1Connection {
  readonly remoteAddress: string;
  private state = HEAD;
  /** Unparsed bytes: a head split across reads, or what follows the current request. */
  private pending: Buffer | undefined;
  private current: H1Downstream | undefined;
  private remaining = 0;
  /** When the current head started arriving (request-headers timeout), or 0. */
  headStartedAt = 0;
  /** When the connection last became idle (idle timeout), or 0 while a request is in progress. */
  idleSince: number;
  /** The listener is closing: the connection ends after the current response. */
  closing = false;
  private paused = false;

  constructor(
    readonly socket: Socket,
    readonly listener: H1Server,
    /** The verified peer of a mutual-TLS connection (the inbound listener's); undefined for plaintext. */
    readonly peer: ConnectionPeer | undefined,
    /** Where a captured connection was going (listener-capture.ts); undefined otherwise. */
    readonly originalDestination: string | undefined,
  ) {
    this.remoteAddress = socket.remoteAddress ?? "";
    this.idleSince = listener.clock;
    socket.setNoDelay(true);
    socket.on("data", this.onData);
    socket.on("error", noop);
    socket.on("close", this.onClose);
    socket.on("drain", this.onDrain);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.pending) {
      chunk = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    this.feed(chunk);
  };

  private feed(buf: Buffer): void {
    try {
      this.parse(buf, 0);
    } catch (err) {
      // A parser bug must not take the process down: this connection ends, loudly.
      this.listener.onInternalError(err as Error);
      this.destroy();
    }
  }

  /** The scratch buffer the socket still writes from (returned to the pool once nothing is queued). */
  held: Buffer | undefined;

  private readonly onDrain = (): void => {
    if (this.held !== undefined && this.socket.writableLength === 0) drained(this);
    this.current?.events?.onDownstreamWritable();
  };

  private readonly onClose = (): void => {
    this.state = CLOSED;
    this.listener.connections.delete(this);
    this.current?.abort();
    this.current = undefined;
  };

  /** Runs the request parser over buf[at..]. */
  private parse(buf: Buffer, at: number): void {
    const end = buf.length;
    while (at < end) {
      switch (this.state) {
        case HEAD: {
          if (this.headStartedAt === 0) {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            while (at + 1 < end && buf[at] === 13 && buf[at + 1] === 10) at += 2;
            if (at >= end) return;
            this.headStartedAt = this.listener.clock;
            this.idleSince = 0;
          }
          const stop = buf.indexOf(CRLFCRLF, at);
          const limit = this.listener.limits.maxRequestHeadersBytes;
          if (stop < 0 || stop - at > limit) {
            if (end - at > limit) return this.reject(new Rejection(431, "request headers too large"));
            // A head with bare LFs never shows CRLFCRLF: refused now rather than at the headers timeout.
            if (hasBareLf(buf, at, end)) return this.reject(new Rejection(400, "bare LF in request head"));
            this.keep(buf, at);
            return;
          }
          let head: ParsedHead;
          try {
            head = parseHead(buf.toString("latin1", at, stop), this.listener.limits);
          } catch (err) {
            if (err instanceof Rejection) return this.reject(err);
            throw err;
          }
          at = stop + 4;
          this.headStartedAt = 0;
          if (head.upgrade && this.listener.upgrades) return this.upgrade(head, buf.subarray(at));
          this.startRequest(head);
          break;
        }
        case BODY_LENGTH:
        case CHUNK_DATA: {
          const n = Math.min(this.remaining, end - at);
          this.remaining -= n;
          const more = this.deliver(buf.subarray(at, at + n));
          at += n;
          if (this.remaining === 0) {
            if (this.state === BODY_LENGTH) this.requestRead();
            else this.state = CHUNK_DATA_END;
          }
          if (!more && at < end) {
            // Backpressure: the rest waits until the body stream asks for more.
            this.keep(buf, at);
            this.pause();
            return;
          }
          break;
        }
        case CHUNK_SIZE: {
          const eol = buf.indexOf(CRLF, at);
          if (eol < 0) {
            if (end - at > MAX_CHUNK_SIZE_LINE) return this.brokenBody("chunk size line too long");
            this.keep(buf, at);
            return;
          }
          const size = chunkSize(buf.toString("latin1", at, eol));
          if (size < 0) return this.brokenBody("invalid chunk size");
          this.remaining = size;
          at = eol + 2;
          this.state = this.remaining === 0 ? TRAILERS : CHUNK_DATA;
          break;
        }
        case CHUNK_DATA_END:
          if (end - at < 2) {
            this.keep(buf, at);
            return;
          }
          if (buf[at] !== 13 || buf[at + 1] !== 10) return this.brokenBody("missing CRLF after chunk data");
          at += 2;
          this.state = CHUNK_SIZE;
          break;
        case TRAILERS: {
          // Trailer fields are read and dropped (Envoy forwards none to an HTTP/1.1 upstream by default).
          if (end - at >= 2 && buf[at] === 13 && buf[at + 1] === 10) {
            at += 2;
            this.requestRead();
            break;
          }
          const stop = buf.indexOf(CRLFCRLF, at);
          if (stop < 0) {
            if (end - at > this.listener.limits.maxRequestHeadersBytes) return this.brokenBody("trailers too large");
            this.keep(buf, at);
            return;
          }
          at = stop + 4;
          this.requestRead();
          break;
        }
        case WAITING:
          // A pipelined request: parsed once the current response is complete.
          this.keep(buf, at);
          this.pause();
          return;
        default:
          return; // CLOSED
      }
    }
  }

  private keep(buf: Buffer, at: number): void {
    // A view of an owned read buffer: kept as is, copied only when concatenated with the next read.
    this.pending = at === 0 ? buf : buf.subarray(at);
  }

  private startRequest(head: ParsedHead): void {
    const ds = new H1Downstream(this, head);
    this.current = ds;
    if (head.chunked) this.state = CHUNK_SIZE;
    else if (head.contentLength > 0) {
      this.state = BODY_LENGTH;
      this.remaining = head.contentLength;
    } else this.state = WAITING;
    if (head.expectContinue && ds.hasBody) this.socket.write(CONTINUE, "latin1");
    ds.events = this.listener.handler(ds);
  }

  /** Body bytes for the current request. False: pause reading. */
  private deliver(chunk: Buffer): boolean {
    const ds = this.current;
    return ds === undefined || ds.done || ds.pushBody(chunk);
  }

  /** The current request's body has been read to its end. */
  private requestRead(): void {
    this.state = WAITING;
    const ds = this.current;
    if (!ds) return;
    if (ds.done) this.next();
    else ds.endBody();
  }

  resumeBody(ds: H1Downstream): void {
    if (this.current === ds) this.resume();
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
    const pending = this.pending;
    if (pending && this.state !== WAITING) {
      this.pending = undefined;
      this.feed(pending);
    }
  }

  /** The current response is complete. */
  responseDone(ds: H1Downstream, close: boolean): void {
    if (this.current !== ds) return;
    if (close || this.closing || !ds.requestComplete) {
      // Answered before the body was read (a local reply, an upstream that did not wait): the connection cannot be reused.
      ds.dropBody();
      this.current = undefined;
      this.state = CLOSED;
      this.socket.end();
      return;
    }
    this.next();
  }

  /** Starts on the next request: bytes already here (pipelined) are parsed now. */
  private next(): void {
    this.current = undefined;
    this.state = HEAD;
    this.idleSince = this.listener.clock;
    const pending = this.pending;
    this.pending = undefined;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (pending) this.feed(pending);
  }

  /** A codec error before the request reached the pipeline: Envoy's local reply, then close. */
  private reject(r: Rejection): void {
    this.state = CLOSED;
    this.pending = undefined;
    if (this.current && !this.current.done) {
      this.current.abort();
      this.current = undefined;
    }
    this.socket.end(rejectionBytes(r), "latin1");
  }

  /** The body's framing broke after the request went to the pipeline: 400 if nothing was answered yet, else a reset. */
  private brokenBody(reason: string): void {
    const ds = this.current;
    const answered = ds !== undefined && ds.done;
    if (ds) {
      ds.abort();
      this.current = undefined;
    }
    if (answered) this.destroy();
    else this.reject(new Rejection(400, reason));
  }

  /** `Upgrade` (WebSocket): the connection leaves the parser and is relayed as raw bytes. */
  private upgrade(head: ParsedHead, rest: Buffer): void {
    this.state = CLOSED;
    const socket = this.socket;
    socket.off("data", this.onData);
    socket.off("close", this.onClose);
    socket.off("drain", this.onDrain);
    this.listener.connections.delete(this);
    socket.pause(); // until the decision: bytes the client sends early wait in the socket
    const remote = this.remoteAddress;
    const early = Buffer.from(rest);
    this.listener.upgrades!(upgradeRequest(head.method, head.query === undefined ? head.path : `${head.path}?${head.query}`, head.headers, remote, "http"), (decision) => {
      relayRawUpgrade(decision, socket, early, head.requestLine, upgradeHeaders(head.headers, remote, "http"));
    });
  }

  write(data: string | Buffer): boolean {
    if (this.state === CLOSED && this.socket.destroyed) return true;
    return typeof data === "string" ? this.socket.write(data, "latin1") : this.socket.write(data);
  }

  destroy(): void {
    this.state = CLOSED;
    this.socket.destroy();
  }

  /** Listener closing: idle connections end now, busy ones after their response. */
  close(): void {
    this.closing = true;
    if (this.current === undefined && this.headStartedAt === 0) {
      this.state = CLOSED;
      this.socket.end();
    }
  }

  /** Timeouts, checked by the listener's sweep. */
  sweep(now: number): void {
    const l = this.listener.limits;
    if (this.headStartedAt > 0 && l.requestHeadersTimeoutMs > 0 && now - this.headStartedAt >= l.requestHeadersTimeoutMs) {
      this.headStartedAt = 0;
      this.reject(new Rejection(408, "request headers timeout"));
    } else if (this.idleSince > 0 && this.current === undefined && l.idleTimeoutMs > 0 && now - this.idleSince >= l.idleTimeoutMs) {
      this.state = CLOSED;
      this.socket.end();
    }
  }
}

function noop(): void {}

function hasBareLf(buf: Buffer, from: number, end: number): boolean {
  for (let i = buf.indexOf(10, from); i >= 0 && i < end; i = buf.indexOf(10, i + 1)) if (i === from || buf[i - 1] !== 13) return true;
  return false;
}

/** The listening side: the connections, their limits and the sweep that enforces the timeouts. */
export class H1Server {
  readonly connections = new Set<H1Connection>();
  localAddress = "";
  /**
   * The time of the last sweep: connections stamp their timeout starts with it instead of
   * reading the clock per request (the timeouts are only checked at sweeps anyway).
   */
  clock = performance.now();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly handler: RequestHandler,
    readonly upgrades: UpgradeRouter | undefined,
    /** The HCM's limits and timeouts (ProxySettings spec.http); the stream idle timeout is the pipeline's. */
    readonly limits: HttpSettings,
    readonly onInternalError: (err: Error) => void,
  ) {}

  /**
   * Serves `socket`: plaintext, or a TLS socket whose handshake is done, with its verified `peer`; for a captured
   * connection, with the destination its client meant.
   */
  accept(socket: Socket, peer?: ConnectionPeer, originalDestination?: string): void {
    this.connections.add(new H1Connection(socket, this, peer, originalDestination));
    if (!this.sweeper) {
      const shortest = Math.min(...[this.limits.requestHeadersTimeoutMs, this.limits.idleTimeoutMs].filter((ms) => ms > 0), 4000);
      this.sweeper = setInterval(sweepConnections, Math.max(10, Math.floor(shortest / 4)), this).unref();
    }
  }

  stop(): void {
    clearInterval(this.sweeper);
  }
}

function sweepConnections(server: H1Server): void {
  const now = (server.clock = performance.now());
  for (const c of server.connections) c.sweep(now);
}

export function listenH1(address: string, port: number, handler: RequestHandler, upgrades: UpgradeRouter | undefined, http: HttpSettings, onInternalError: (err: Error) => void, reusePort = false): Promise<Listener> {
  const h1 = new H1Server(handler, upgrades, http, onInternalError);
  const server: Server = createServer({ noDelay: true }, (socket) => h1.accept(socket));
  return bindH1Server(server, address, port, (bound) => (h1.localAddress = `${address}:${bound}`), () => {
    h1.stop();
    for (const c of h1.connections) c.close();
  }, reusePort);
}
