// TCP proxy listeners (Sidecar egress listeners with a TCP port, as Istio's
// `bind` egress listeners): each connection goes to a weighted destination of
// the serving snapshot's TCP route, to an endpoint its cluster's load balancer
// (the route core) picks, and bytes are piped both ways until either side
// closes. Istio's TCP metrics count connections and bytes.

import { connect, createServer, type Socket } from "node:net";
import type { Listener } from "./listener.js";
import type { SnapshotHolder } from "./snapshot.js";
import { splitAuthority } from "./authority.js";

function random32(): number {
  return (Math.random() * 0x100000000) >>> 0;
}

/** One connection: pick, connect, relay, count. */
function proxyConnection(holder: SnapshotHolder, port: number, client: Socket): void {
  const snapshot = holder.current;
  const route = snapshot.config.tcpListeners.find((l) => l.port === port);
  const dests = route?.destinations ?? [];
  const total = dests.reduce((n, d) => n + d.weight, 0);
  let point = Math.random() * total;
  const chosen = dests.find((d) => (point -= d.weight) < 0) ?? dests[dests.length - 1];
  if (!chosen || chosen.cluster < 0) {
    client.destroy();
    return;
  }
  const endpoint = snapshot.core.pickEndpoint(chosen.cluster, random32());
  if (endpoint < 0) {
    snapshot.stats?.tcp(chosen.cluster, "UH").closed.inc();
    client.destroy();
    return;
  }
  const { host, port: upPort } = splitAuthority(snapshot.endpoints[endpoint]!.hostPort);
  const upstream = connect(Number(upPort), host.replace(/^\[|\]$/g, ""));
  snapshot.core.active[endpoint]!++;
  let connected = false;
  // The client's bytes wait in its socket (nothing reads it) until the upstream is connected.
  upstream.once("connect", () => {
    connected = true;
    snapshot.stats?.tcp(chosen.cluster, "-").opened.inc();
    upstream.pipe(client);
    client.pipe(upstream);
  });
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    snapshot.core.active[endpoint]!--;
    const counters = snapshot.stats?.tcp(chosen.cluster, connected ? "-" : "UF");
    if (counters) {
      counters.closed.inc();
      counters.sent.inc(client.bytesWritten);
      counters.received.inc(client.bytesRead);
    }
    client.destroy();
    upstream.destroy();
  };
  upstream.once("error", finish);
  upstream.once("close", finish);
  client.once("error", finish);
  client.once("close", finish);
}

export function listenTcp(address: string, port: number, holder: SnapshotHolder): Promise<Listener> {
  const server = createServer((client) => proxyConnection(holder, port, client));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => {
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
