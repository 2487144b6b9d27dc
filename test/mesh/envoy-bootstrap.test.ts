// `instio proxy --bootstrap envoy.yaml`, run as a user runs it (the built CLI in
// a child process): an Envoy bootstrap with static resources serves with no
// control plane; one with dynamic_resources takes everything from an ADS server
// (`instio control-plane`); what instio cannot serve, or a field Envoy's protos
// do not have, is an error at the file's line, and the proxy does not start.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { TLSSocket } from "node:tls";
import { makeCa } from "../support/certs.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startControlPlane } from "../../host/control-plane/control-plane.js";
import { Logger } from "../../host/log.js";
import { CLI, startChildProxy } from "../support/child-proxy.js";
import { eventually } from "../support/mesh.js";
import { freePort, get, settingsYaml } from "../support/proxy.js";
import { startUpstream } from "../support/upstream.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "instio-bootstrap-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "settings.yaml"), settingsYaml("h1"));
  return dir;
}

/** Envoy's own front-proxy example, shaped: a listener with an inline route table to two STATIC clusters. */
function staticBootstrap(listenPort: number, webPort: number, apiPort: number, lbPolicy = "ROUND_ROBIN"): string {
  return `# as envoy -c reads it
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: ${listenPort}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: api
              domains: ["api.example.com"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: api, timeout: 5s}
            - name: web
              domains: ["*"]
              routes:
              - match: {prefix: "/static/"}
                route: {cluster: web, prefix_rewrite: "/assets/"}
                response_headers_to_add: [{header: {key: x-served-by, value: instio}}]
              - match: {prefix: "/"}
                direct_response: {status: 404, body: {inline_string: "nothing here"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: web
    type: STATIC
    lb_policy: ${lbPolicy}
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${webPort}}}}}]}]
  - name: api
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    circuit_breakers: {thresholds: [{max_connections: 10}]}
    load_assignment:
      cluster_name: api
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${apiPort}}}}}]}]
`;
}

describe("an Envoy bootstrap", () => {
  it("with static resources serves with no control plane: its listener, routes and clusters", { timeout: 30_000 }, async () => {
    const web = await startUpstream("web");
    const api = await startUpstream("api");
    cleanups.push(() => web.close(), () => api.close());
    const dir = tempDir();
    const listenPort = await freePort();
    writeFileSync(join(dir, "envoy.yaml"), staticBootstrap(listenPort, web.port, api.port));
    const proxy = await startChildProxy(join(dir, "settings.yaml"), ["--bootstrap", join(dir, "envoy.yaml")]);
    cleanups.push(() => proxy.stop());
    const url = `http://127.0.0.1:${listenPort}`;
    await eventually(async () => (await get(url, "api.example.com", "/").catch(() => ({ status: 0 }))).status === 200, 10_000, "the bootstrap's listener");
    expect((await get(url, "api.example.com", "/v1/x")).json()).toMatchObject({ name: "api", url: "/v1/x" });
    const asset = await get(url, "www.example.com", "/static/app.js");
    expect(asset.json()).toMatchObject({ name: "web", url: "/assets/app.js" });
    expect(asset.headers["x-served-by"]).toBe("instio");
    // Whatever port the authority names: this listener's routes are its own.
    expect((await get(url, "www.example.com:8080", "/static/a")).json().name).toBe("web");
    const miss = await get(url, "www.example.com", "/other");
    expect([miss.status, miss.text]).toEqual([404, "nothing here"]);
    // /config_dump shows the bootstrap's resources, as Envoy's static ones.
    const dump = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/config_dump`)).json()) as { configs: { staticListeners?: { listener: { name: string } }[]; staticClusters?: { cluster: { name: string } }[] }[] };
    expect(dump.configs[2]!.staticListeners!.map((l) => l.listener.name)).toEqual(["ingress"]);
    expect(dump.configs[1]!.staticClusters!.map((c) => c.cluster.name)).toEqual(["api", "web"]);
  });

  it("originates TLS to a cluster as its transport socket says: a CA file, SNI, SANs and a client certificate", { timeout: 30_000 }, async () => {
    const ca = makeCa();
    ca.issue("upstream", ["api.internal"]);
    ca.issue("client", ["instio-client"]);
    const upstream = createHttpsServer({ key: readFileSync(ca.path("upstream.key")), cert: readFileSync(ca.path("upstream.pem")), ca: readFileSync(ca.path("ca.pem")), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(JSON.stringify({ client: peer.subject?.CN, servername: (req.socket as TLSSocket & { servername?: string }).servername }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => upstream.close(() => r())));
    const dir = tempDir();
    const listenPort = await freePort();
    const tls = `
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: api.internal
        common_tls_context:
          tls_certificates: [{certificate_chain: {filename: ${ca.path("client.pem")}}, private_key: {filename: ${ca.path("client.key")}}}]
          validation_context:
            trusted_ca: {filename: ${ca.path("ca.pem")}}
            match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: api.internal}}]`;
    const text = staticBootstrap(listenPort, 1, (upstream.address() as { port: number }).port).replace("    lb_policy: ROUND_ROBIN\n    circuit_breakers", `    lb_policy: ROUND_ROBIN${tls}\n    circuit_breakers`);
    writeFileSync(join(dir, "envoy.yaml"), text);
    const proxy = await startChildProxy(join(dir, "settings.yaml"), ["--bootstrap", join(dir, "envoy.yaml")]);
    cleanups.push(() => proxy.stop());
    const url = `http://127.0.0.1:${listenPort}`;
    await eventually(async () => (await get(url, "api.example.com", "/").catch(() => ({ status: 0 }))).status === 200, 10_000, `the TLS upstream through the bootstrap's listener\n${proxy.stderr()}`);
    expect(JSON.parse((await get(url, "api.example.com", "/")).text)).toEqual({ client: "instio-client", servername: "api.internal" });
  });

  it("that instio cannot serve, or that Envoy's protos reject, is an error at its line and the proxy does not start", async () => {
    const dir = tempDir();
    const file = join(dir, "envoy.yaml");
    const run = (): { status: number | null; stderr: string } => {
      const r = spawnSync(process.execPath, [CLI, "proxy", "--config", join(dir, "settings.yaml"), "--bootstrap", file], { encoding: "utf8", timeout: 20_000 });
      return { status: r.status, stderr: r.stderr };
    };
    const text = staticBootstrap(1, 2, 3, "CLUSTER_PROVIDED");
    writeFileSync(file, text);
    let r = run();
    expect(r.status).toBe(1);
    // At the web cluster's "lb_policy:" line, column of its value.
    const line = text.split("\n").findIndex((l) => l.includes("lb_policy: CLUSTER_PROVIDED")) + 1;
    expect(r.stderr).toContain(`${file}:${line}:16: error: static_resources.clusters.0.lb_policy: CLUSTER_PROVIDED is not supported`);
    writeFileSync(file, staticBootstrap(1, 2, 3).replace("stat_prefix: ingress_http", "stat_prefix: ingress_http\n          not_a_field: 1"));
    r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/envoy\.yaml:\d+:\d+: error: .*HttpConnectionManager has no field not_a_field/);
    writeFileSync(file, `${staticBootstrap(1, 2, 3)}tracing: {}\n`);
    r = run();
    expect(r.stderr).toMatch(/envoy\.yaml:\d+:\d+: error: tracing: is not supported by instio/);
  });

  it("with dynamic_resources takes its config from the ADS server its static cluster names", { timeout: 30_000 }, async () => {
    const reviews = await startUpstream("reviews-v1");
    cleanups.push(() => reviews.close());
    const dir = tempDir();
    writeFileSync(join(dir, "mesh.yaml"), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${reviews.port}}}]
`);
    const cp = await startControlPlane({ config: join(dir, "mesh.yaml"), kubeDir: undefined, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, log: new Logger("info", () => {}) });
    cleanups.push(() => cp.close());
    writeFileSync(join(dir, "envoy.yaml"), `node:
  id: sidecar~127.0.0.1~boot-1.default~default.svc.cluster.local
  cluster: boot.default
  metadata: {NAMESPACE: default, LABELS: {app: boot}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${cp.xdsPort}}}}}]}]
`);
    const proxy = await startChildProxy(join(dir, "settings.yaml"), ["--bootstrap", join(dir, "envoy.yaml")]);
    cleanups.push(() => proxy.stop());
    await eventually(async () => (await fetch(`http://127.0.0.1:${proxy.adminPort}/ready`)).status === 200, 10_000, "ready");
    expect((await get(`http://127.0.0.1:${proxy.outboundPort}`, "reviews:9080", "/r")).json().name).toBe("reviews-v1");
    // api_type GRPC: state of the world, as the bootstrap asked; the node is the bootstrap's.
    const conn = [...cp.ads.connections][0]!;
    expect(conn.describe()).toMatchObject({ proxy: "boot-1.default", protocol: "sotw" });
  });
});
