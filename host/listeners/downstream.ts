// What a listener hands the pipeline for one request, whichever engine accepted it
// (uWebSockets.js or node:http): one pipeline, several front doors.

import type { Readable } from "node:stream";

/** The verified peer of a mutual-TLS connection (inbound mesh traffic). */
export interface ConnectionPeer {
  /** The peer certificate's SPIFFE id ("spiffe://td/ns/NS/sa/SA"), "" when it names none. */
  readonly principal: string;
  /** This workload's own SPIFFE id, as its certificate presented it. */
  readonly localPrincipal: string;
  /** The SNI the client asked for ("" without). */
  readonly sni: string;
}

export interface Downstream {
  /** Upper-case method. */
  readonly method: string;
  /** Host header (or the authority of an absolute-form request); undefined when missing. */
  readonly authority: string | undefined;
  /** Path without the query string, as received (no decoding). */
  readonly path: string;
  /** Bytes after '?', undefined when the target has none. */
  readonly query: string | undefined;
  /** Flat [name, value, ...] with lower-case names, in arrival order. */
  readonly headers: string[];
  readonly remoteAddress: string;
  /** The request declares a body (content-length > 0 or chunked). */
  readonly hasBody: boolean;
  /** "http" or "https": the listener's scheme, for x-forwarded-proto and scheme matches. */
  readonly scheme: string;
  /** Request body bytes read so far. */
  readonly bodyBytes: number;
  /** "address:port" the request arrived on, and the client's address, for access logs. */
  readonly localAddress: string;
  /** The connection's mutual-TLS peer; undefined for plaintext (and one-way TLS). */
  readonly peer: ConnectionPeer | undefined;
  /**
   * "ADDRESS:PORT" the client meant to reach when the capture rules redirected its connection to the sidecar
   * (SO_ORIGINAL_DST, listener-capture.ts); undefined on listeners that do not capture.
   */
  readonly originalDestination: string | undefined;

  /** The first value of a (lower-case) header; undefined when absent. Lets the route core read a Downstream. */
  header(name: string): string | undefined;

  /** Starts reading the request body; reading pauses whenever the stream's buffer is full. */
  body(): Readable;

  /**
   * Starts the response. `contentLength` < 0 means unknown (chunked). `bodyless`
   * responses (HEAD, 204, 304) carry no body; their content-length is reported as is.
   */
  sendHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void;
  /**
   * Writes body bytes; false means the client is slow: wait for the exchange's
   * onDownstreamWritable(). The chunk is borrowed (h1-upstream reads every
   * connection into one shared buffer): it is valid only during this call, so
   * a listener that keeps it for later copies it.
   */
  sendChunk(chunk: Buffer): boolean;
  /** Ends the response; trailers (gRPC's grpc-status) go out where the protocol carries them (HTTP/2). */
  sendEnd(trailers?: Record<string, string | string[] | undefined>): void;
  /** Sends a complete small response (local replies). */
  sendLocal(status: number, headers: string[], body: string | Buffer): void;
  /** Drops the connection (an upstream reset after the response started). */
  reset(): void;
}

/** What a Downstream calls back into. */
export interface DownstreamEvents {
  onDownstreamAborted(): void;
  onDownstreamWritable(): void;
}

/** The first value of `name` in a flat [name, value, ...] list. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}
