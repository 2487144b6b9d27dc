// The node:http2 front door: TLS termination (HTTP/2 and HTTP/1.1 chosen by
// ALPN, certificates by SNI, TLS 1.2 minimum, files re-read when they change)
// and h2c (HTTP/2 with prior knowledge). Requests reach the same pipeline as
// every other listener through NodeDownstream, which speaks node's
// compatibility API for both protocols.

import { unwatchFile, watchFile } from "node:fs";
import { MAX_PEM_BYTES, readBounded } from "../config/files.js";
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { Socket } from "node:net";
import { createSecureContext, type SecureContext, type TLSSocket } from "node:tls";
import type { ListenerSettings, TlsSettings } from "../config/model.js";
import { mostSpecific } from "../config/hosts.js";
import { NodeDownstream } from "./listener-node.js";
import { listenOn, type Listener, type RequestHandler } from "./listener.js";

/** How often certificate files are checked for changes. */
const CERT_POLL_MS = 1000;

/** Certificates by SNI name, rebuilt whenever a file changes. */
class Certificates {
  private byName: { pattern: string; context: SecureContext }[] = [];

  constructor(private readonly tls: TlsSettings) {
    this.reload();
  }

  /** The default pair, for the server's own context. */
  defaultPair(): { cert: Buffer; key: Buffer } {
    return { cert: readBounded(this.tls.certFile, MAX_PEM_BYTES), key: readBounded(this.tls.keyFile, MAX_PEM_BYTES) };
  }

  reload(): void {
    this.byName = this.tls.sni.flatMap((e) => {
      const context = createSecureContext({ cert: readBounded(e.certFile, MAX_PEM_BYTES), key: readBounded(e.keyFile, MAX_PEM_BYTES) });
      return e.hosts.map((pattern) => ({ pattern, context }));
    });
  }

  /** An exact name first, then the longest matching wildcard; undefined: the default certificate. */
  forName(servername: string): SecureContext | undefined {
    return mostSpecific(servername.toLowerCase(), this.byName, (e) => e.pattern)?.context;
  }

  files(): string[] {
    return [this.tls.certFile, this.tls.keyFile, ...this.tls.sni.flatMap((e) => [e.certFile, e.keyFile])];
  }
}

export function listenH2(settings: ListenerSettings, handler: RequestHandler, log: (line: string) => void, reusePort = false): Promise<Listener> {
  const tls = settings.tls;
  const certs = tls ? new Certificates(tls) : undefined;
  const onRequest = (req: ConstructorParameters<typeof NodeDownstream>[0], res: ConstructorParameters<typeof NodeDownstream>[1]): void => {
    const ds = new NodeDownstream(req, res, tls ? "https" : "http");
    ds.events = handler(ds);
  };
  const server: Http2SecureServer | Http2Server = certs
    ? createSecureServer(
        {
          ...certs.defaultPair(),
          allowHTTP1: true,
          minVersion: "TLSv1.2",
          // MUTUAL: a client certificate signed by this CA is required.
          ...(tls!.clientCaFile ? { requestCert: true, rejectUnauthorized: true, ca: readBounded(tls!.clientCaFile, MAX_PEM_BYTES) } : {}),
          SNICallback: (servername, done) => done(null, certs.forName(servername)),
        },
        onRequest,
      )
    : createServer({}, onRequest);
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (s: ServerHttp2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  // HTTP/1.1 connections over TLS (allowHTTP1) are not sessions: tracked to be closed at the end.
  const sockets = new Set<Socket>();
  server.on("secureConnection", (socket: TLSSocket) => {
    if (socket.alpnProtocol === "h2") return;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  // Certificates are re-read when their files change; connections keep their session.
  const files = certs?.files() ?? [];
  const reload = (): void => {
    try {
      (server as Http2SecureServer).setSecureContext(certs!.defaultPair());
      certs!.reload();
      log(`tls: certificates reloaded for ${settings.address}:${settings.port}`);
    } catch (err) {
      log(`tls: certificate reload failed, keeping the previous ones: ${(err as Error).message}`);
    }
  };
  for (const f of files) watchFile(f, { interval: CERT_POLL_MS, persistent: false }, reload);
  const stopWatching = (): void => {
    for (const f of files) unwatchFile(f, reload);
  };

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    listenOn(server, settings.address, settings.port, reusePort, () => {
      server.off("error", reject);
      const bound = server.address();
      resolve({
        engine: "node",
        address: settings.address,
        port: typeof bound === "object" && bound ? bound.port : settings.port,
        stopAccepting: () => {
          if (server.listening) server.close();
        },
        close: () =>
          new Promise<void>((done) => {
            stopWatching();
            server.close(() => done());
            // GOAWAY: streams in flight finish, no new ones start. HTTP/1.1 connections end now
            // (the drain before close already told their clients with Connection: close).
            for (const s of sessions) s.close();
            for (const socket of sockets) socket.destroy();
          }),
      });
    });
  });
}
