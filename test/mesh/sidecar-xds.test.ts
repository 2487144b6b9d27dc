// An instio sidecar configured only by the control plane, over real sockets:
// `instio control-plane` serving Istio YAML, a sidecar started with no routes
// of its own (readiness 503 until the first complete config), HTTP upstreams
// reached only through it. Under continuous traffic: a VirtualService edit, an
// endpoint added and one removed, and the control plane killed and started
// again all pass with no failed request. A control plane that sends what
// instio cannot serve is NACKed with the resource and the field, and the
// previous config keeps serving.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { adsServiceDefinition } from "../../host/control-plane/xds/ads-server.js";
import { HCM_TYPE } from "../../host/envoy/generate/listeners.js";
import { CLUSTER_TYPE, LISTENER_TYPE, packAny, type AnyMessage } from "../../host/envoy/protos.js";
import { Logger } from "../../host/log.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { nodeIdentity } from "../../host/xds/node-identity.js";
import { xdsStartingConfig } from "../../host/xds/starting-config.js";
import { freePort, get, settingsYaml } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";
import { eventually } from "../support/mesh.js";
import { startFakeDns } from "../support/dns-server.js";
import { createServer } from "node:http";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { buildFilters } from "../support/proxy-wasm-filters.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function reviewsEntry(endpoints: { port: number; version: string }[]): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
${endpoints.map((e) => `  - {address: 127.0.0.1, ports: {http: ${e.port}}, labels: {app: reviews, version: ${e.version}}}`).join("\n")}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`;
}

function reviewsRoute(subset: string): string {
  return `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: ${subset}}}]
`;
}

async function controlPlane(dir: string, port = 0): Promise<ControlPlane> {
  const logs: string[] = [];
  return startControlPlane({ config: dir, kubeDir: undefined, xdsAddress: "127.0.0.1", xdsPort: port, monitoringAddress: "127.0.0.1", monitoringPort: 0, debounce: { quietMs: 10, maxMs: 50 }, log: new Logger("info", (l) => logs.push(l)) });
}

async function sidecar(xdsPort: number, logs: string[] = [], extraSettings = ""): Promise<RunningProxy> {
  const node = nodeIdentity({ podName: "productpage-1", namespace: "default", ip: "127.0.0.1", labels: { app: "productpage", version: "v1" } }, {});
  const settings = requireConfig(loadConfigText("settings.yaml", settingsYaml("h1", extraSettings))).settings;
  const proxy = await startProxy({ config: xdsStartingConfig(settings, node), xds: { address: `127.0.0.1:${xdsPort}`, node, backoff: { baseMs: 50, maxMs: 200 } }, log: (l) => logs.push(l) });
  cleanups.push(() => proxy.close());
  return proxy;
}

async function ready(proxy: RunningProxy): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${proxy.admin.port}/ready`);
  await res.text();
  return res.status;
}

/** Requests in a loop until stopped: every status seen, and who answered. */
function traffic(proxyUrl: string): { stop(): Promise<{ statuses: Map<number, number>; answered: string[] }> } {
  const statuses = new Map<number, number>();
  const answered: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await get(proxyUrl, "reviews:9080", "/reviews/1").catch(() => ({ status: 0, json: () => ({ name: "error" }) }));
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 200) answered.push(r.json().name);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { statuses, answered };
    },
  };
}

describe("a sidecar configured by the control plane over xDS", () => {
  it("is not ready until its first complete config, then routes by it; a VirtualService edit, endpoint changes and a control-plane restart fail no request", { timeout: 60_000 }, async () => {
    const ups: Upstream[] = await Promise.all(["v1-a", "v2-a", "v1-b"].map((n) => startUpstream(n)));
    cleanups.push(() => Promise.all(ups.map((u) => u.close())).then(() => undefined));
    const [v1a, v2a, v1b] = ups as [Upstream, Upstream, Upstream];
    const dir = mkdtempSync(join(tmpdir(), "instio-xds-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "mesh.yaml");
    writeFileSync(file, reviewsEntry([{ port: v1a.port, version: "v1" }, { port: v2a.port, version: "v2" }]) + reviewsRoute("v1"));

    // The sidecar first, the control plane not up yet: not ready, and it keeps trying.
    const xdsPort = await freePort();
    const logs: string[] = [];
    const proxy = await sidecar(xdsPort, logs);
    expect(await ready(proxy)).toBe(503);
    let cp = await controlPlane(dir, xdsPort);
    cleanups.push(() => cp.close());
    await eventually(async () => (await ready(proxy)) === 200, 10_000, "the sidecar to become ready");
    const url = `http://127.0.0.1:${proxy.outbound.port}`;
    expect((await get(url, "reviews:9080", "/")).json().name).toBe("v1-a");
    expect((await get(url, "reviews:9080", "/", { "end-user": "jason" })).json().name).toBe("v2-a");
    expect((await get(url, "reviews.default.svc.cluster.local:9080", "/")).json().name).toBe("v1-a");
    expect(proxy.xds!.protocol).toBe("delta");
    // /config_dump in Envoy's shape: what the control plane sent, @typed, with versions.
    const dump: unknown = await (await fetch(`http://127.0.0.1:${proxy.admin.port}/config_dump?include_eds`)).json();
    const admin = "type.googleapis.com/envoy.admin.v3.";
    expect(dump).toMatchObject({
      configs: [
        { "@type": `${admin}BootstrapConfigDump`, bootstrap: { node: { id: "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local" }, dynamicResources: { adsConfig: { apiType: "DELTA_GRPC" } } } },
        { "@type": `${admin}ClustersConfigDump`, dynamicActiveClusters: expect.arrayContaining([{ versionInfo: expect.stringMatching(/\S/), lastUpdated: expect.any(String), cluster: expect.objectContaining({ "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", name: "outbound|9080|v1|reviews.default.svc.cluster.local", type: "EDS", lbPolicy: "ROUND_ROBIN", connectTimeout: "10s" }) }]) },
        { "@type": `${admin}ListenersConfigDump`, dynamicListeners: expect.arrayContaining([expect.objectContaining({ name: "0.0.0.0_9080" })]) },
        { "@type": `${admin}RoutesConfigDump`, dynamicRouteConfigs: [{ routeConfig: { name: "9080", virtualHosts: expect.arrayContaining([expect.objectContaining({ domains: expect.arrayContaining(["reviews"]) })]) } }] },
        { "@type": `${admin}EndpointsConfigDump` },
      ],
    });
    // The control plane's view of the same proxy (istiod's /debug/config_dump?proxyID=), in the same shape.
    const cpDump = (await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/debug/config_dump?proxyID=productpage-1.default&include_eds`)).json()) as { configs: { "@type": string; dynamicActiveClusters?: { cluster: { name: string } }[] }[] };
    expect(cpDump.configs.map((c) => c["@type"].split(".").at(-1))).toEqual(["ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump", "EndpointsConfigDump"]);
    expect(cpDump.configs[0]!.dynamicActiveClusters!.map((c) => c.cluster.name)).toContain("outbound|9080|v1|reviews.default.svc.cluster.local");
    const v2Endpoints = (dump as { configs: { dynamicEndpointConfigs?: { endpointConfig: { clusterName: string } }[] }[] }).configs[4]!.dynamicEndpointConfigs!.find((e) => e.endpointConfig.clusterName === "outbound|9080|v2|reviews.default.svc.cluster.local");
    expect(v2Endpoints).toMatchObject({ endpointConfig: { endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: "127.0.0.1", portValue: v2a.port } } }, healthStatus: "HEALTHY" }] }] } });

    // A VirtualService edit under traffic: everyone moves to v2, nothing fails.
    const load = traffic(url);
    writeFileSync(file, reviewsEntry([{ port: v1a.port, version: "v1" }, { port: v2a.port, version: "v2" }]) + reviewsRoute("v2"));
    await cp.reload();
    await eventually(async () => (await get(url, "reviews:9080", "/")).json().name === "v2-a", 5000, "the route change");

    // An endpoint added and one removed (v1-b in, v1-a out), back on v1: an EDS update in place.
    writeFileSync(file, reviewsEntry([{ port: v1b.port, version: "v1" }, { port: v2a.port, version: "v2" }]) + reviewsRoute("v2"));
    await cp.reload();
    await eventually(() => proxy.holder.current.config.clusters.some((c) => c.subset === "v1" && c.endpoints.some((e) => e.port === v1b.port)), 5000, "the endpoint change");
    expect(proxy.holder.current.update).toBe("endpoints");
    writeFileSync(file, reviewsEntry([{ port: v1b.port, version: "v1" }, { port: v2a.port, version: "v2" }]) + reviewsRoute("v1"));
    await cp.reload();
    await eventually(async () => (await get(url, "reviews:9080", "/")).json().name === "v1-b", 5000, "the route back to v1");

    // The control plane killed: the sidecar keeps serving; started again, it resynchronises.
    await cp.close();
    await eventually(() => !proxy.xds!.connected, 5000, "the sidecar to notice");
    for (let i = 0; i < 5; i++) expect((await get(url, "reviews:9080", "/")).json().name).toBe("v1-b");
    expect(await ready(proxy)).toBe(200);
    writeFileSync(file, reviewsEntry([{ port: v1b.port, version: "v1" }, { port: v2a.port, version: "v2" }]) + reviewsRoute("v2"));
    cp = await controlPlane(dir, xdsPort);
    await eventually(async () => (await get(url, "reviews:9080", "/")).json().name === "v2-a", 10_000, "the resynchronised route");
    const { statuses, answered } = await load.stop();
    expect([...statuses.keys()]).toEqual([200]);
    // The load saw the versions the routes moved through after it started (the first switch can beat its first request).
    expect(answered).toContain("v1-b");
    expect(answered).toContain("v2-a");

    // The metrics say what happened: connected now, one reconnect at least, nothing rejected.
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.admin.port}/stats/prometheus`)).text();
    expect(metrics).toMatch(/^envoy_control_plane_connected_state 1$/m);
    expect(metrics).toMatch(/^instio_xds_reconnects_total [1-9]/m);
    expect(metrics).not.toMatch(/instio_xds_updates_total\{type="[a-z]+",result="rejected"\}/);
    expect(logs.some((l) => /stream to .* ended .* serving the last config, reconnecting/.test(l))).toBe(true);
  });
});

describe("a DNS ServiceEntry over xDS", () => {
  it("runs the WasmPlugins the control plane sends in its listeners (istiod's Wasm filter), on the ports they match", { timeout: 60_000 }, async () => {
    const filters = await buildFilters(["headers"]);
    const up = await startUpstream("v1-a");
    cleanups.push(() => up.close());
    const dir = mkdtempSync(join(tmpdir(), "instio-xds-wasm-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const sha = createHash("sha256").update(readFileSync(filters.headers)).digest("hex");
    writeFileSync(join(dir, "mesh.yaml"), `${reviewsEntry([{ port: up.port, version: "v1" }])}${reviewsRoute("v1")}---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: add-header, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  url: file://${filters.headers}
  sha256: ${sha}
  pluginConfig: {value: from-the-control-plane}
  match: [{mode: CLIENT, ports: [{number: 9080}]}]
`);
    const cp = await controlPlane(dir);
    cleanups.push(() => cp.close());
    const logs: string[] = [];
    const proxy = await sidecar(cp.xdsPort, logs);
    await eventually(async () => (await ready(proxy)) === 200, 10_000, "the sidecar to become ready").catch((err: Error) => {
      throw new Error(`${err.message}\n${logs.join("\n")}`);
    });
    const r = await get(`http://127.0.0.1:${proxy.outbound.port}`, "reviews:9080", "/", { "x-remove-me": "1" });
    expect(r.status).toBe(200);
    expect(r.json().headers["x-wasm-added"]).toBe('{"value":"from-the-control-plane"}');
    expect(r.json().headers["x-remove-me"]).toBeUndefined();
    expect(r.headers["x-wasm-response"]).toBe("yes");
    // What went over the wire: istiod's Wasm filter, first in the port's HTTP connection manager.
    const dump = (await (await fetch(`http://127.0.0.1:${proxy.admin.port}/config_dump`)).json()) as { configs: { dynamicListeners?: { name: string; activeState: { listener: unknown } }[] }[] };
    const listener = JSON.stringify(dump.configs.flatMap((c) => c.dynamicListeners ?? []).find((l) => l.name === "0.0.0.0_9080"));
    expect(listener).toContain("extensions.istio.io/wasmplugin/default.add-header");
    expect(listener).toContain("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
  });

  it("reaches the sidecar as a STRICT_DNS cluster whose names the sidecar resolves, and follows a DNS change", { timeout: 30_000 }, async () => {
    // Two upstreams on one port at two loopback addresses: DNS decides which one the name means.
    const [a, b] = await Promise.all(["127.0.0.2", "127.0.0.3"].map(async (address) => {
      const server = createServer((req, res) => res.end(address));
      await new Promise<void>((r) => server.listen(0, address, r));
      cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
      return { address, port: (server.address() as { port: number }).port, server };
    }));
    await new Promise<void>((r) => b!.server.close(() => r()));
    await new Promise<void>((r) => b!.server.listen(a!.port, b!.address, r));
    const dns = await startFakeDns({ "db.internal": ["127.0.0.2"] });
    cleanups.push(() => dns.close());
    const dir = mkdtempSync(join(tmpdir(), "instio-xds-dns-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "mesh.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  ports: [{number: ${a!.port}, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: db.internal}]
`);
    const cp = await controlPlane(dir);
    cleanups.push(() => cp.close());
    const proxy = await sidecar(cp.xdsPort, [], `  dns: {servers: ["${dns.server}"], refreshRate: 100ms}`);
    await eventually(async () => (await ready(proxy)) === 200, 10_000, "ready");
    const url = `http://127.0.0.1:${proxy.outbound.port}`;
    const host = `db.example.com:${a!.port}`;
    await eventually(async () => (await get(url, host, "/")).text === "127.0.0.2", 5000, "the name resolved");
    expect(proxy.holder.current.config.clusters.find((c) => c.host === "db.example.com")!.dns).toMatchObject({ logical: false, targets: [{ address: "db.internal", port: a!.port }] });
    dns.records.set("db.internal", ["127.0.0.3"]);
    await eventually(async () => (await get(url, host, "/")).text === "127.0.0.3", 5000, "the DNS change");
    expect(proxy.holder.current.update).toBe("endpoints");
  });
});

/**
 * A control plane written for the test: it sends what it is told to, and records what the sidecar
 * answers. It serves one protocol; the other answers UNIMPLEMENTED, as a server without it does.
 */
async function scriptedControlPlane(protocol: "delta" | "sotw" = "delta"): Promise<{ port: number; requests: Record<string, unknown>[]; send(response: object): void; close(): void }> {
  const requests: Record<string, unknown>[] = [];
  let stream: grpc.ServerDuplexStream<object, object> | undefined;
  const waiting: object[] = [];
  const server = new grpc.Server();
  const serve = (call: grpc.ServerDuplexStream<object, object>): void => {
    stream = call;
    call.on("data", (r: Record<string, unknown>) => requests.push(r));
    call.on("error", () => {});
    for (const w of waiting.splice(0)) call.write(w);
  };
  const refuse = (call: grpc.ServerDuplexStream<object, object>): boolean => call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "not here" });
  server.addService(adsServiceDefinition(), { StreamAggregatedResources: protocol === "sotw" ? serve : refuse, DeltaAggregatedResources: protocol === "delta" ? serve : refuse });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port,
    requests,
    send: (response) => (stream ? stream.write(response) : waiting.push(response)),
    close: () => server.forceShutdown(),
  };
}

/** A STATIC cluster "static" to `port`, and an HTTP listener routing static.example there. */
function staticResources(port: number, clusterExtra: object = {}): { cluster: AnyMessage; listener: AnyMessage } {
  const cluster = packAny(CLUSTER_TYPE, {
    name: "static",
    type: "STATIC",
    connect_timeout: { seconds: 1 },
    load_assignment: { cluster_name: "static", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }] },
    ...clusterExtra,
  });
  const listener = packAny(LISTENER_TYPE, {
    name: "0.0.0.0_80",
    address: { socket_address: { address: "0.0.0.0", port_value: 80 } },
    bind_to_port: { value: false },
    filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: packAny(HCM_TYPE, {
      stat_prefix: "outbound_0.0.0.0_80",
      route_config: { name: "80", virtual_hosts: [{ name: "static", domains: ["static.example"], routes: [{ match: { prefix: "/" }, route: { cluster: "static", timeout: { seconds: 5 } } }] }] },
      http_filters: [{ name: "envoy.filters.http.router", typed_config: packAny("type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", {}) }],
    }) }] }],
  });
  return { cluster, listener };
}

describe("a control plane without delta xDS", () => {
  it("gets state of the world: versions and nonces ACKed per type, resources listed in full", { timeout: 20_000 }, async () => {
    const up = await startUpstream("sotw");
    cleanups.push(() => up.close());
    const cp = await scriptedControlPlane("sotw");
    cleanups.push(() => cp.close());
    const proxy = await sidecar(cp.port);
    await eventually(() => cp.requests.length >= 2, 5000, "the subscriptions");
    expect(cp.requests.map((r) => r.type_url).sort()).toEqual([CLUSTER_TYPE, LISTENER_TYPE].sort());
    const { cluster, listener } = staticResources(up.port);
    cp.send({ type_url: CLUSTER_TYPE, version_info: "v1", nonce: "c1", resources: [cluster] });
    cp.send({ type_url: LISTENER_TYPE, version_info: "v1", nonce: "l1", resources: [listener] });
    await eventually(async () => (await ready(proxy)) === 200, 5000, "ready");
    expect(proxy.xds!.protocol).toBe("sotw");
    expect(cp.requests.find((r) => r.response_nonce === "c1")).toMatchObject({ type_url: CLUSTER_TYPE, version_info: "v1" });
    expect((await get(`http://127.0.0.1:${proxy.outbound.port}`, "static.example", "/")).json().name).toBe("sotw");
    // A listener list without the listener: it is gone (SotW lists every one), and so is its route.
    cp.send({ type_url: LISTENER_TYPE, version_info: "v2", nonce: "l2", resources: [] });
    await eventually(async () => (await get(`http://127.0.0.1:${proxy.outbound.port}`, "static.example", "/")).status !== 200, 5000, "the listener to go");
    expect(cp.requests.find((r) => r.response_nonce === "l2")).toMatchObject({ version_info: "v2" });
  });
});

describe("a response the sidecar cannot serve", () => {
  it("is NACKed with the resource's name and the field's path; the previous config keeps serving", { timeout: 20_000 }, async () => {
    const up = await startUpstream("static");
    cleanups.push(() => up.close());
    const cp = await scriptedControlPlane();
    cleanups.push(() => cp.close());
    const logs: string[] = [];
    const proxy = await sidecar(cp.port, logs);
    const staticCluster = (extra: object = {}) => ({ name: "static", version: "1", resource: staticResources(up.port, extra).cluster });
    const httpListener = { name: "0.0.0.0_80", version: "1", resource: staticResources(up.port).listener };
    const nonces = { n: 0 };
    const respond = (type: string, resources: object[]): string => {
      const nonce = `n${++nonces.n}`;
      cp.send({ type_url: type, nonce, system_version_info: nonce, resources });
      return nonce;
    };
    const answerTo = async (nonce: string): Promise<Record<string, unknown>> => {
      let found: Record<string, unknown> | undefined;
      await eventually(() => (found = cp.requests.find((r) => r.response_nonce === nonce)) !== undefined, 5000, `the answer to ${nonce}`);
      return found!;
    };
    await eventually(() => cp.requests.length >= 2, 5000, "the subscriptions");
    expect(cp.requests[0]!.node).toMatchObject({ id: "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local" });

    // A load balancer instio does not run: NACKed, naming the cluster and the field.
    const bad = await answerTo(respond(CLUSTER_TYPE, [staticCluster({ lb_policy: "CLUSTER_PROVIDED" })]));
    expect(bad.error_detail).toMatchObject({ code: 3, message: "static: lb_policy: CLUSTER_PROVIDED is not supported" });
    expect(await ready(proxy)).toBe(503);

    // A good cluster and listener: ACKed (no error), ready, and serving.
    expect((await answerTo(respond(CLUSTER_TYPE, [staticCluster()]))).error_detail).toBeUndefined();
    expect((await answerTo(respond(LISTENER_TYPE, [httpListener]))).error_detail).toBeUndefined();
    await eventually(async () => (await ready(proxy)) === 200, 5000, "ready");
    const url = `http://127.0.0.1:${proxy.outbound.port}`;
    expect((await get(url, "static.example", "/")).json().name).toBe("static");

    // A field instio would have to drop silently: NACKed with its path; the previous cluster keeps serving.
    const unread = await answerTo(respond(CLUSTER_TYPE, [staticCluster({ lb_subset_config: { fallback_policy: "ANY_ENDPOINT" } })]));
    expect(unread.error_detail).toMatchObject({ message: "static: lb_subset_config: is not supported by instio" });
    expect((await get(url, "static.example", "/")).json().name).toBe("static");
    expect(logs.some((l) => l.includes("cds update rejected (NACK), still serving the previous config"))).toBe(true);
  });
});
