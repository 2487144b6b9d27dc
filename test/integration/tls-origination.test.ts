// DestinationRule trafficPolicy.tls: the proxy originates TLS to an HTTPS
// upstream (SIMPLE and MUTUAL), verifies its certificate against the given CA
// and subjectAltNames, and fails a request with 503 UF instead of connecting
// to a server it cannot verify.

import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { createSecureServer, type Http2SecureServer } from "node:http2";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCa, type TestCa } from "../support/certs.js";
import { get, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";

const HOSTS = ["simple", "system", "pinned", "skip", "mutual"].map((h) => `${h}.example`);
/** Served over HTTP/2 (a port of protocol HTTP2). */
const H2_HOSTS = ["h2.example", "h2-pinned.example"];

describe("TLS origination", () => {
  let ca: TestCa;
  let upstream: Server;
  let h2Upstream: Http2SecureServer;
  let p: TestProxy;

  beforeAll(async () => {
    ca = makeCa();
    ca.issue("upstream", [...HOSTS, ...H2_HOSTS]);
    ca.issue("client", ["client.instio"]);
    upstream = createServer({ cert: readFileSync(ca.path("upstream.pem")), key: readFileSync(ca.path("upstream.key")), ca: readFileSync(ca.path("ca.pem")), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(JSON.stringify({ sni: (req.socket as TLSSocket).servername, client: peer?.subject?.CN ?? null }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as { port: number }).port;
    h2Upstream = createSecureServer({ cert: readFileSync(ca.path("upstream.pem")), key: readFileSync(ca.path("upstream.key")) }, (req, res) => {
      res.end(JSON.stringify({ sni: (req.socket as TLSSocket).servername, alpn: (req.socket as TLSSocket).alpnProtocol, version: req.httpVersion }));
    });
    await new Promise<void>((r) => h2Upstream.listen(0, "127.0.0.1", r));
    const h2Port = (h2Upstream.address() as { port: number }).port;
    const entry = (host: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${host.split(".")[0]}}
spec:
  hosts: [${host}]
  ports: [{number: 80, name: ${H2_HOSTS.includes(host) ? "http2, protocol: HTTP2" : "http"}}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {${H2_HOSTS.includes(host) ? "http2" : "http"}: ${H2_HOSTS.includes(host) ? h2Port : port}}}]
`;
    const rule = (host: string, tls: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${host.split(".")[0]}}
spec:
  host: ${host}
  trafficPolicy: {tls: ${tls}}
`;
    const caFile = ca.path("ca.pem");
    p = await startTestProxy([
      settingsYaml("uws"),
      ...[...HOSTS, ...H2_HOSTS].map(entry),
      rule("h2.example", `{mode: SIMPLE, caCertificates: ${caFile}}`),
      rule("h2-pinned.example", `{mode: SIMPLE, caCertificates: ${caFile}, subjectAltNames: [billing.example]}`),
      rule("simple.example", `{mode: SIMPLE, caCertificates: ${caFile}}`),
      rule("system.example", "{mode: SIMPLE}"),
      rule("pinned.example", `{mode: SIMPLE, caCertificates: ${caFile}, subjectAltNames: [billing.example]}`),
      rule("skip.example", "{mode: SIMPLE, insecureSkipVerify: true}"),
      rule("mutual.example", `{mode: MUTUAL, caCertificates: ${caFile}, clientCertificate: ${ca.path("client.pem")}, privateKey: ${ca.path("client.key")}}`),
    ].join("---\n"));
  });
  afterAll(async () => {
    await p.close();
    upstream.close();
    h2Upstream.close();
  });

  it("SIMPLE: verifies the upstream against the CA, with the authority as SNI", async () => {
    const r = await get(p.url, "simple.example", "/");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ sni: "simple.example", client: null });
  });

  it("fails with 503 UF, never connecting in clear, when the certificate does not verify", async () => {
    for (const host of ["system.example", "pinned.example"]) {
      const r = await get(p.url, host, "/");
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/^upstream connect error or disconnect\/reset before headers\. (retried and the latest )?reset reason: connection failure, transport failure reason: TLS_error:/);
    }
  });

  it("insecureSkipVerify connects without verifying; MUTUAL presents the client certificate", async () => {
    expect((await get(p.url, "skip.example", "/")).status).toBe(200);
    const r = await get(p.url, "mutual.example", "/");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).client).toBe("client.instio");
  });

  it("SIMPLE to an HTTP2 port: HTTP/2 over TLS (ALPN h2), verified, the authority as SNI", async () => {
    const r = await get(p.url, "h2.example", "/");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ sni: "h2.example", alpn: "h2", version: "2.0" });
    const pinned = await get(p.url, "h2-pinned.example", "/");
    expect(pinned.status).toBe(503);
  });
});
