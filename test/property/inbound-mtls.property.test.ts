// The inbound listener's first-byte sniffing and TLS under hostile input, and
// the metadata exchange's decoder under hostile header values. Whatever a
// client sends — random bytes, a TLS record header followed by garbage, a real
// ClientHello cut short or corrupted, a plaintext request head — the sidecar
// closes or answers that connection and keeps serving both plaintext and mTLS
// clients, with no internal error; whatever a peer puts in
// x-envoy-peer-metadata, the decoder returns a peer or nothing, never throws,
// and gives back what the real encoder wrote.

import { webcrypto } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../host/control-plane/ca/authority.js";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { localPeerMetadata, PeerCache } from "../../host/security/peer-metadata.js";
import "../support/fast-check-seed.js";
import { eventually } from "../support/mesh.js";
import { settingsYaml } from "../support/proxy.js";
import { rawExchange } from "../support/raw-http.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

let dir: string;
let ca: CertificateAuthority;
let app: Upstream;
let proxy: RunningProxy;
const logs: string[] = [];
let client: { key: string; cert: string };
/** A real ClientHello, as a mesh client sends it. */
let clientHello: Buffer;

async function issue(serviceAccount: string): Promise<{ key: string; chain: string[] }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "O=test", keys, signingAlgorithm: alg });
  const chain = await ca.sign(csr.toString("pem"), { namespace: "default", serviceAccount }, 3600);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  return { key: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`, chain };
}

/** The first flight a TLS client sends, caught by a server that never answers. */
async function captureClientHello(): Promise<Buffer> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const caught = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", resolve)));
  const socket = tlsConnect({ host: "127.0.0.1", port: (server.address() as { port: number }).port, servername: "outbound_.9080_._.reviews.default.svc.cluster.local", ALPNProtocols: ["istio-http/1.1", "istio", "http/1.1"] });
  socket.on("error", () => {});
  const hello = await caught;
  socket.destroy();
  server.close();
  return hello;
}

/** Sends `bytes`, then waits until the sidecar closes the connection or a moment passes. */
function hostile(bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(proxy.inbound!.port, "127.0.0.1", () => socket.end(bytes));
    socket.on("data", () => {});
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
    socket.setTimeout(300, () => {
      socket.destroy();
      resolve();
    });
  });
}

function mtlsGet(): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: "127.0.0.1", port: proxy.inbound!.port, ca: ca.rootPem, ...client, ALPNProtocols: ["istio-http/1.1", "istio", "http/1.1"], checkServerIdentity: () => undefined }, () => socket.write("GET /ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"));
    let text = "";
    socket.on("data", (b: Buffer) => (text += b.toString("latin1")));
    socket.on("close", () => resolve(text.split("\r\n")[0] ?? ""));
    socket.on("error", (err) => resolve(`error: ${err.message}`));
  });
}

const plainGet = async (): Promise<string> => (await rawExchange(proxy.inbound!.port, "GET /ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")).split("\r\n")[0] ?? "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "instio-inbound-fuzz-"));
  ca = await CertificateAuthority.open(dir);
  const certDir = join(dir, "certs");
  mkdirSync(certDir);
  const own = await issue("bookinfo-reviews");
  writeFileSync(join(certDir, "cert-chain.pem"), own.chain.slice(0, -1).join(""));
  writeFileSync(join(certDir, "key.pem"), own.key, { mode: 0o600 });
  writeFileSync(join(certDir, "root-cert.pem"), ca.rootPem);
  const caller = await issue("bookinfo-productpage");
  client = { key: caller.key, cert: caller.chain.slice(0, -1).join("") };
  app = await startUpstream("reviews");
  const settings = settingsYaml("h1", `  labels: {app: reviews}\n  listeners:\n    outbound: {address: 127.0.0.1, port: 0}\n    inbound: {address: 127.0.0.1, port: 0, appPort: ${app.port}}`).replace(/  listeners:\n    outbound: \{address: 127.0.0.1, port: 0, engine: h1\}\n/, "");
  // PERMISSIVE (Istio's default): both the TLS and the plaintext path are reachable.
  proxy = await startProxy({ config: requireConfig(loadConfigText("mesh.yaml", settings)), certificates: { kind: "files", dir: certDir }, log: (l) => logs.push(l) });
  await eventually(() => proxy.lifecycle.ready, 10_000, "the sidecar's certificate");
  clientHello = await captureClientHello();
}, 30_000);

afterAll(async () => {
  await proxy?.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the inbound listener under hostile bytes", () => {
  const corrupted = fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([cut, at, byte]) => {
    const hello = Buffer.from(clientHello);
    hello[at % hello.length] = byte;
    return hello.subarray(0, 1 + (cut % hello.length));
  });
  const input = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 600 }).map((b) => Buffer.from(b)),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.from(b)])),
    fc.nat().map((n) => clientHello.subarray(0, n % clientHello.length)),
    corrupted,
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(`GET /${s} HTTP/1.1\r\nhost: x\r\n\r\n`, "latin1")),
  );

  it("closes or answers each connection and keeps serving plaintext and mTLS clients", { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(input, { minLength: 1, maxLength: 8 }), async (batch) => {
        await Promise.all(batch.map(hostile));
        expect(await plainGet()).toBe("HTTP/1.1 200 OK");
        expect(await mtlsGet()).toBe("HTTP/1.1 200 OK");
      }),
      { numRuns: 40 },
    );
    expect(logs.filter((l) => l.includes("internal error"))).toEqual([]);
  });
});

describe("the metadata exchange's decoder", () => {
  const self = fc.record({
    id: fc.string({ maxLength: 60 }),
    name: fc.string({ maxLength: 30 }),
    namespace: fc.string({ maxLength: 30 }),
    workload: fc.string({ maxLength: 30 }),
    cluster: fc.string({ maxLength: 30 }),
    labels: fc.record({ app: fc.string({ maxLength: 20 }), version: fc.string({ maxLength: 20 }) }, { requiredKeys: [] }),
  });

  it("reads back what the encoder wrote", () => {
    fc.assert(
      fc.property(self, (s) => {
        const { id, value } = localPeerMetadata(s);
        const peer = new PeerCache().peer(id, value)!;
        expect(peer).toBeDefined();
        expect({ name: peer.name, namespace: peer.namespace, workload: peer.workload, cluster: peer.cluster }).toEqual({ name: s.name, namespace: s.namespace, workload: s.workload, cluster: s.cluster });
        for (const [k, v] of Object.entries(s.labels)) if (v !== "") expect(peer.labels[k]).toBe(v);
      }),
      { numRuns: 300 },
    );
  });

  it("returns a peer or nothing for any header value, never throwing", () => {
    const valid = localPeerMetadata({ id: "sidecar~10.0.0.1~p.default~default.svc.cluster.local", name: "p", namespace: "default", workload: "p", cluster: "Kubernetes", labels: { app: "p" } }).value;
    const value = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString("base64")),
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
        const bytes = Buffer.from(valid, "base64");
        bytes[at % bytes.length] = byte;
        return bytes.toString("base64");
      }),
      fc.nat({ max: 20_000 }).map((n) => "A".repeat(n)),
    );
    const cache = new PeerCache();
    fc.assert(
      fc.property(fc.option(fc.string({ maxLength: 50 }), { nil: undefined }), value, (id, v) => {
        const peer = cache.peer(id, v);
        if (peer !== undefined) for (const f of [peer.name, peer.namespace, peer.workload, peer.cluster]) expect(typeof f).toBe("string");
      }),
      { numRuns: 2000 },
    );
  });
});
