// TCP proxy listeners (Sidecar egress listeners with a TCP or TLS port, as
// Istio's `bind` egress listeners): each connection goes to a weighted
// destination of the serving snapshot's TCP route (for TLS passthrough, the
// route the ClientHello's SNI selects), to an endpoint its cluster's load balancer
// (the route core) picks, and bytes are piped both ways until either side
// closes. Istio's TCP metrics count connections and bytes.

import { connect, createServer, type Socket } from "node:net";
import { listenOn, type Listener } from "./listener.js";
import type { Snapshot, SnapshotHolder } from "../proxy/snapshot.js";
import type { TcpListenerInfo } from "../config/compile.js";
import { hostMatches } from "../config/hosts.js";
import { random32 } from "../pipeline/random.js";
import { spliceSockets } from "./tcp-splice.js";

/** The largest ClientHello waited for before giving up on finding an SNI. */
const MAX_CLIENT_HELLO = 16 * 1024;

/**
 * The server name of a TLS ClientHello, undefined when there is none;
 * "incomplete" when more bytes are needed. Reads only the record and
 * handshake framing and the server_name extension (RFC 6066).
 */
export function clientHelloSni(b: Buffer): string | undefined | "incomplete" {
  if (b.length < 5) return "incomplete";
  if (b[0] !== 0x16) return undefined; // not a TLS handshake record
  const recordEnd = 5 + b.readUInt16BE(3);
  if (b.length < recordEnd) return "incomplete";
  let p = 5;
  if (b[p] !== 0x01) return undefined; // not a ClientHello
  p += 4 + 2 + 32; // handshake header, client_version, random
  p += 1 + b[p]!; // session_id
  p += 2 + b.readUInt16BE(p); // cipher_suites
  p += 1 + b[p]!; // compression_methods
  if (p + 2 > recordEnd) return undefined;
  const extensionsEnd = p + 2 + b.readUInt16BE(p);
  p += 2;
  while (p + 4 <= Math.min(extensionsEnd, recordEnd)) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (type === 0) {
      // server_name_list: length, then entries of (type, length, name); type 0 is host_name
      let q = p + 2;
      while (q + 3 <= p + len) {
        const nameLen = b.readUInt16BE(q + 1);
        if (b[q] === 0) return b.toString("ascii", q + 3, q + 3 + nameLen).toLowerCase();
        q += 3 + nameLen;
      }
      return undefined;
    }
    p += len;
  }
  return undefined;
}

type Destinations = TcpListenerInfo["destinations"];

/** One connection: reads the SNI first on a TLS passthrough listener, then picks, connects, relays, counts. */
export function proxyConnection(holder: SnapshotHolder, port: number, client: Socket): void {
  const snapshot = holder.current;
  const listener = snapshot.config.tcpListeners.find((l) => l.port === port);
  const sni = listener?.sni;
  if (!sni) {
    relay(snapshot, listener?.destinations ?? [], client, undefined);
    return;
  }
  let hello = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    hello = Buffer.concat([hello, chunk]);
    const name = clientHelloSni(hello);
    if (name === "incomplete" && hello.length < MAX_CLIENT_HELLO) return;
    client.off("data", onData);
    client.pause();
    const route = typeof name === "string" && name !== "incomplete" ? sni.find((r) => r.hosts.some((h) => hostMatches(h, name))) : undefined;
    relay(snapshot, route?.destinations ?? [], client, hello);
  };
  client.on("data", onData);
  client.once("error", () => client.destroy());
}

function relay(snapshot: Snapshot, dests: Destinations, client: Socket, initial: Buffer | undefined): void {
  const total = dests.reduce((n, d) => n + d.weight, 0);
  let point = Math.random() * total;
  const chosen = dests.find((d) => (point -= d.weight) < 0) ?? dests[dests.length - 1];
  if (!chosen || chosen.cluster < 0) {
    client.destroy();
    return;
  }
  const endpoint = snapshot.endpoints[snapshot.core.pickEndpoint(chosen.cluster, random32())];
  if (!endpoint) {
    snapshot.stats.tcp(chosen.cluster, "UH").closed.inc();
    client.destroy();
    return;
  }
  const upstream = connect(endpoint.port, endpoint.address);
  endpoint.acquire();
  // The client's bytes wait in its socket (nothing reads it) until the upstream is connected.
  spliceSockets(client, upstream, {
    connected: () => {
      snapshot.stats.tcp(chosen.cluster, "-").opened.inc();
      if (initial) upstream.write(initial);
    },
    ended: (connected) => {
      endpoint.release();
      const counters = snapshot.stats.tcp(chosen.cluster, connected ? "-" : "UF");
      if (counters) {
        counters.closed.inc();
        counters.sent.inc(client.bytesWritten);
        counters.received.inc(client.bytesRead);
      }
    },
  });
}

export function listenTcp(address: string, port: number, holder: SnapshotHolder, reusePort = false): Promise<Listener> {
  const server = createServer((client) => proxyConnection(holder, port, client));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    listenOn(server, address, port, reusePort, () => {
      server.off("error", reject);
      resolve({
        engine: "node",
        address,
        port,
        stopAccepting: () => {
          if (server.listening) server.close();
        },
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
