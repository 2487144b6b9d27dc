// Ingress mode: a Gateway selecting the proxy opens its server ports; only
// VirtualServices bound to it route there. HTTPS terminates TLS with the
// server's certificate files; httpsRedirect answers 301. Checked with curl.

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCa, type TestCa } from "../support/certs.js";
import { freePort, get, serviceEntryYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

const execFileAsync = promisify(execFile);

/** A TLS server that answers with its certificate's name: what a PASSTHROUGH client should reach. */
async function startTlsBackend(ca: TestCa): Promise<{ server: TlsServer; port: number }> {
  const server = createTlsServer({ cert: readFileSync(ca.path("pass.pem")), key: readFileSync(ca.path("pass.key")) }, (s) => s.end("pass over TLS"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as { port: number }).port };
}

describe("Gateway (ingress mode)", () => {
  let ca: TestCa;
  let shop: Upstream;
  let p: TestProxy;
  const ports = { redirect: 0, https: 0, http: 0, mutual: 0, passthrough: 0 };
  let backend: Awaited<ReturnType<typeof startTlsBackend>>;

  beforeAll(async () => {
    ca = makeCa();
    ca.issue("shop", ["shop.example"]);
    ca.issue("client", ["client.instio"]);
    ca.issue("pass", ["pass.example"]);
    shop = await startUpstream("shop");
    backend = await startTlsBackend(ca);
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    p = await startTestProxy(`apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: gw}
spec:
  namespace: default
  labels: {istio: ingressgateway}
  listeners: {outbound: {address: 127.0.0.1, port: 0}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${ports.redirect}, name: http, protocol: HTTP}
    hosts: [shop.example]
    tls: {httpsRedirect: true}
  - port: {number: ${ports.https}, name: https, protocol: HTTPS}
    hosts: [shop.example]
    tls: {mode: SIMPLE, serverCertificate: ${ca.path("shop.pem")}, privateKey: ${ca.path("shop.key")}}
  - port: {number: ${ports.http}, name: plain, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${ports.mutual}, name: mtls, protocol: HTTPS}
    hosts: [shop.example]
    tls: {mode: MUTUAL, serverCertificate: ${ca.path("shop.pem")}, privateKey: ${ca.path("shop.key")}, caCertificates: ${ca.path("ca.pem")}}
  - port: {number: ${ports.passthrough}, name: tls, protocol: HTTPS}
    hosts: [pass.example]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pass}
spec:
  hosts: [pass.example]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tls: ${backend.port}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example]
  gateways: [ingress]
  tls:
  - match: [{sniHosts: [pass.example], port: ${ports.passthrough}}]
    route: [{destination: {host: pass.example}}]
---
${serviceEntryYaml("shop", [{ port: shop.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example]
  gateways: [ingress]
  http:
  - route: [{destination: {host: shop}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: internal, namespace: default}
spec:
  hosts: [internal.example]
  http:
  - route: [{destination: {host: shop}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await shop.close();
    backend.server.close();
  });

  it("terminates HTTPS with the server's certificate and routes by the bound VirtualService (curl, HTTP/2)", async () => {
    const { stdout } = await execFileAsync("curl", ["-s", "--max-time", "5", "--http2", "--cacert", ca.path("ca.pem"), "--connect-to", `shop.example:443:127.0.0.1:${ports.https}`, "-w", "\n%{http_code} %{http_version}", "https://shop.example/cart?id=1"]);
    const lines = stdout.split("\n");
    expect(lines.pop()).toBe("200 2");
    const seen = JSON.parse(lines.join("\n")) as { name: string; url: string; headers: Record<string, string> };
    expect(seen.name).toBe("shop");
    expect(seen.url).toBe("/cart?id=1");
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
  });

  it("redirects to HTTPS on a server with httpsRedirect", async () => {
    const r = await get(`http://127.0.0.1:${ports.redirect}`, "shop.example", "/cart?id=1");
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe("https://shop.example/cart?id=1");
  });

  it("serves plain HTTP servers too, and not VirtualServices bound to the mesh only", async () => {
    expect((await get(`http://127.0.0.1:${ports.http}`, `shop.example:${ports.http}`, "/")).json().name).toBe("shop");
    expect((await get(`http://127.0.0.1:${ports.http}`, "internal.example", "/")).status).toBe(404);
  });

  it("MUTUAL: requires a client certificate signed by caCertificates", async () => {
    const args = ["-s", "--max-time", "5", "--cacert", ca.path("ca.pem"), "--connect-to", `shop.example:443:127.0.0.1:${ports.mutual}`, "-o", "/dev/null", "-w", "%{http_code}", "https://shop.example/"];
    const withCert = await execFileAsync("curl", [...args, "--cert", ca.path("client.pem"), "--key", ca.path("client.key")]);
    expect(withCert.stdout).toBe("200");
    await expect(execFileAsync("curl", args)).rejects.toThrow(); // the handshake fails without one
  });

  it("PASSTHROUGH: routes the untouched TLS connection by SNI through the bound VirtualService's tls route", async () => {
    const result = await new Promise<{ text: string; cn: string }>((resolve, reject) => {
      const sock = tlsConnect({ port: ports.passthrough, host: "127.0.0.1", servername: "pass.example", ca: readFileSync(ca.path("ca.pem")) }, () => {
        const cn = String(sock.getPeerCertificate().subject.CN);
        let text = "";
        sock.on("data", (d) => (text += d.toString()));
        sock.on("end", () => resolve({ text, cn }));
      });
      sock.on("error", reject);
    });
    expect(result).toEqual({ text: "pass over TLS", cn: "pass.example" });
  });
});
