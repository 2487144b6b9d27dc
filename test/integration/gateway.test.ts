// Ingress mode: a Gateway selecting the proxy opens its server ports; only
// VirtualServices bound to it route there. HTTPS terminates TLS with the
// server's certificate files; httpsRedirect answers 301. Checked with curl.

import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCa, type TestCa } from "../support/certs.js";
import { get, serviceEntryYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

const execFileAsync = promisify(execFile);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("Gateway (ingress mode)", () => {
  let ca: TestCa;
  let shop: Upstream;
  let p: TestProxy;
  const ports = { redirect: 0, https: 0, http: 0 };

  beforeAll(async () => {
    ca = makeCa();
    ca.issue("shop", ["shop.example"]);
    shop = await startUpstream("shop");
    ports.redirect = await freePort();
    ports.https = await freePort();
    ports.http = await freePort();
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
});
