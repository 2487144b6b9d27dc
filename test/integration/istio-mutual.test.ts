// DestinationRule tls.mode ISTIO_MUTUAL from a sidecar with a workload
// certificate, over real TLS: the upstream sees the sidecar's SPIFFE identity
// as a client certificate, Istio's SNI and ALPN; the sidecar accepts only a
// peer whose certificate names one of the destination's service accounts.

import { webcrypto, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { CertificateAuthority } from "../../host/control-plane/ca/authority.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { get, settingsYaml } from "../support/proxy.js";
import { eventually } from "../support/mesh.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const dirs: string[] = [];
let ca: CertificateAuthority;
const servers: Server[] = [];
let proxy: RunningProxy;

/** A workload certificate from the mesh's CA for a service account in default, and its key. */
async function issue(serviceAccount: string): Promise<{ key: string; chain: string[] }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "O=test", keys, signingAlgorithm: alg });
  const chain = await ca.sign(csr.toString("pem"), { namespace: "default", serviceAccount }, 3600);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  return { key: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`, chain };
}

/** An upstream sidecar's inbound side, as mTLS needs it: its own certificate, and the mesh's root for clients. */
async function upstream(serviceAccount: string): Promise<number> {
  const cert = await issue(serviceAccount);
  const server = createServer({ key: cert.key, cert: cert.chain.slice(0, -1).join(""), ca: ca.rootPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ["istio-http/1.1", "http/1.1"] }, (req, res) => {
    const socket = req.socket as TLSSocket;
    res.end(JSON.stringify({ client: socket.getPeerCertificate().subjectaltname, alpn: socket.alpnProtocol, sni: (socket as TLSSocket & { servername?: string }).servername, as: serviceAccount }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return (server.address() as { port: number }).port;
}

beforeAll(async () => {
  const caDir = mkdtempSync(join(tmpdir(), "instio-istio-mutual-"));
  dirs.push(caDir);
  ca = await CertificateAuthority.open(caDir);
  const reviewsPort = await upstream("bookinfo-reviews");
  const impostorPort = await upstream("ratings");
  // The sidecar's own certificate, in Istio's /etc/certs layout.
  const certDir = join(caDir, "certs");
  mkdirSync(certDir);
  const own = await issue("bookinfo-productpage");
  writeFileSync(join(certDir, "cert-chain.pem"), own.chain.slice(0, -1).join(""));
  writeFileSync(join(certDir, "key.pem"), own.key, { mode: 0o600 });
  writeFileSync(join(certDir, "root-cert.pem"), ca.rootPem);
  const entry = (name: string, port: number): string => `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${port}}, serviceAccount: bookinfo-reviews}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: default}
spec:
  host: ${name}
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`;
  const config = requireConfig(loadConfigText("mesh.yaml", `${settingsYaml("h1")}${entry("reviews", reviewsPort)}${entry("impostor", impostorPort)}`));
  proxy = await startProxy({ config, certificates: { kind: "files", dir: certDir }, log: () => {} });
  await eventually(() => proxy.lifecycle.ready, 10_000, "the sidecar's certificate");
});

afterAll(async () => {
  await proxy.close();
  for (const s of servers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("ISTIO_MUTUAL", () => {
  it("presents the sidecar's SPIFFE identity, with Istio's SNI and ALPN", async () => {
    const r = await get(`http://127.0.0.1:${proxy.outbound.port}`, "reviews:9080", "/");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ client: "URI:spiffe://cluster.local/ns/default/sa/bookinfo-productpage", alpn: "istio-http/1.1", sni: "outbound_.9080_._.reviews.default.svc.cluster.local", as: "bookinfo-reviews" });
  });

  it("refuses a peer whose certificate names another service account than the destination's", async () => {
    const r = await get(`http://127.0.0.1:${proxy.outbound.port}`, "impostor:9080", "/");
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/upstream connect error/);
    const cluster = proxy.holder.current.config.clusters.find((c) => c.host === "impostor.default.svc.cluster.local")!;
    expect(cluster.policy.tls).toMatchObject({ mode: "ISTIO_MUTUAL", subjectAltNames: ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"] });
    expect(new X509Certificate(ca.rootPem).ca).toBe(true);
  });
});
