// Istio's metrics, Envoy's cluster stats, the access log and the admin and agent
// endpoints, after real traffic through the proxy.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Client, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENVOY_BUCKETS, ISTIO_LABELS } from "../../host/telemetry/metrics.js";
import { parseExposition } from "../support/prometheus.js";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { closedPort, startUpstream, type Upstream } from "../support/upstream.js";

async function fetchText(url: string, method: "GET" | "POST" = "GET"): Promise<{ status: number; text: string; type: string }> {
  const res = await request(url, { method });
  return { status: res.statusCode, text: await res.body.text(), type: String(res.headers["content-type"]) };
}

describe("telemetry and admin", () => {
  let v1: Upstream;
  let v2: Upstream;
  let app: Upstream;
  let p: TestProxy;
  let admin: string;
  let logFile: string;

  beforeAll(async () => {
    v1 = await startUpstream("v1");
    v2 = await startUpstream("v2");
    app = await startUpstream("app");
    const dead = await closedPort();
    const dir = (await import("node:fs")).mkdtempSync(join((await import("node:os")).tmpdir(), "instio-log-"));
    logFile = join(dir, "access.log");
    p = await startTestProxy(`${settingsYaml("uws", `  labels: {app: productpage, version: v1}
  workload: {name: productpage-v1, cluster: c1}
  accessLog: {path: ${logFile}, format: JSON}
  listeners:
    outbound: {address: 127.0.0.1, port: 0}
    inbound: {address: 127.0.0.1, port: 0, appPort: ${app.port}}`)
      .replace(/  listeners:\n    outbound: \{address: 127.0.0.1, port: 0, engine: uws\}\n/, "")
      .replace("healthPort: 0}", `healthPort: 0, appMetrics: {port: ${app.port}, path: /metrics}}`)}---
${serviceEntryYaml("reviews", [{ port: v1.port, labels: { app: "reviews", version: "v1" } }, { port: v2.port, labels: { app: "reviews", version: "v2" } }])}---
${serviceEntryYaml("dead", [{ port: dead }])}---
${serviceEntryYaml("productpage", [{ port: app.port, labels: { app: "productpage", version: "v1" } }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v9, labels: {version: v9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: nobody
    match: [{uri: {prefix: /nobody}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - name: default
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
`);
    admin = `http://127.0.0.1:${p.proxy.admin.port}`;
    for (let i = 0; i < 3; i++) expect((await get(p.url, "reviews", "/api/x", { "end-user": "jason", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", b3: "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1" })).status).toBe(200);
    expect((await get(p.url, "reviews", "/api/x")).status).toBe(200);
    expect((await get(p.url, "reviews", "/other")).status).toBe(404);
    expect((await get(p.url, "reviews", "/nobody")).status).toBe(503);
    expect((await get(p.url, "dead", "/")).status).toBe(503);
    expect((await get(`http://127.0.0.1:${p.proxy.inbound!.port}`, "productpage:9080", "/in")).status).toBe(200);
  });
  afterAll(async () => {
    await p.close();
    await Promise.all([v1.close(), v2.close(), app.close()]);
  });

  it("exposes Istio's standard metrics with Istio's labels and Envoy's buckets", async () => {
    const res = await fetchText(`${admin}/stats/prometheus`);
    expect(res.type).toContain("text/plain");
    const m = parseExposition(res.text);
    expect(m.types.get("istio_requests_total")).toBe("counter");
    for (const h of ["istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"]) expect(m.types.get(h)).toBe("histogram");
    const ok = m.find("istio_requests_total", { reporter: "source", response_code: "200", destination_version: "v2" });
    expect(ok).toHaveLength(1);
    expect(ok[0]!.value).toBe(3);
    expect(Object.keys(ok[0]!.labels).sort()).toEqual([...ISTIO_LABELS].sort());
    expect(ok[0]!.labels).toMatchObject({
      source_workload: "productpage-v1", source_workload_namespace: "default", source_app: "productpage", source_version: "v1",
      source_canonical_service: "productpage", source_canonical_revision: "v1", source_cluster: "c1", source_principal: "unknown",
      destination_service: "reviews.default.svc.cluster.local", destination_service_name: "reviews", destination_service_namespace: "default",
      destination_app: "reviews", destination_canonical_service: "reviews", request_protocol: "http", response_flags: "-", grpc_response_status: "",
      connection_security_policy: "unknown",
    });
    expect(m.sum("istio_requests_total", { reporter: "source", destination_version: "v1", response_code: "200" })).toBe(1);
    expect(m.sum("istio_requests_total", { response_code: "404", response_flags: "NR", destination_service: "reviews.default.svc.cluster.local" })).toBe(1);
    expect(m.sum("istio_requests_total", { response_code: "503", response_flags: "UH" })).toBe(1);
    // Istio's default policy retried the connection failure twice: Envoy (>= 1.30) sets URX, then UF.
    expect(m.sum("istio_requests_total", { response_code: "503", response_flags: "URX,UF", destination_service_name: "dead" })).toBe(1);
    expect(m.sum("istio_requests_total", { reporter: "destination", destination_workload: "productpage-v1", response_code: "200" })).toBe(1);
    // The inbound service is the one whose endpoint carries this proxy's labels.
    expect(m.sum("istio_requests_total", { reporter: "destination", destination_service: "productpage.default.svc.cluster.local", destination_service_name: "productpage" })).toBe(1);
    const buckets = m.find("istio_request_duration_milliseconds_bucket", { destination_version: "v2", response_code: "200" }).map((s) => s.labels.le);
    expect(buckets).toEqual([...ENVOY_BUCKETS.map(String), "+Inf"]);
    expect(m.sum("istio_request_duration_milliseconds_count", { destination_version: "v2" })).toBe(3);
    expect(m.sum("istio_response_bytes_sum", { destination_version: "v2" })).toBeGreaterThan(3 * 200);
    expect(m.sum("istio_request_bytes_sum", { destination_version: "v2" })).toBeGreaterThan(3 * 100);
  });

  it("exposes Envoy cluster stats and the config version", async () => {
    const m = parseExposition((await fetchText(`${admin}/stats/prometheus`)).text);
    expect(m.sum("envoy_cluster_upstream_rq_total", { cluster_name: "outbound|80|v2|reviews.default.svc.cluster.local" })).toBe(3);
    expect(m.sum("envoy_cluster_upstream_cx_connect_fail", { cluster_name: "outbound|80||dead.default.svc.cluster.local" })).toBe(3);
    expect(m.sum("envoy_cluster_upstream_rq_retry", { cluster_name: "outbound|80||dead.default.svc.cluster.local" })).toBe(2);
    expect(m.sum("envoy_cluster_membership_healthy", { cluster_name: "outbound|80|v1|reviews.default.svc.cluster.local" })).toBe(1);
    expect(m.sum("envoy_cluster_membership_total", { cluster_name: "outbound|80|v9|reviews.default.svc.cluster.local" })).toBe(0);
    expect(m.sum("instio_config_version")).toBe(1);
  });

  it("serves the metrics on 15090, merged with the application's on 15020, and readiness on 15021", async () => {
    const [status, prom, health] = p.proxy.agentPorts;
    for (const l of [status!, prom!]) {
      const m = parseExposition((await fetchText(`http://127.0.0.1:${l.port}/stats/prometheus`)).text);
      expect(m.sum("istio_requests_total", { destination_version: "v2" })).toBe(3);
      expect(m.sum("app_custom_total")).toBe(l === status ? 7 : 0);
    }
    expect((await fetchText(`http://127.0.0.1:${health!.port}/healthz/ready`)).status).toBe(200);
    expect((await fetchText(`http://127.0.0.1:${status!.port}/healthz/ready`)).status).toBe(200);
  });

  it("propagates tracing headers and writes Istio's JSON access log", async () => {
    const seen = v2.received.at(-1)!.headers;
    expect(seen.traceparent).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    expect(seen.b3).toBe("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
    const lines = readFileSync(logFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(8);
    expect(lines[0]).toMatchObject({
      method: "GET", path: "/api/x", protocol: "HTTP/1.1", response_code: 200, response_flags: "-", authority: "reviews",
      upstream_cluster: "outbound|80|v2|reviews.default.svc.cluster.local", upstream_host: `127.0.0.1:${v2.port}`, route_name: "jason",
      request_id: v2.received[0]!.headers["x-request-id"], bytes_received: 0,
    });
    const noRoute = lines.find((l) => l.response_flags === "NR")!;
    expect(noRoute).toMatchObject({ response_code: 404, response_code_details: "route_not_found" });
    expect(noRoute.request_id).toMatch(/^[0-9a-f-]{36}$/); // generated before routing, as Envoy's HCM does
    expect(noRoute.upstream_cluster).toBeNull();
    expect(lines.find((l) => l.response_flags === "URX,UF")).toMatchObject({ response_code: 503, upstream_transport_failure_reason: "delayed connect error: 111" });
    expect(Object.keys(lines[0]!).sort()).toEqual([
      "authority", "bytes_received", "bytes_sent", "connection_termination_details", "downstream_local_address", "downstream_remote_address", "duration",
      "method", "path", "protocol", "request_id", "requested_server_name", "response_code", "response_code_details", "response_flags", "route_name",
      "start_time", "upstream_cluster", "upstream_host", "upstream_local_address", "upstream_service_time", "upstream_transport_failure_reason",
      "user_agent", "x_forwarded_for",
    ]);
  });

  it("answers the admin endpoints; mutations refuse GET", async () => {
    const index = await fetchText(`${admin}/`);
    for (const path of ["/ready", "/stats", "/stats/prometheus", "/config_dump", "/clusters", "/server_info", "/quitquitquit", "/healthcheck/fail", "/healthcheck/ok", "/drain_listeners", "/logging"]) expect(index.text).toContain(path);
    expect(await fetchText(`${admin}/ready`)).toMatchObject({ status: 200, text: "LIVE\n" });
    const info = JSON.parse((await fetchText(`${admin}/server_info`)).text);
    expect(info).toMatchObject({ state: "LIVE", node: { id: "sidecar~productpage-v1.default", cluster: "c1" } });
    const clusters = (await fetchText(`${admin}/clusters`)).text;
    expect(clusters).toContain(`outbound|80|v2|reviews.default.svc.cluster.local::127.0.0.1:${v2.port}::rq_total::3`);
    expect(clusters).toContain(`outbound|80|v2|reviews.default.svc.cluster.local::127.0.0.1:${v2.port}::health_flags::healthy`);
    const json = JSON.parse((await fetchText(`${admin}/clusters?format=json`)).text);
    expect(json.cluster_statuses.length).toBeGreaterThan(0);
    const stats = (await fetchText(`${admin}/stats?filter=upstream_rq_total`)).text;
    expect(stats).toContain("cluster.outbound|80|v2|reviews.default.svc.cluster.local.upstream_rq_total: 3");
    expect(stats).not.toContain("istio_requests_total");
    expect(JSON.parse((await fetchText(`${admin}/config_dump?format=instio`)).text).version).toBe(1);
    // Envoy's shape by default: the bootstrap, then clusters, listeners and routes, each @typed.
    const dump = JSON.parse((await fetchText(`${admin}/config_dump`)).text) as { configs: { "@type": string }[] };
    expect(dump.configs.map((c) => c["@type"].split(".").at(-1))).toEqual(["BootstrapConfigDump", "ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump"]);
    for (const path of ["/quitquitquit", "/healthcheck/fail", "/drain_listeners", "/logging"]) expect((await fetchText(`${admin}${path}`)).status).toBe(400);
    expect((await fetchText(`${admin}/logging?level=debug`, "POST")).text).toContain("instio: debug");
    expect((await fetchText(`${admin}/logging?level=loud`, "POST")).status).toBe(400);
    expect((await fetchText(`${admin}/nope`)).status).toBe(404);
  });

  it("fails readiness on /healthcheck/fail and restores it on /healthcheck/ok", async () => {
    const health = `http://127.0.0.1:${p.proxy.agentPorts[2]!.port}/healthz/ready`;
    expect((await fetchText(`${admin}/healthcheck/fail`, "POST")).status).toBe(200);
    expect(await fetchText(`${admin}/ready`)).toMatchObject({ status: 503, text: "DRAINING\n" });
    expect((await fetchText(health)).status).toBe(503);
    expect((await get(p.url, "reviews", "/api/x")).status).toBe(200); // traffic still flows
    await fetchText(`${admin}/healthcheck/ok`, "POST");
    expect((await fetchText(`${admin}/ready`)).status).toBe(200);
    expect((await fetchText(health)).status).toBe(200);
  });

  it("drains only the inbound listener on /drain_listeners?inboundonly (without graceful: stops accepting)", async () => {
    expect((await fetchText(`${admin}/drain_listeners?inboundonly`, "POST")).status).toBe(200);
    const fresh = new Client(`http://127.0.0.1:${p.proxy.inbound!.port}`);
    await expect(fresh.request({ path: "/in", method: "GET", headers: { host: "productpage" } })).rejects.toThrow(/ECONNREFUSED/);
    await fresh.close();
    expect((await get(p.url, "reviews", "/api/x")).status).toBe(200);
  });
});
