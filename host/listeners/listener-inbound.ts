// The inbound front door of a sidecar with a workload certificate: mutual TLS
// as PeerAuthentication composes it for the application's port, decided per
// connection from the serving config (a policy change applies to the next
// connection, as Envoy's filter chains do):
//   STRICT      every connection is TLS with a client certificate from the
//               mesh's root; anything else is closed;
//   PERMISSIVE  TLS and plaintext on one port, told apart by the first byte
//               (a TLS record starts with 0x16, handshake), as Envoy's
//               tls_inspector tells them apart;
//   DISABLE     plaintext only.
// Plaintext connections go to instio's HTTP/1.1 listener. mTLS ones are
// handshaken by a node:tls server (offering h2 and http/1.1 by ALPN, as Istio's
// inbound chains do) and then served with the verified peer: HTTP/1.1 by the
// same instio listener, HTTP/2 by node:http2. The certificate served is the
// workload's current one: a renewal applies from the next handshake, and
// connections keep theirs. Session tickets are on (node's default, as Envoy's):
// a peer that resumes skips the certificate signatures.

import { X509Certificate } from "node:crypto";
import { createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import { createServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { WorkloadIdentity } from "../cluster/pools.js";
import type { HttpSettings } from "../config/model.js";
import type { MtlsMode } from "../config/security-policy.js";
import { spiffeOf } from "../config/hosts.js";
import type { ConnectionPeer } from "./downstream.js";
import { H1Server } from "./listener-h1.js";
import { bindH1Server, type Listener, type RequestHandler } from "./listener.js";
import { NodeDownstream } from "./listener-node.js";
import { looksLikeHttp, onFirstBytes } from "./listener-capture.js";
import { destinationParts, originalDestination } from "./original-destination.js";

/** The first byte of a TLS record carrying a handshake (the ClientHello). */
const TLS_HANDSHAKE = 0x16;
/** A TLS handshake longer than this ends the connection. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Istio's inbound cipher suites (meshMTLS default) for TLS 1.2; TLS 1.3 uses OpenSSL's. */
const ISTIO_CIPHERS = ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256"].join(":");
const PEER = Symbol("instio.peer");
/** A captured connection's original destination, on its plain socket and (for HTTP/2) its TLS socket. */
const DESTINATION = Symbol("instio.originalDestination");

export interface InboundOptions {
  address: string;
  port: number;
  http: HttpSettings;
  handler: RequestHandler;
  /** The mode for a new connection to the application's `port`, from the serving config. */
  mode(port: number): MtlsMode;
  /**
   * Capture (Istio's 15006 behind `instio iptables`): each connection's original destination is the application's
   * address and port, told to the handler as the Downstream's originalDestination; plaintext that is not HTTP goes to
   * `tcp`. Undefined: every connection is for the one application port `appPort`.
   */
  capture: { tcp(socket: Socket, destination: string): void; ownPort(port: number): boolean } | undefined;
  appPort: number;
  /** The workload's certificate now (undefined until it has one: TLS connections are then closed). */
  identity: WorkloadIdentity;
  /** A connection refused: plaintext under STRICT, a failed handshake, or no certificate to serve yet (counted by the caller). */
  refused(reason: "plaintext" | "handshake" | "no_certificate"): void;
  onInternalError(err: Error): void;
  /** A socket of its own beside other serving threads' (listenOn). */
  reusePort?: boolean;
}

export function listenInbound(o: InboundOptions): Promise<Listener> {
  const plain = new H1Server(o.handler, undefined, o.http, o.onInternalError);
  const onRequest = (req: Http2ServerRequest, res: Http2ServerResponse): void => {
    const socket = req.stream.session?.socket as (TLSSocket & { [PEER]?: ConnectionPeer; [DESTINATION]?: string }) | undefined;
    const ds = new NodeDownstream(req, res, "https", socket?.[PEER], socket?.[DESTINATION]);
    ds.events = o.handler(ds);
  };
  // HTTP/2 over the TLS sockets handed to it once their handshake is done.
  const h2 = createH2cServer(onRequest);
  const sessions = new Set<ServerHttp2Session>();
  h2.on("session", (s: ServerHttp2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  const secure = createTlsServer({ minVersion: "TLSv1.2", ciphers: ISTIO_CIPHERS, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
  let served: ReturnType<WorkloadIdentity>;
  let localPrincipal = "";
  secure.on("secureConnection", (socket: TLSSocket & { [PEER]?: ConnectionPeer; [DESTINATION]?: string; _parent?: Socket & { [DESTINATION]?: string } }) => {
    // One parse of the peer's certificate (getPeerCertificate would also hash it three ways and copy it whole).
    const cert = socket.getPeerX509Certificate();
    const peer: ConnectionPeer = { principal: spiffeOf(cert?.subjectAltName), localPrincipal, sni: (socket as TLSSocket & { servername?: string | false }).servername || "" };
    // (node's TLSSocket keeps the plain socket it wraps as _parent: where the capture noted the destination.)
    const destination = socket._parent?.[DESTINATION];
    if (socket.alpnProtocol === "h2") {
      socket[PEER] = peer;
      socket[DESTINATION] = destination;
      h2.emit("connection", socket);
    } else plain.accept(socket, peer, destination);
  });
  secure.on("tlsClientError", () => o.refused("handshake"));

  const sockets = new Set<Socket>();
  const toTls = (socket: Socket): void => {
    const cert = o.identity();
    if (!cert) {
      o.refused("no_certificate");
      socket.destroy();
      return;
    }
    if (cert !== served) {
      // The renewed certificate for the handshakes from now on; the mesh's root verifies clients.
      secure.setSecureContext({ key: cert.key, cert: cert.chain.slice(0, -1).join(""), ca: cert.chain.at(-1), minVersion: "TLSv1.2", ciphers: ISTIO_CIPHERS });
      served = cert;
      localPrincipal = spiffeOf(new X509Certificate(cert.chain[0]!).subjectAltName);
    }
    secure.emit("connection", socket);
  };
  const server = createServer({ noDelay: true }, (socket: Socket & { [DESTINATION]?: string }) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let destination: string | undefined;
    let appPort = o.appPort;
    if (o.capture) {
      destination = originalDestination(socket);
      // Nothing to forward a connection made to 15006 itself to: Envoy's virtualInbound has no chain for it either.
      if (destination === undefined) return void socket.destroy();
      appPort = destinationParts(destination).port;
      // Nor one for the sidecar's own ports (15001 as an explicit proxy, the admin): they are not the app's.
      if (o.capture.ownPort(appPort)) return void socket.destroy();
      socket[DESTINATION] = destination;
    }
    const mode = o.mode(appPort);
    if (mode === "DISABLE" && !o.capture) return plain.accept(socket);
    // The first bytes decide (STRICT: TLS or nothing). A client that sends none within the request-headers timeout is closed.
    onFirstBytes(socket, o.http.requestHeadersTimeoutMs, (first) => {
      if (first[0] === TLS_HANDSHAKE && mode !== "DISABLE") toTls(socket);
      else if (mode === "STRICT") {
        // Envoy finds no filter chain for plaintext under STRICT: the connection is closed.
        o.refused("plaintext");
        socket.destroy();
      } else if (o.capture && destination !== undefined && !looksLikeHttp(first)) {
        o.capture.tcp(socket, destination);
      } else {
        plain.accept(socket, undefined, destination);
        socket.resume();
      }
    });
  });
  return bindH1Server(server, o.address, o.port, (port) => (plain.localAddress = `${o.address}:${port}`), () => {
    plain.stop();
    for (const c of plain.connections) c.close();
    // GOAWAY: HTTP/2 streams in flight finish; the rest of the connections end now.
    for (const s of sessions) s.close();
    for (const s of sockets) s.destroy();
  }, o.reusePort);
}
