// The outbound front door under transparent capture (Istio's 15001 behind
// `instio iptables`): the capture rules redirect every TCP connection the
// application opens, and each one's original destination (SO_ORIGINAL_DST)
// says where it was going. As Envoy's virtualOutbound listener hands a
// connection to the listener of its destination port:
//   HTTP/1.x (told by the first bytes, as Envoy's http_inspector)
//       → instio's HTTP/1.1 listener; the request routes by the destination
//         port, and an unknown host passes through to the original destination;
//   anything else (TLS, databases, raw TCP)
//       → the caller's `tcp` (a TCP route of that port, the original destination
//         under ALLOW_ANY, or closed under REGISTRY_ONLY).
// A connection made to the listener's own port (not redirected) is an explicit
// proxy client and is served as on any HTTP listener.

import { connect, createServer, type Socket } from "node:net";
import type { HttpSettings } from "../config/model.js";
import { H1Server } from "./listener-h1.js";
import { bindH1Server, type Listener, type RequestHandler } from "./listener.js";
import { destinationParts, originalDestination } from "./original-destination.js";
import { spliceSockets } from "./tcp-splice.js";

export interface CaptureOptions {
  address: string;
  port: number;
  http: HttpSettings;
  handler: RequestHandler;
  /** A captured connection that is not HTTP, going to `destination` ("ADDRESS:PORT"); its first bytes are unread. */
  tcp(socket: Socket, destination: string): void;
  onInternalError(err: Error): void;
  /** A socket of its own beside other serving threads' (listenOn). */
  reusePort?: boolean;
}

function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127."));
}

/** Longest method token looked at: "OPTIONS", "CONNECT", "PROPFIND" and the like fit. */
const MAX_METHOD = 16;

/** Whether `first` opens an HTTP/1.x request: a method token of upper-case letters, then a space. */
export function looksLikeHttp(first: Buffer): boolean {
  const end = Math.min(first.length, MAX_METHOD + 1);
  for (let i = 0; i < end; i++) {
    const c = first[i]!;
    if (c === 0x20) return i > 0;
    if ((c < 0x41 || c > 0x5a) && c !== 0x2d && c !== 0x5f) return false; // A-Z, "-", "_"
  }
  return end === first.length && end > 0 && end <= MAX_METHOD; // a short first read of letters: give it the benefit
}

/**
 * Reads a connection's first bytes (within the request-headers timeout) and hands the socket on with them put
 * back, paused: `decide` sees them first.
 */
export function onFirstBytes(socket: Socket, timeoutMs: number, decide: (first: Buffer) => void): void {
  const timer = timeoutMs > 0 ? setTimeout(() => socket.destroy(), timeoutMs) : undefined;
  socket.once("data", (first: Buffer) => {
    clearTimeout(timer);
    socket.pause();
    socket.unshift(first);
    decide(first);
  });
  socket.once("close", () => clearTimeout(timer));
}

/** Relays `client` to `destination` ("ADDRESS:PORT") both ways, from `localAddress` when given; either side closing ends both. */
export function relayTcp(client: Socket, destination: string, localAddress?: string): void {
  const { address, port } = destinationParts(destination);
  spliceSockets(client, connect({ host: address, port, ...(localAddress ? { localAddress } : {}) }));
}

export function listenCapture(o: CaptureOptions): Promise<Listener> {
  const h1 = new H1Server(o.handler, undefined, o.http, o.onInternalError);
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const destination = originalDestination(socket);
    if (destination === undefined) {
      // Not redirected: a client of this pod using 15001 as an explicit proxy. From elsewhere it would make the pod
      // an open proxy into the mesh: closed, as Envoy's virtualOutbound has no chain for it.
      if (!isLoopback(socket.remoteAddress)) return void socket.destroy();
      return h1.accept(socket);
    }
    onFirstBytes(socket, o.http.requestHeadersTimeoutMs, (first) => {
      if (looksLikeHttp(first)) {
        h1.accept(socket, undefined, destination);
        socket.resume();
      } else o.tcp(socket, destination);
    });
  });
  return bindH1Server(server, o.address, o.port, (port) => (h1.localAddress = `${o.address}:${port}`), () => {
    h1.stop();
    for (const c of h1.connections) c.close();
    for (const s of sockets) s.destroy();
  }, o.reusePort);
}
