// TCP routes: a Sidecar egress listener with a TCP port (and bind) proxies raw
// TCP connections by the VirtualService's tcp routes, with a raw TCP client
// and servers, and Istio's TCP metrics count them.

import { readFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { makeCa } from "../support/certs.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { freePort, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";

/** A TCP server that answers each chunk with "<name>:<chunk>". */
async function tagServer(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.on("data", (c) => s.write(`${name}:${c.toString()}`)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port };
}

/** Sends `text` on a new connection and returns the first reply. */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(port, "127.0.0.1", () => c.write(text));
    c.once("data", (d) => {
      resolve(d.toString());
      c.end();
    });
    c.once("error", reject);
  });
}

describe("TCP routes", () => {
  let v1: Awaited<ReturnType<typeof tagServer>>;
  let v2: Awaited<ReturnType<typeof tagServer>>;
  let port: number;
  let p: TestProxy;

  beforeAll(async () => {
    v1 = await tagServer("v1");
    v2 = await tagServer("v2");
    port = await freePort();
    p = await startTestProxy(`${settingsYaml("uws")}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.default.svc.cluster.local]
  ports: [{number: ${port}, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {tcp: ${v1.port}}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {tcp: ${v2.port}}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{port: ${port}}]
    route:
    - {destination: {host: db, subset: v1}, weight: 20}
    - {destination: {host: db, subset: v2}, weight: 80}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: ${port}, protocol: TCP, name: tcp}
    bind: 127.0.0.1
    hosts: ["./*"]
  - hosts: ["*/*"]
`);
  });
  afterAll(async () => {
    await p.close();
    v1.server.close();
    v2.server.close();
  });

  it("relays raw TCP both ways to the weighted destinations of the VirtualService's tcp route", async () => {
    const replies: string[] = [];
    for (let i = 0; i < 100; i++) replies.push(await exchange(port, "ping"));
    expect(new Set(replies)).toEqual(new Set(["v1:ping", "v2:ping"]));
    const toV2 = replies.filter((r) => r === "v2:ping").length;
    expect(Math.abs(toV2 - 80)).toBeLessThan(21); // binomial(100, 0.8): sd 4, 5 sd
    await new Promise((r) => setTimeout(r, 50));
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("istio_tcp_connections_opened_total", { request_protocol: "tcp" })).toBe(100);
    expect(m.sum("istio_tcp_connections_closed_total", { request_protocol: "tcp" })).toBe(100);
    expect(m.sum("istio_tcp_received_bytes_total", {})).toBe(400);
    expect(m.sum("istio_tcp_sent_bytes_total", {})).toBe(700);
  });
});

describe("TLS routes (SNI passthrough)", () => {
  it("routes a TLS connection by its SNI to the VirtualService's tls route or the service of that name, without terminating it", async () => {
    const ca = makeCa();
    const servers: Server[] = [];
    const tlsServer = async (name: string, port: number): Promise<number> => {
      ca.issue(name, [`${name}.example`, "alias.example"]);
      const server = createTlsServer({ cert: readFileSync(ca.path(`${name}.pem`)), key: readFileSync(ca.path(`${name}.key`)) }, (s) => s.end(`${name} over TLS`));
      await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
      servers.push(server);
      return (server.address() as { port: number }).port;
    };
    const aPort = await tlsServer("a", 0);
    const bPort = await tlsServer("b", 0);
    const port = await freePort();
    const entry = (name: string, endpoint: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}}
spec:
  hosts: [${name}.example]
  ports: [{number: ${port}, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tls: ${endpoint}}}]
`;
    const p = await startTestProxy(`${settingsYaml("uws")}---
${entry("a", aPort)}---
${entry("b", bPort)}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: alias}
spec:
  hosts: [a.example]
  tls:
  - match: [{sniHosts: [alias.example], port: ${port}}]
    route: [{destination: {host: b.example}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: ${port}, protocol: TLS, name: tls}
    bind: 127.0.0.1
    hosts: ["./*"]
  - hosts: ["*/*"]
`);
    const fetchVia = (servername: string): Promise<{ text: string; cn: string }> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ port, host: "127.0.0.1", servername, ca: readFileSync(ca.path("ca.pem")) }, () => {
          const cn = String(s.getPeerCertificate().subject.CN);
          let text = "";
          s.on("data", (d) => (text += d.toString()));
          s.on("end", () => resolve({ text, cn }));
        });
        s.on("error", reject);
      });
    try {
      expect(await fetchVia("a.example")).toEqual({ text: "a over TLS", cn: "a.example" }); // the service of that name
      expect(await fetchVia("b.example")).toEqual({ text: "b over TLS", cn: "b.example" });
      expect(await fetchVia("alias.example")).toEqual({ text: "b over TLS", cn: "b.example" }); // the tls route
    } finally {
      await p.close();
      for (const s of servers) s.close();
    }
  });
});
