// The control plane on a live cluster: @kubernetes/client-node informers
// against a list/watch API server (test/support/kube-api-server.ts; no
// kube-apiserver runs here), Istio's CRDs read from it, and @grpc/grpc-js-xds
// clients following what the cluster says: a VirtualService edit, an endpoint
// scaled out, a relist after 410 Gone, a resume from a bookmark, a CRD that is
// not installed, an API server error, and a bad object that keeps the last good
// config serving.

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as k8s from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { Logger } from "../../host/log.js";
import { startKubeApiServer, type ApiObject, type KubeApiServer } from "../support/kube-api-server.js";
import { CLI } from "../support/child-proxy.js";
import { ECHO_SERVICE, eventually, grpcBootstrap, startBackend, type Backend } from "../support/mesh.js";
import { parseExposition } from "../support/prometheus.js";

const SERVICES = "/api/v1/services";
const PODS = "/api/v1/pods";
const SLICES = "/apis/discovery.k8s.io/v1/endpointslices";
const VIRTUAL_SERVICES = "/apis/networking.istio.io/v1/virtualservices";
const DESTINATION_RULES = "/apis/networking.istio.io/v1/destinationrules";
const SERVICE_ENTRIES = "/apis/networking.istio.io/v1/serviceentries";

const echoService: ApiObject = { metadata: { name: "echo", namespace: "default" }, spec: { clusterIP: "10.96.0.20", ports: [{ name: "grpc", port: 7070, targetPort: 7070, protocol: "TCP" }] } };
const pod = (b: Backend): ApiObject => ({ metadata: { name: b.name, namespace: "default", labels: { app: "echo", version: b.version } }, spec: { serviceAccountName: "echo" }, status: { podIP: "127.0.0.1", phase: "Running" } });
const slice = (b: Backend): ApiObject => ({
  metadata: { name: b.name, namespace: "default", labels: { "kubernetes.io/service-name": "echo" }, managedFields: [{ manager: "kube-controller-manager" }] },
  addressType: "IPv4",
  ports: [{ name: "grpc", port: b.port, protocol: "TCP" }],
  endpoints: [{ addresses: ["127.0.0.1"], conditions: { ready: true }, targetRef: { kind: "Pod", name: b.name, namespace: "default" } }],
});
const routeTo = (subset: string, timeout = "5s"): ApiObject => ({ metadata: { name: "echo", namespace: "default" }, spec: { hosts: ["echo"], http: [{ timeout, route: [{ destination: { host: "echo", subset } }] }] } });
const subsets: ApiObject = { metadata: { name: "echo", namespace: "default" }, spec: { host: "echo", trafficPolicy: { loadBalancer: { simple: "ROUND_ROBIN" } }, subsets: [{ name: "v1", labels: { version: "v1" } }, { name: "v2", labels: { version: "v2" } }] } };

const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, "Echo");

describe("control plane on a live cluster (client-node informers, list/watch server)", () => {
  let api: KubeApiServer;
  let cp: ControlPlane;
  let v1: Backend, v2: Backend, v2b: Backend;
  const logs: string[] = [];
  const clients: grpc.Client[] = [];

  const call = (client: grpc.Client): Promise<string> => new Promise((resolve, reject) => {
    (client as unknown as { call(b: Buffer, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void })
      .call(Buffer.from("x"), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve((JSON.parse(res!.toString()) as { name: string }).name)));
  });
  const client = (): grpc.Client => {
    const c = new EchoClient("xds:///echo:7070", grpc.credentials.createInsecure(), { "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config": JSON.stringify(grpcBootstrap(cp.xdsPort, `kube-client-${clients.length}`)) });
    clients.push(c);
    return c;
  };
  const registry = async (): Promise<{ name: string; endpoints: { address: string; ports: Record<string, number> }[] }[]> =>
    (await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/debug/registryz`)).json()) as never;
  const echoPorts = async (): Promise<number[]> => ((await registry()).find((s) => s.name === "echo")?.endpoints ?? []).map((e) => Object.values(e.ports)[0]!).sort();
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
    parseExposition(await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/metrics`)).text()).sum(name, labels);

  beforeAll(async () => {
    [v1, v2, v2b] = await Promise.all([startBackend("echo-v1", "v1"), startBackend("echo-v2", "v2"), startBackend("echo-v2b", "v2")]);
    api = await startKubeApiServer();
    api.apply("/api/v1/namespaces", { metadata: { name: "default" } });
    api.apply(SERVICES, echoService);
    for (const b of [v1!, v2!]) {
      api.apply(PODS, pod(b));
      api.apply(SLICES, slice(b));
    }
    api.apply(VIRTUAL_SERVICES, routeTo("v1"));
    api.apply(DESTINATION_RULES, subsets);
    api.missing.add(SERVICE_ENTRIES); // that CRD is not installed, at first
    const kc = new k8s.KubeConfig();
    // client-node speaks plain http only with skipTLSVerify set.
    kc.loadFromOptions({ clusters: [{ name: "test", server: api.url, skipTLSVerify: true }], users: [{ name: "test" }], contexts: [{ name: "test", cluster: "test", user: "test" }], currentContext: "test" });
    cp = await startControlPlane({ config: undefined, kubeDir: undefined, kube: { config: kc, retryMs: 50, missingRetryMs: 200 }, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, debounce: { quietMs: 20, maxMs: 200 }, log: new Logger("info", (l) => logs.push(l)) });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await cp?.close();
    await api?.close();
    for (const b of [v1, v2, v2b]) b?.close();
  });

  it("configures gRPC clients from the cluster's Services, EndpointSlices, Pods and VirtualServices", async () => {
    expect(logs.some((l) => /not served by .* \(CRD not installed\?\)/.test(l) && l.includes("ServiceEntry"))).toBe(true);
    const c = client();
    expect(await call(c)).toBe("echo-v1");
    // Every watch asked for bookmarks.
    const watches = api.requests.filter((r) => r.query.watch === "true");
    expect(watches.length).toBeGreaterThan(0);
    expect(watches.every((r) => r.query.allowWatchBookmarks === "true")).toBe(true);
    expect(await metric("pilot_k8s_cfg_events", { type: "VirtualService", event: "add" })).toBe(1);
  });

  it("follows a VirtualService edited in the cluster", async () => {
    const c = client();
    expect(await call(c)).toBe("echo-v1");
    api.apply(VIRTUAL_SERVICES, routeTo("v2"));
    await eventually(async () => (await call(c)) === "echo-v2", 5000, "the edit to reach the client");
    expect(await metric("pilot_k8s_cfg_events", { type: "VirtualService", event: "update" })).toBeGreaterThanOrEqual(1);
  });

  it("resumes a watch from the last bookmark, without listing again", async () => {
    await eventually(async () => (await echoPorts()).length === 2, 5000, "the registry");
    api.bookmark();
    const bookmarkedAt = api.resourceVersion();
    await new Promise((r) => setTimeout(r, 100));
    const before = api.requests.length;
    api.closeWatches();
    await eventually(() => api.requests.slice(before).filter((r) => r.path === SLICES && r.query.watch === "true").length > 0, 5000, "the slice watch to reconnect");
    const again = api.requests.slice(before).filter((r) => r.path === SLICES);
    expect(again.every((r) => r.query.watch === "true")).toBe(true); // no list
    expect(again[0]!.query.resourceVersion).toBe(String(bookmarkedAt));
  });

  for (const expiry of ["status", "event"] as const) {
    it(`relists after 410 Gone (${expiry === "status" ? "as the watch's HTTP status" : "as a watch ERROR event"}), and drops what was deleted meanwhile`, async () => {
      api.expiry = expiry;
      api.apply(PODS, pod(v2b));
      api.apply(SLICES, slice(v2b));
      await eventually(async () => (await echoPorts()).includes(v2b.port), 5000, "the new endpoint");
      // The watch goes down, the endpoint goes away, and the server forgets the history in between.
      const before = api.requests.length;
      api.closeWatches();
      api.remove(SLICES, "default", v2b.name);
      api.compact();
      await eventually(async () => !(await echoPorts()).includes(v2b.port), 10_000, "the deleted endpoint to go");
      expect(api.requests.slice(before).some((r) => r.path === SLICES && r.query.watch !== "true")).toBe(true); // a relist
      expect(await echoPorts()).toEqual([v1.port, v2.port].sort());
    });
  }

  it("retries a list the API server fails, and picks up a CRD installed later", async () => {
    api.missing.delete(SERVICE_ENTRIES);
    api.failLists(SERVICE_ENTRIES, 2);
    api.apply(SERVICE_ENTRIES, { metadata: { name: "external", namespace: "default" }, spec: { hosts: ["api.example.com"], ports: [{ number: 443, name: "tls", protocol: "TLS" }], resolution: "DNS", location: "MESH_EXTERNAL" } });
    await eventually(async () => (await registry()).some((s) => s.name === "external"), 10_000, "the ServiceEntry");
    expect(logs.some((l) => l.includes("ServiceEntry") && l.includes("HTTP 500"))).toBe(true);
    expect(logs.some((l) => l.includes("ServiceEntry is served now"))).toBe(true);
  });

  it("serves an invalid object at its last good version, naming it and the line, while the rest of the cluster updates", async () => {
    api.apply(VIRTUAL_SERVICES, routeTo("v1"));
    const c = client();
    await eventually(async () => (await call(c)) === "echo-v1", 5000, "v1");
    const rejected = await metric("pilot_config_rejected");
    api.apply(VIRTUAL_SERVICES, routeTo("v2", "soon"));
    await eventually(async () => (await metric("pilot_config_rejected")) > rejected, 5000, "the rejection");
    expect(logs.some((l) => /cluster:VirtualService\/default\/echo:\d+:\d+/.test(l) && l.includes("timeout"))).toBe(true);
    expect(await call(c)).toBe("echo-v1");
    // An endpoint change still goes out.
    api.apply(PODS, pod(v2b));
    api.apply(SLICES, slice(v2b));
    await eventually(async () => (await echoPorts()).includes(v2b.port), 5000, "the endpoint change");
    // The held VirtualService still routes, at its last good version, once the clients have the push.
    expect(cp.mesh.snapshot.model.virtualServices.map((v) => `${v.namespace}/${v.name}`)).toEqual(["default/echo"]);
    await eventually(async () => {
      const sync = (await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/debug/syncz`)).json()) as Record<string, string>[];
      return sync.length > 0 && sync.every((p) => ["cds", "eds", "lds", "rds"].every((t) => p[t] === "SYNCED" || p[t] === "IGNORED"));
    }, 5000, "the clients to ACK the endpoint change");
    expect(new Set(await Promise.all(Array.from({ length: 12 }, () => call(c))))).toEqual(new Set(["echo-v1"]));
    // Fixed, the object serves at its new version.
    api.apply(VIRTUAL_SERVICES, routeTo("v2"));
    await eventually(async () => (await call(c)) !== "echo-v1", 5000, "the fixed VirtualService");
  });

  it("is what `instio control-plane --kubeconfig FILE` watches", async () => {
    const dir = mkdtempSync(join(tmpdir(), "instio-kubeconfig-"));
    const file = join(dir, "config");
    writeFileSync(file, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "${api.url}", insecure-skip-tls-verify: true}}]
users: [{name: test, user: {}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`);
    const child = spawn(process.execPath, [CLI, "control-plane", "--kubeconfig", file, "--xds-port", "0", "--monitoring-port", "0", "--address", "127.0.0.1"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await eventually(() => /monitoring on 127\.0\.0\.1:\d+/.test(out), 15_000, `the control plane to start:\n${out}`);
      expect(out).toMatch(/kubernetes: synced from http:\/\/127\.0\.0\.1:\d+: .*Service/);
      const port = /monitoring on 127\.0\.0\.1:(\d+)/.exec(out)![1];
      const services = (await (await fetch(`http://127.0.0.1:${port}/debug/registryz`)).json()) as { name: string }[];
      expect(services.map((s) => s.name)).toContain("echo");
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });
});
