// Mutual TLS between two sidecars with certificates from a running control
// plane, over real sockets: productpage's sidecar calls reviews' sidecar with
// auto mTLS (the endpoints carry security.istio.io/tlsMode: istio); reviews'
// sidecar enforces PeerAuthentication and an AuthorizationPolicy on its
// inbound listener, in front of the reviews app. A TCP relay between the two
// records what is on the wire.

import { connect as tlsConnect } from "node:tls";
import { webcrypto } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer, connect as netConnect, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../host/control-plane/ca/authority.js";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { staticTokens } from "../../host/control-plane/ca/ca-service.js";
import { loadConfigPath, requireConfig } from "../../host/config/load.js";
import { Logger } from "../../host/log.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { eventually } from "../support/mesh.js";
import { parseExposition } from "../support/prometheus.js";
import { get, settingsYaml } from "../support/proxy.js";
import { rawExchange } from "../support/raw-http.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const PRODUCTPAGE = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
const REVIEWS = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";
const RATINGS = "spiffe://cluster.local/ns/default/sa/bookinfo-ratings";
/** Short-lived certificates, so that every test runs across renewals (about every 3 s). */
const CERT_TTL_S = 6;

const cleanups: (() => Promise<void> | void)[] = [];
const tempDir = (prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

let cp: ControlPlane;
let caDir: string;
let root: string;
let app: Upstream;
let reviews: RunningProxy;
let reviewsDir: string;
let productpage: RunningProxy;
let ratings: RunningProxy;
/** Bytes productpage's sidecar sent towards reviews' sidecar, per connection. */
const wire: Buffer[][] = [];
let relayPort: number;

/** A sidecar with a certificate from the control plane, for the workload `name` proving `token`. */
async function sidecar(name: string, token: string, settings: string, mesh: string): Promise<{ proxy: RunningProxy; dir: string }> {
  const dir = tempDir(`instio-mtls-${name}-`);
  writeFileSync(join(dir, "settings.yaml"), settings);
  writeFileSync(join(dir, "mesh.yaml"), mesh);
  const tokenFile = join(tempDir("instio-mtls-token-"), "istio-token");
  writeFileSync(tokenFile, `${token}\n`);
  const proxy = await startProxy({
    config: requireConfig(loadConfigPath(dir)),
    configPath: dir,
    certificates: { kind: "ca", ca: { address: `127.0.0.1:${cp.securePort}`, rootPem: root, ttlSeconds: CERT_TTL_S }, tokenFile },
    log: () => {},
  });
  cleanups.push(() => proxy.close());
  await eventually(() => proxy.lifecycle.ready, 10_000, `${name}'s certificate`);
  return { proxy, dir };
}

function workloadSettings(app: string, extra = ""): string {
  return settingsYaml("h1", `  labels: {app: ${app}, version: v1}\n  workload: {name: ${app}-v1, cluster: Kubernetes}${extra}`);
}

/** reviews as productpage's and ratings' sidecars see it: a mesh service whose endpoint runs a sidecar. */
function reviewsEntry(name: string, port: number, serviceAccount: string, protocol = "HTTP"): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: ${protocol}}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${port}}, serviceAccount: ${serviceAccount}, labels: {app: reviews, security.istio.io/tlsMode: istio}}]
`;
}

const peerAuthentication = (mode: string): string => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: ${mode}}}
`;

const REVIEWS_POLICY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
  - to: [{operation: {paths: [/public*]}}]
`;

/** A TCP relay that keeps every byte the client sends. */
async function relay(target: () => number): Promise<NetServer> {
  const server = createNetServer((client) => {
    const seen: Buffer[] = [];
    wire.push(seen);
    const upstream = netConnect(target(), "127.0.0.1");
    client.on("data", (b: Buffer) => seen.push(b));
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return server;
}

/** A TLS client against reviews' inbound port with the given client certificate; resolves to the outcome. */
function tlsClient(options: { key?: string; cert?: string }, served?: (serial: string) => void): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: "127.0.0.1", port: reviews.inbound!.port, ca: root, servername: "outbound_.9080_._.reviews.default.svc.cluster.local", ALPNProtocols: ["istio-http/1.1", "istio", "http/1.1"], checkServerIdentity: () => undefined, ...options }, () => {
      served?.(socket.getPeerCertificate().serialNumber);
      socket.write("GET /public HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n");
    });
    let text = "";
    socket.on("data", (b: Buffer) => (text += b.toString("latin1")));
    socket.on("end", () => resolve(text.split("\r\n")[0] ?? ""));
    socket.on("error", (err: NodeJS.ErrnoException) => resolve(`error: ${err.code ?? err.message}`));
    socket.setTimeout(5000, () => resolve("timeout"));
  });
}

/** A TLS connection closed without an HTTP answer (under TLS 1.3 the client learns of the server's alert after its own handshake is done). */
const REFUSED = /^(error: \w+|)$/;

/** Whether a connection's first bytes are a ClientHello offering a session to resume (TLS 1.3's pre_shared_key extension). */
function offersSession(bytes: Buffer): boolean {
  // record (5) + handshake header (4) + version (2) + random (32), then the session id, cipher suites, compression methods.
  let at = 5 + 4 + 2 + 32;
  at += 1 + bytes[at]!;
  at += 2 + bytes.readUInt16BE(at);
  at += 1 + bytes[at]!;
  const end = at + 2 + bytes.readUInt16BE(at);
  for (at += 2; at + 4 <= end; at += 4 + bytes.readUInt16BE(at + 2)) if (bytes.readUInt16BE(at) === 41) return true;
  return false;
}

/** A key and a CSR, as a workload makes them. */
async function keyAndCsr(): Promise<{ key: string; csr: string; keys: CryptoKeyPair }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "O=test", keys, signingAlgorithm: alg });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  return { key: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`, csr: csr.toString("pem"), keys };
}

const metrics = async (proxy: RunningProxy) => parseExposition(await (await fetch(`http://127.0.0.1:${proxy.admin.port}/stats/prometheus`)).text());

beforeAll(async () => {
  caDir = tempDir("instio-mtls-ca-");
  const cpDir = tempDir("instio-mtls-cp-");
  writeFileSync(join(cpDir, "mesh.yaml"), "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.example], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.0.0.1}]}\n");
  cp = await startControlPlane({
    config: cpDir,
    kubeDir: undefined,
    xdsAddress: "127.0.0.1",
    xdsPort: 0,
    monitoringAddress: "127.0.0.1",
    monitoringPort: 0,
    ca: {
      dir: caDir,
      address: "127.0.0.1",
      port: 0,
      authenticate: staticTokens([
        { token: "productpage-token", namespace: "default", serviceAccount: "bookinfo-productpage" },
        { token: "reviews-token", namespace: "default", serviceAccount: "bookinfo-reviews" },
        { token: "ratings-token", namespace: "default", serviceAccount: "bookinfo-ratings" },
      ]),
    },
    log: new Logger("info", () => {}),
  });
  cleanups.push(() => cp.close());
  root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
  app = await startUpstream("reviews");
  cleanups.push(() => app.close());

  const inbound = `\n  listeners:\n    outbound: {address: 127.0.0.1, port: 0}\n    inbound: {address: 127.0.0.1, port: 0, appPort: ${app.port}}`;
  const r = await sidecar("reviews", "reviews-token", workloadSettings("reviews", inbound).replace(/  listeners:\n    outbound: \{address: 127.0.0.1, port: 0, engine: h1\}\n/, ""), `${peerAuthentication("STRICT")}${REVIEWS_POLICY}`);
  reviews = r.proxy;
  reviewsDir = r.dir;
  relayPort = ((await relay(() => reviews.inbound!.port)).address() as { port: number }).port;
  // productpage reaches reviews through the relay; "impostor" is the same sidecar expected under another account.
  // "reviews-fresh": a new connection for every request, so that each one after the first may resume a TLS session.
  const fresh = `${reviewsEntry("reviews-fresh", relayPort, "bookinfo-reviews")}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-fresh, namespace: default}\nspec: {host: reviews-fresh.default.svc.cluster.local, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}}\n`;
  const callers = `${reviewsEntry("reviews", relayPort, "bookinfo-reviews")}---\n${reviewsEntry("reviews-h2", relayPort, "bookinfo-reviews", "HTTP2")}---\n${reviewsEntry("impostor", reviews.inbound!.port, "bookinfo-details")}---\n${fresh}`;
  productpage = (await sidecar("productpage", "productpage-token", workloadSettings("productpage"), callers)).proxy;
  ratings = (await sidecar("ratings", "ratings-token", workloadSettings("ratings"), callers)).proxy;
}, 60_000);

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const viaProductpage = (path: string) => get(`http://127.0.0.1:${productpage.outbound.port}`, "reviews:9080", path);

describe("mutual TLS between sidecars", () => {
  it("carries productpage's requests to reviews over mTLS, with both identities and the peer's workload in the metrics", async () => {
    const r = await viaProductpage("/reviews/0");
    expect(r.status).toBe(200);
    // The app sees neither the exchange's headers nor a different path.
    const seen = app.received.at(-1)!;
    expect(seen.url).toBe("/reviews/0");
    expect(seen.headers["x-envoy-peer-metadata"]).toBeUndefined();
    expect(seen.headers["x-envoy-peer-metadata-id"]).toBeUndefined();
    // On the wire: a TLS handshake record, never the request in clear.
    const bytes = Buffer.concat(wire.at(-1)!);
    expect(bytes[0]).toBe(0x16);
    expect(bytes.includes(Buffer.from("/reviews/0"))).toBe(false);
    // The ClientHello's clear fields: Istio's SNI and ALPN.
    expect(bytes.includes(Buffer.from("outbound_.9080_._.reviews.default.svc.cluster.local"))).toBe(true);
    expect(bytes.includes(Buffer.from("istio-http/1.1"))).toBe(true);

    const client = await metrics(productpage);
    expect(client.find("istio_requests_total", { reporter: "source", source_workload: "productpage-v1", source_principal: PRODUCTPAGE, destination_workload: "reviews-v1", destination_principal: REVIEWS, connection_security_policy: "unknown", response_code: "200" })).toHaveLength(1);
    const server = await metrics(reviews);
    expect(server.find("istio_requests_total", { reporter: "destination", source_workload: "productpage-v1", source_principal: PRODUCTPAGE, destination_workload: "reviews-v1", destination_principal: REVIEWS, connection_security_policy: "mutual_tls", response_code: "200" })).toHaveLength(1);
  });

  it("speaks HTTP/2 between sidecars over mTLS for an HTTP2 port, with ALPN istio-h2", async () => {
    const connections = wire.length;
    const r = await get(`http://127.0.0.1:${productpage.outbound.port}`, "reviews-h2:9080", "/reviews/h2");
    expect(r.status).toBe(200);
    expect(app.received.at(-1)!.url).toBe("/reviews/h2");
    const bytes = Buffer.concat(wire[connections]!);
    expect(bytes[0]).toBe(0x16);
    expect(bytes.includes(Buffer.from("istio-h2"))).toBe(true);
    expect(bytes.includes(Buffer.from("/reviews/h2"))).toBe(false);
    // (The exchange is recorded when the HTTP/2 stream closes, which may follow the response by a tick.)
    await eventually(async () => (await metrics(productpage)).find("istio_requests_total", { reporter: "source", destination_service: "reviews-h2.default.svc.cluster.local", destination_workload: "reviews-v1", destination_principal: REVIEWS, response_code: "200" }).length === 1, 5000, "the source-side series");
  });

  it("refuses a sidecar that presents another identity than the destination's service accounts", async () => {
    const r = await get(`http://127.0.0.1:${productpage.outbound.port}`, "impostor:9080", "/");
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/upstream connect error/);
  });

  it("lets the AuthorizationPolicy allow one service account and deny another with 403 RBAC", async () => {
    const before = (await metrics(reviews)).sum("envoy_http_rbac_denied");
    const denied = await get(`http://127.0.0.1:${ratings.outbound.port}`, "reviews:9080", "/reviews/0");
    expect(denied.status).toBe(403);
    expect(denied.text).toBe("RBAC: access denied");
    // The public paths are for anyone in the mesh.
    expect((await get(`http://127.0.0.1:${ratings.outbound.port}`, "reviews:9080", "/public/x")).status).toBe(200);
    const server = await metrics(reviews);
    expect(server.sum("envoy_http_rbac_denied") - before).toBe(1);
    expect(server.find("istio_requests_total", { reporter: "destination", source_principal: RATINGS, response_code: "403", response_flags: "-" })).toHaveLength(1);
    // Path normalization first: an encoded dot segment does not smuggle ratings past the policy.
    expect((await get(`http://127.0.0.1:${ratings.outbound.port}`, "reviews:9080", "/public/%2E%2E/reviews/0")).status).toBe(403);
  });

  it("resumes TLS sessions on new connections, each caller keeping its own identity", async () => {
    for (const [caller, status] of [[productpage, 200], [ratings, 403]] as const) {
      const connections = wire.length;
      for (let i = 0; i < 8; i++) expect((await get(`http://127.0.0.1:${caller.outbound.port}`, "reviews-fresh:9080", `/reviews/${i}`)).status).toBe(status);
      await eventually(() => wire.length >= connections + 8, 5000, "eight connections");
      const hellos = wire.slice(connections).map((c) => offersSession(Buffer.concat(c)));
      // The first connection has no session to offer; the next ones resume the one the sidecar was given, except
      // around a renewal of either side's certificate (every 3 s here): the caller's new certificate starts without
      // a session, and the server's new context may not know the ticket.
      expect(hellos[0]).toBe(false);
      expect(hellos.slice(1).filter(Boolean).length).toBeGreaterThanOrEqual(4);
    }
  });

  it("refuses a client certificate the mesh's root did not sign, or one that expired", async () => {
    // A self-signed certificate claiming productpage's identity.
    const forged = await keyAndCsr();
    const selfSigned = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "01", name: "O=forged", notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000), signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }, keys: forged.keys, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: PRODUCTPAGE }], true)] });
    expect(await tlsClient({ key: forged.key, cert: selfSigned.toString("pem") })).toMatch(REFUSED);
    // A certificate from the mesh's own CA, expired.
    const ca = await CertificateAuthority.open(caDir);
    const stale = await keyAndCsr();
    const chain = await ca.sign(stale.csr, { namespace: "default", serviceAccount: "bookinfo-productpage" }, 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await tlsClient({ key: stale.key, cert: chain.slice(0, -1).join("") })).toMatch(REFUSED);
    // No certificate at all.
    expect(await tlsClient({})).toMatch(REFUSED);
    // The same client with a valid certificate gets through: the refusals above are the certificates'.
    const good = await keyAndCsr();
    const valid = await ca.sign(good.csr, { namespace: "default", serviceAccount: "bookinfo-productpage" }, 60);
    expect(await tlsClient({ key: good.key, cert: valid.slice(0, -1).join("") })).toBe("HTTP/1.1 200 OK");
    expect((await metrics(reviews)).sum("instio_inbound_connections_refused_total", { reason: "handshake" })).toBeGreaterThanOrEqual(2);
  });

  it("refuses plaintext under STRICT and accepts it once the PeerAuthentication says PERMISSIVE", { timeout: 20_000 }, async () => {
    const plain = (path: string) => rawExchange(reviews.inbound!.port, `GET ${path} HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n`);
    expect(await plain("/public")).toBe("");
    expect((await metrics(reviews)).sum("instio_inbound_connections_refused_total", { reason: "plaintext" })).toBeGreaterThanOrEqual(1);
    writeFileSync(join(reviewsDir, "mesh.yaml"), `${peerAuthentication("PERMISSIVE")}${REVIEWS_POLICY}`);
    await eventually(async () => (await plain("/public")).startsWith("HTTP/1.1 200"), 10_000, "PERMISSIVE to apply");
    // A plaintext caller has no principal: only the public paths.
    expect(await plain("/reviews/0")).toMatch(/^HTTP\/1.1 403/);
    // mTLS still works on the same port.
    expect((await viaProductpage("/reviews/1")).status).toBe(200);
    const server = await metrics(reviews);
    expect(server.find("istio_requests_total", { reporter: "destination", source_principal: "unknown", connection_security_policy: "none", response_code: "200" }).length).toBeGreaterThan(0);
    writeFileSync(join(reviewsDir, "mesh.yaml"), `${peerAuthentication("STRICT")}${REVIEWS_POLICY}`);
    await eventually(async () => (await plain("/public")) === "", 10_000, "STRICT to apply again");
  });

  it("rotates both sidecars' certificates under continuous load with no failed request", { timeout: 30_000 }, async () => {
    const serial = async (proxy: RunningProxy): Promise<string> => ((await (await fetch(`http://127.0.0.1:${proxy.admin.port}/certs`)).json()) as { certificates: { cert_chain: { serial_number: string }[] }[] }).certificates[0]!.cert_chain[0]!.serial_number;
    const first = [await serial(productpage), await serial(reviews)];
    const failures: string[] = [];
    let done = 0;
    const until = Date.now() + 8000;
    // Four callers in a loop, some on kept-alive connections, some on new ones.
    await Promise.all([0, 1, 2, 3].map(async (n) => {
      while (Date.now() < until) {
        const r = await viaProductpage(`/load/${n}`).catch((err: Error) => ({ status: 0, text: err.message }));
        if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
        done++;
      }
    }));
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThan(100);
    // Both rotated at least once during the run (6 s certificates, renewed at half-life).
    expect(await serial(productpage)).not.toBe(first[0]);
    const now = await serial(reviews);
    expect(now).not.toBe(first[1]);
    // A new connection is served the renewed certificate.
    const ca = await CertificateAuthority.open(caDir);
    const client = await keyAndCsr();
    const chain = await ca.sign(client.csr, { namespace: "default", serviceAccount: "bookinfo-productpage" }, 60);
    let served = "";
    expect(await tlsClient({ key: client.key, cert: chain.slice(0, -1).join("") }, (s) => (served = s))).toBe("HTTP/1.1 200 OK");
    const hex = (s: string): string => s.toLowerCase().replace(/^0+/, "");
    // (Another renewal may land between the two reads.)
    expect([hex(now), hex(await serial(reviews))]).toContain(hex(served));
  });
});
