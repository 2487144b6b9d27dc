// The control plane's certificate authority on 15012, over real TLS: a
// workload with its bootstrap token gets a certificate for its SPIFFE identity
// (and only that one, whatever its CSR asks), signed by the mesh's root, valid
// 24 h by default; a caller without a valid token gets none; the root is made
// once and kept, or is the user's own (Istio's plug-in CA files); ADS is served
// over the same TLS.

import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { staticTokens } from "../../host/control-plane/ca/ca-service.js";
import { Logger } from "../../host/log.js";
import { requestCertificate } from "../../host/security/ca-client.js";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { startProxy } from "../../host/proxy/server.js";
import { eventually } from "../support/mesh.js";
import { startKubeApiServer } from "../support/kube-api-server.js";
import * as k8s from "@kubernetes/client-node";
import { settingsYaml } from "../support/proxy.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOKENS = [
  { token: "reviews-token", namespace: "default", serviceAccount: "bookinfo-reviews" },
  { token: "ratings-token", namespace: "prod", serviceAccount: "ratings" },
];

async function controlPlane(caDir: string): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), "instio-ca-mesh-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "mesh.yaml"), "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.example], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.0.0.1}]}\n");
  const cp = await startControlPlane({ config: dir, kubeDir: undefined, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, ca: { dir: caDir, address: "127.0.0.1", port: 0, authenticate: staticTokens(TOKENS) }, log: new Logger("info", () => {}) });
  cleanups.push(() => cp.close());
  return cp;
}

function tempCaDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "instio-ca-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("the control plane's certificate authority", () => {
  it("issues a workload the certificate of the identity its token proves, signed by a root it keeps", { timeout: 30_000 }, async () => {
    const caDir = tempCaDir();
    const cp = await controlPlane(caDir);
    const root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
    expect(statSync(join(caDir, "root-key.pem")).mode & 0o777).toBe(0o600);
    const rootCert = new X509Certificate(root);
    expect(rootCert.ca).toBe(true);
    // Ten years, as Istio's self-signed root.
    expect(new Date(rootCert.validTo).getTime() - Date.now()).toBeGreaterThan(3649 * 86_400_000);

    const issued = await requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token: "reviews-token" });
    const leaf = new X509Certificate(issued.chain[0]!);
    expect(leaf.subjectAltName).toBe("URI:spiffe://cluster.local/ns/default/sa/bookinfo-reviews");
    expect(leaf.verify(rootCert.publicKey)).toBe(true);
    expect(issued.chain.at(-1)!.trim()).toBe(root.trim());
    const hours = (issued.notAfter.getTime() - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(23.9);
    expect(hours).toBeLessThanOrEqual(24);
    // The key is the one the workload made: the certificate's public key matches it.
    expect(leaf.checkPrivateKey(await import("node:crypto").then((c) => c.createPrivateKey(issued.key)))).toBe(true);
    // A shorter validity when asked; more than 90 days is refused.
    const short = await requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token: "ratings-token", ttlSeconds: 3600 });
    expect(new X509Certificate(short.chain[0]!).subjectAltName).toBe("URI:spiffe://cluster.local/ns/prod/sa/ratings");
    expect(short.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(3600_000);
    await expect(requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token: "ratings-token", ttlSeconds: 91 * 86_400 })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });

    // No identity without a valid token.
    await expect(requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token: "not-a-token" })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: "request authenticate failure" });
    const metrics = await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/metrics`)).text();
    expect(metrics).toMatch(/^citadel_server_success_cert_issuance_count 2$/m);
    expect(metrics).toMatch(/^citadel_server_authentication_failure_count 1$/m);

    // The root survives a restart: certificates issued before still verify.
    await cp.close();
    const again = await controlPlane(caDir);
    expect(readFileSync(join(caDir, "root-cert.pem"), "utf8")).toBe(root);
    const later = await requestCertificate({ address: `127.0.0.1:${again.securePort}`, rootPem: root, token: "reviews-token" });
    expect(new X509Certificate(later.chain[0]!).verify(rootCert.publicKey)).toBe(true);
  });

  it("signs with the user's own CA (Istio's plug-in files: ca-cert, ca-key, root-cert, cert-chain)", { timeout: 30_000 }, async () => {
    const dir = tempCaDir();
    const openssl = (...args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore" });
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "root-key.pem"), "-out", join(dir, "root-cert.pem"), "-days", "30", "-subj", "/O=example root");
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "ca-key.pem"), "-out", join(dir, "ca.csr"), "-subj", "/O=example intermediate");
    writeFileSync(join(dir, "ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n");
    openssl("x509", "-req", "-in", join(dir, "ca.csr"), "-CA", join(dir, "root-cert.pem"), "-CAkey", join(dir, "root-key.pem"), "-CAcreateserial", "-days", "30", "-extfile", join(dir, "ca.ext"), "-out", join(dir, "ca-cert.pem"));
    writeFileSync(join(dir, "cert-chain.pem"), `${readFileSync(join(dir, "ca-cert.pem"), "utf8")}${readFileSync(join(dir, "root-cert.pem"), "utf8")}`);
    const cp = await controlPlane(dir);
    const root = readFileSync(join(dir, "root-cert.pem"), "utf8");
    const issued = await requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token: "reviews-token" });
    // Leaf, intermediate, root; the leaf signed by the intermediate.
    expect(issued.chain).toHaveLength(3);
    const [leaf, intermediate, top] = issued.chain.map((p) => new X509Certificate(p));
    expect(leaf!.verify(intermediate!.publicKey)).toBe(true);
    expect(intermediate!.verify(top!.publicKey)).toBe(true);
    expect(leaf!.issuer).toContain("example intermediate");
  });

  it("keeps a sidecar's certificate: not ready without one, renewed at half-life, readiness failing once it expires unrenewed", { timeout: 40_000 }, async () => {
    const caDir = tempCaDir();
    const cp = await controlPlane(caDir);
    const root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
    const tokenFile = join(caDir, "istio-token");
    writeFileSync(tokenFile, "reviews-token\n");
    const logs: string[] = [];
    const proxy = await startProxy({
      config: requireConfig(loadConfigText("s.yaml", settingsYaml("h1"))),
      // Six-second certificates: renewed about every three.
      certificates: { kind: "ca", ca: { address: `127.0.0.1:${cp.securePort}`, rootPem: root, ttlSeconds: 6 }, tokenFile },
      log: (l) => logs.push(l),
    });
    cleanups.push(() => proxy.close());
    const admin = `http://127.0.0.1:${proxy.admin.port}`;
    const status = async (): Promise<number> => (await fetch(`${admin}/ready`)).status;
    const certs = async (): Promise<{ serial_number: string; subject_alt_names: { uri?: string }[] }[]> => ((await (await fetch(`${admin}/certs`)).json()) as { certificates: { cert_chain: { serial_number: string; subject_alt_names: { uri?: string }[] }[] }[] }).certificates.flatMap((c) => c.cert_chain);
    await eventually(async () => (await status()) === 200, 10_000, "ready with a certificate");
    const [first] = await certs();
    expect(first!.subject_alt_names).toEqual([{ uri: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" }]);
    await eventually(async () => (await certs())[0]!.serial_number !== first!.serial_number, 10_000, "a renewal");
    expect(await status()).toBe(200);
    // The CA gone: renewals fail, and once the certificate expires the sidecar is not ready.
    await cp.close();
    await eventually(async () => (await status()) === 503, 15_000, "readiness to fail on expiry");
    const metrics = await (await fetch(`${admin}/stats/prometheus`)).text();
    expect(metrics).toMatch(/^instio_workload_certificate_renewals_total\{result="failed"\} [1-9]/m);
    expect(logs.some((l) => l.includes("the workload certificate expired"))).toBe(true);
  });

  it("checks a pod's service-account token with the cluster's TokenReview (audience istio-ca) when a cluster is watched", { timeout: 30_000 }, async () => {
    const api = await startKubeApiServer();
    cleanups.push(() => api.close());
    api.tokens.set("projected-reviews-token", { username: "system:serviceaccount:default:bookinfo-reviews", audiences: ["istio-ca"] });
    api.tokens.set("api-server-token", { username: "system:serviceaccount:default:bookinfo-reviews", audiences: ["https://kubernetes.default.svc"] });
    api.tokens.set("a-user-token", { username: "jane", audiences: ["istio-ca"] });
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: "test", server: api.url, skipTLSVerify: true }], users: [{ name: "test" }], contexts: [{ name: "test", cluster: "test", user: "test" }], currentContext: "test" });
    const caDir = tempCaDir();
    const cp = await startControlPlane({ config: undefined, kubeDir: undefined, kube: { config: kc }, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, ca: { dir: caDir, address: "127.0.0.1", port: 0 }, log: new Logger("info", () => {}) });
    cleanups.push(() => cp.close());
    const root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
    const ask = (token: string) => requestCertificate({ address: `127.0.0.1:${cp.securePort}`, rootPem: root, token });
    expect(new X509Certificate((await ask("projected-reviews-token")).chain[0]!).subjectAltName).toBe("URI:spiffe://cluster.local/ns/default/sa/bookinfo-reviews");
    // A token for another audience, a user that is no service account, a token the cluster does not know: nothing.
    for (const token of ["api-server-token", "a-user-token", "forged"]) await expect(ask(token)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(api.requests.filter((r) => r.path === "/apis/authentication.k8s.io/v1/tokenreviews")).toHaveLength(4);
  });

  it("writes the mesh's root where injected pods and the API server need it: istio-ca-root-cert in every namespace, the webhook's caBundle", { timeout: 30_000 }, async () => {
    const api = await startKubeApiServer();
    cleanups.push(() => api.close());
    api.apply("/api/v1/namespaces", { metadata: { name: "default" } });
    api.apply("/api/v1/namespaces", { metadata: { name: "shop", labels: { "istio-injection": "enabled" } } });
    // One namespace already has an old root (a CA replaced): it is brought up to date.
    api.written.set("/api/v1/namespaces/shop/configmaps/istio-ca-root-cert", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "istio-ca-root-cert", namespace: "shop", resourceVersion: "1" }, data: { "root-cert.pem": "old" } });
    const hook = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/instio-sidecar-injector";
    api.written.set(hook, { apiVersion: "admissionregistration.k8s.io/v1", kind: "MutatingWebhookConfiguration", metadata: { name: "instio-sidecar-injector", resourceVersion: "1" }, webhooks: [{ name: "namespace.sidecar-injector.istio.io", admissionReviewVersions: ["v1"], sideEffects: "None", clientConfig: { service: { name: "istiod", namespace: "istio-system", path: "/inject", port: 443 }, caBundle: "" } }] });
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: "test", server: api.url, skipTLSVerify: true }], users: [{ name: "test" }], contexts: [{ name: "test", cluster: "test", user: "test" }], currentContext: "test" });
    const caDir = tempCaDir();
    const { defaultInjectOptions } = await import("../../host/control-plane/injector/inject.js");
    const cp = await startControlPlane({ config: undefined, kubeDir: undefined, kube: { config: kc, retryMs: 50 }, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, debounce: { quietMs: 20, maxMs: 200 }, ca: { dir: caDir, address: "127.0.0.1", port: 0 }, injector: { address: "127.0.0.1", port: 0, options: defaultInjectOptions(), webhookConfiguration: "instio-sidecar-injector" }, log: new Logger("info", () => {}) });
    cleanups.push(() => cp.close());
    const root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
    const rootIn = (ns: string): unknown => (api.written.get(`/api/v1/namespaces/${ns}/configmaps/istio-ca-root-cert`)?.data as Record<string, string> | undefined)?.["root-cert.pem"];
    await eventually(() => rootIn("default") === root && rootIn("shop") === root, 10_000, "the root in both namespaces");
    await eventually(() => (api.written.get(hook)?.webhooks as { clientConfig: { caBundle: string } }[])[0]!.clientConfig.caBundle === Buffer.from(root).toString("base64"), 10_000, "the webhook's caBundle");
    // A namespace created later gets it too.
    api.apply("/api/v1/namespaces", { metadata: { name: "late" } });
    await eventually(() => rootIn("late") === root, 10_000, "the root in a namespace created later");
  });

  it("serves ADS over the same TLS (the sidecar's secure xDS)", { timeout: 30_000 }, async () => {
    const caDir = tempCaDir();
    const cp = await controlPlane(caDir);
    const root = readFileSync(join(caDir, "root-cert.pem"), "utf8");
    const { adsServiceDefinition } = await import("../../host/control-plane/xds/ads-server.js");
    const Ads = grpc.makeGenericClientConstructor(adsServiceDefinition(), "Ads");
    const client = new Ads(`127.0.0.1:${cp.securePort}`, grpc.credentials.createSsl(Buffer.from(root)), { "grpc.ssl_target_name_override": "istiod.istio-system.svc" }) as unknown as grpc.Client & { StreamAggregatedResources(): grpc.ClientDuplexStream<object, { type_url: string; resources: unknown[] }> };
    cleanups.push(() => client.close());
    const stream = client.StreamAggregatedResources();
    const first = new Promise<{ type_url: string; resources: unknown[] }>((resolve, reject) => {
      stream.on("data", resolve);
      stream.on("error", reject);
    });
    stream.write({ node: { id: "sidecar~127.0.0.1~p.default~default.svc.cluster.local" }, type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster", resource_names: [] });
    const response = await first;
    stream.cancel();
    expect(response.type_url).toBe("type.googleapis.com/envoy.config.cluster.v3.Cluster");
    expect(response.resources.length).toBeGreaterThan(0);
  });
});
