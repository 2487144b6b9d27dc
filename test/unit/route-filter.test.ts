// The route core as a Proxy-Wasm filter for Envoy (build/route-filter.wasm),
// run under instio's own Proxy-Wasm host through the ABI's call sequence
// (context create, vm start, configure with `instio compile-table`'s output,
// a stream, on_request_headers, done/log/delete), decides as the sidecar's
// core does: same route, a destination of that route, an endpoint of that
// destination's cluster. No Envoy binary can run here; this is the nearest
// real thing: the filter's module, its configuration and the ABI.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfigPath, loadConfigText, requireConfig } from "../../host/config/load.js";
import { fileURLToPath } from "node:url";
import type { CompiledConfig } from "../../host/config/compile.js";
import { writeRequest } from "../../host/core/request-fields.js";
import { RouteCore } from "../../host/core/route-core.js";
import type { RouteRequest } from "../../host/core/decision.js";
import { PluginVm } from "../../host/proxy-wasm/vm.js";
import { TestStream, testEnvironment } from "../support/proxy-wasm-host.js";
import { generatedRequests } from "../../host/route-bench.js";
import { compileFilterTable, filterModulePath } from "../../host/route-filter/filter-table.js";
import { envoyBootstrap } from "../../host/route-filter/envoy-config.js";
import { messageFromJson } from "../../host/envoy/from-json.js";
import { messageType } from "../../host/envoy/protos.js";
import { parse } from "yaml";

const filterModule = new WebAssembly.Module(readFileSync(filterModulePath()));

const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop.example]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}, {address: 10.0.0.2, labels: {version: v2}}, {address: 10.0.0.3, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart}
spec:
  hosts: [cart.example, "*.carts.example"]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.1}, {address: 10.0.1.2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop.example
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart}
spec:
  host: cart.example
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: shop.example, subset: v2}}]
  - match: [{uri: {regex: "/items/[0-9]+"}, method: {exact: GET}}]
    route: [{destination: {host: shop.example, subset: v1}}]
  - match: [{queryParams: {beta: {exact: "1"}}}]
    route: [{destination: {host: shop.example, subset: v2}}]
  - match: [{uri: {prefix: /canary}}]
    route: [{destination: {host: shop.example, subset: v1}, weight: 30}, {destination: {host: shop.example, subset: v2}, weight: 70}]
  - route: [{destination: {host: shop.example, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart.example]
  http:
  - match: [{uri: {exact: /checkout}, scheme: {exact: https}}]
    route: [{destination: {host: cart.example}}]
  - route: [{destination: {host: cart.example}}]
`;

/** A request's header map as Envoy gives it to the filter: pseudo-headers, then the headers the table reads. */
function headerMap(config: CompiledConfig, req: RouteRequest): string[] {
  const map = [":authority", req.authority ?? "", ":path", req.query === undefined ? req.path : `${req.path}?${req.query}`, ":method", req.method, ":scheme", req.scheme];
  for (const name of config.table.headerNames) {
    const value = req.header(name);
    if (value !== undefined) map.push(name, value);
  }
  return map;
}

/** A request to the filter; the client's address is what a hash on source IP reads. */
function filterStream(request: string[]): TestStream {
  return new TestStream(request, { properties: { "source.address": "10.9.8.7:51234" } });
}

function startFilter(configuration: Buffer, logs: string[] = []): PluginVm {
  const env = testEnvironment({ name: "route-filter", rootId: "", pluginConfiguration: configuration, timeBudgetMs: 1000, memoryLimitBytes: 1 << 30, log: (level, message) => logs.push(`${level}:${message}`) });
  return new PluginVm(filterModule, env);
}

describe("the route core as an Envoy filter", () => {
  const config = requireConfig(loadConfigText("routes.yaml", CONFIG));
  const table = compileFilterTable(config, filterModule);
  const vm = startFilter(table.bytes);
  const sidecar = new RouteCore(config.table);
  const clusterIndex = new Map(config.clusters.map((c, i) => [c.name, i]));

  it("starts through the ABI's sequence and takes the table as its plugin configuration", () => {
    expect(vm.abi).toBe("0_2_1");
    expect(vm.start()).toBe(true);
  });

  /** Runs one request through the filter; the headers it set and the filter state it wrote. */
  function decide(req: RouteRequest): TestStream {
    const stream = filterStream(headerMap(config, req));
    const id = vm.createStream(stream);
    expect(vm.callback("proxy_on_request_headers", id, stream.request.length / 2, 1)).toBe(0); // Continue: Envoy routes
    vm.finishStream(id);
    expect(vm.failure).toBeUndefined();
    expect(stream.replies).toEqual([]); // the route filter never answers itself
    return stream;
  }

  it("decides every generated request as the sidecar's core: the same route, one of its destinations, an endpoint of that cluster", () => {
    const cases = generatedRequests(config);
    expect(cases.length).toBeGreaterThan(8);
    let annotated = 0;
    for (const { label, req } of cases) {
      expect(writeRequest(sidecar, config.table.headerNames, req)).toBe(true);
      const code = sidecar.route(1);
      const stream = decide(req);
      const cluster = stream.get("x-instio-cluster");
      if (code < 0) {
        expect(cluster, label).toBeUndefined();
        continue;
      }
      annotated++;
      const allowed = config.table.routes[code]!.destinations.map((d) => config.clusters[d.cluster]?.name);
      expect(allowed, label).toContain(cluster);
      const c = clusterIndex.get(cluster!)!;
      const endpoints = config.clusters[c]!.endpoints.map((e) => `${e.address}:${e.port}`);
      expect(endpoints, label).toContain(stream.get("x-instio-endpoint"));
      expect(stream.properties.get("instio_endpoint")).toBe(stream.get("x-instio-endpoint"));
    }
    expect(annotated).toBeGreaterThan(5);
  });

  it("splits a weighted route as configured, and hashes one user to one endpoint", () => {
    const req = (path: string, headers: Record<string, string> = {}, authority = "shop.example"): RouteRequest => ({ method: "GET", authority, path, query: undefined, scheme: "http", header: (n) => headers[n] });
    let v2 = 0;
    for (let i = 0; i < 2000; i++) if (decide(req("/canary")).get("x-instio-cluster") === "outbound|80|v2|shop.example") v2++;
    expect(v2 / 2000).toBeGreaterThan(0.65); // 70% ± 5 points: about 5 standard deviations of 2 000 draws
    expect(v2 / 2000).toBeLessThan(0.75);
    const picks = new Set<string | undefined>();
    for (let i = 0; i < 50; i++) picks.add(decide(req("/any", { "x-user": "ann" }, "cart.example")).get("x-instio-endpoint"));
    expect(picks.size).toBe(1);
    expect(decide(req("/", {}, "unknown.example")).get("x-instio-cluster")).toBeUndefined();
    // A client cannot pick the cluster by sending the header itself.
    const stream = filterStream([":authority", "unknown.example", ":path", "/", ":method", "GET", ":scheme", "http", "x-instio-cluster", "outbound|80|v2|shop.example", "x-instio-endpoint", "10.0.0.2:80"]);
    const id = vm.createStream(stream);
    vm.callback("proxy_on_request_headers", id, 6, 1);
    vm.finishStream(id);
    expect(stream.get("x-instio-cluster")).toBeUndefined();
    expect(stream.get("x-instio-endpoint")).toBeUndefined();
    expect(stream.replies).toEqual([]);
  });

  it("refuses a configuration that is not a table for this build, with a log line, as Envoy rejects a plugin", () => {
    const logs: string[] = [];
    const other = startFilter(Buffer.from("not a table"), logs);
    expect(other.start()).toBe(false);
    expect(other.failure).toMatch(/rejected its configuration/);
    expect(logs.join()).toContain("not a table from 'instio compile-table'");
    const truncated = startFilter(table.bytes.subarray(0, table.bytes.length - 1));
    expect(truncated.start()).toBe(false);
  });

  it("writes an Envoy bootstrap that routes on the filter's header, checked against Envoy's protos", () => {
    const yaml = parse(envoyBootstrap(config, table, "/opt/instio/route-filter.wasm")) as { static_resources: { listeners: { filter_chains: { filters: { typed_config: Record<string, unknown> }[] }[] }[]; clusters: unknown[] } };
    const hcm = yaml.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config as { http_filters: { typed_config: { config?: { configuration: { value: string }; vm_config: { code: { local: { filename: string } } } } } }[] };
    const wasm = hcm.http_filters[0]!.typed_config.config!;
    expect(Buffer.from(wasm.configuration.value, "base64").equals(table.bytes)).toBe(true);
    expect(wasm.vm_config.code.local.filename).toBe("/opt/instio/route-filter.wasm");
    // Every field, the Wasm filter's and the router's typed configs included, is one Envoy's protos have.
    expect(() => messageFromJson(messageType("envoy.config.bootstrap.v3.Bootstrap"), yaml, [])).not.toThrow();
    expect(yaml.static_resources.clusters.length).toBe(config.clusters.length);
  });

  it("keeps examples/envoy-route-filter/envoy.yaml equal to what this build writes for the quickstart", () => {
    const quickstart = requireConfig(loadConfigPath(fileURLToPath(new URL("../../examples/quickstart", import.meta.url))));
    const written = envoyBootstrap(quickstart, compileFilterTable(quickstart, filterModule), "/etc/envoy/route-filter.wasm");
    const example = readFileSync(new URL("../../examples/envoy-route-filter/envoy.yaml", import.meta.url), "utf8");
    expect(written, "regenerate it: instio compile-table examples/quickstart --envoy --filter-path /etc/envoy/route-filter.wasm -o examples/envoy-route-filter/envoy.yaml").toBe(example);
  });
});
