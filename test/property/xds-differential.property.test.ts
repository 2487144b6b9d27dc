// The two config paths agree. Each config is compiled once from files, as
// `instio proxy --config` serves it, and once as it reaches a sidecar through
// `instio control-plane` → ADS → `instio proxy --xds` (every piece real, over
// loopback). On a generated corpus of requests reaching every route, both must
// make the same decision (virtual host, route, cluster, endpoint) and act on it
// the same way (the route's timeout, retries, rewrites, header edits, faults,
// CORS, mirrors; the cluster's policy and endpoints).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { compile, resolveDnsEndpoints, type CompiledConfig } from "../../host/config/compile.js";
import { startControlPlane } from "../../host/control-plane/control-plane.js";
import { Logger } from "../../host/log.js";
import { startProxy } from "../../host/proxy/server.js";
import { nodeIdentity } from "../../host/xds/node-identity.js";
import { xdsStartingConfig } from "../../host/xds/starting-config.js";
import { startFakeDns } from "../support/dns-server.js";
import { eventually } from "../support/mesh.js";
import type { HeaderOperations, HeadersModel } from "../../host/config/model.js";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import type { Decision, RouteRequest } from "../../host/core/decision.js";
import { emptyDecision } from "../../host/core/decision.js";
import { ReferenceMatcher } from "../../host/core/reference-matcher.js";
import { clusterEndpointStarts, type RouteTable } from "../../host/core/route-table.js";
import { endpointWeights, hashName } from "../../host/core/hash-tables.js";
import "../support/fast-check-seed.js";

const SE = (name: string, ports: string, endpoints: string, extra = ""): string => `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [${ports}]
  resolution: STATIC
  endpoints: [${endpoints}]
${extra}`;

const RICH = `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: differential}
spec:
  namespace: default
  labels: {app: productpage, version: v1}
  healthChecks: [{host: ratings.default.svc.cluster.local, path: /healthz, interval: 5s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 2}]
${SE("reviews", "{number: 9080, name: http, protocol: HTTP}", "{address: 10.0.0.1, labels: {app: reviews, version: v1}, weight: 4}, {address: 10.0.0.2, labels: {app: reviews, version: v2}}, {address: 10.0.0.3, labels: {app: reviews, version: v3}}")}
${SE("ratings", "{number: 9080, name: http, protocol: HTTP}", "{address: 10.0.1.1, labels: {app: ratings, version: v1}, weight: 3}, {address: 10.0.1.2, labels: {app: ratings, version: v1}}")}
${SE("httpbin", "{number: 80, name: http, protocol: HTTP}, {number: 8000, name: http-alt, protocol: HTTP}", "{address: 10.0.2.1, labels: {app: httpbin}}, {address: 10.0.2.2, ports: {http-alt: 18000}, labels: {app: httpbin}}")}
${SE("grpc", "{number: 7070, name: grpc, protocol: GRPC}", "{address: 10.0.3.1, labels: {app: grpc}}")}
${SE("hashed", "{number: 80, name: http, protocol: HTTP}", "{address: 10.0.4.1, weight: 2}, {address: 10.0.4.2}, {address: 10.0.4.3, weight: 5}, {address: 10.0.4.4}")}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.10}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-strict, namespace: default}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 5000, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: db-a.internal, labels: {zone: a}}, {address: db-b.internal, labels: {zone: b}}, {address: 10.9.9.9}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-logical, namespace: default}
spec:
  hosts: [cdn.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 2s}, http: {http1MaxPendingRequests: 5, http2MaxRequests: 50, maxRetries: 4, idleTimeout: 30s, maxRequestsPerConnection: 100}}
    outlierDetection: {consecutive5xxErrors: 3, interval: 2s, baseEjectionTime: 45s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hashed, namespace: default}
spec:
  host: hashed
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, minimumRingSize: 64}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}, maglev: {tableSize: 251}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: external, namespace: default}
spec:
  host: api.example.com
  trafficPolicy: {tls: {mode: SIMPLE, sni: api.example.com}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}, headers: {request: {set: {x-canary: "yes"}}}}]
    headers: {response: {add: {x-served-by: reviews}, remove: [server]}}
  - name: not-mobile
    match: [{uri: {prefix: /api}, withoutHeaders: {user-agent: {prefix: mobile}}}]
    rewrite: {uri: /v2/api}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,gateway-error,503"}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: regex
    match: [{uri: {regex: "/items/[0-9]+"}, method: {exact: GET}}, {queryParams: {id: {regex: "[0-9]+"}}}]
    rewrite: {uriRegexRewrite: {match: "^/items/([0-9]+)$", rewrite: "/item?id=\\\\1"}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: faulty
    match: [{uri: {exact: /fault}}]
    fault: {delay: {fixedDelay: 2s, percentage: {value: 25}}, abort: {httpStatus: 503, percentage: {value: 10}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: moved
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: reviews.default.svc.cluster.local, redirectCode: 308}
  - name: teapot
    match: [{uri: {prefix: /tea}, authority: {prefix: reviews}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: canary
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
    mirror: {host: ratings}
    mirrorPercentage: {value: 50}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\\\.example\\\\.org"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-user]
      maxAge: 24h
      allowCredentials: true
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin]
  http:
  - match: [{port: 8000}]
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
    headers: {request: {set: {host: httpbin.internal}}}
  - match: [{headers: {x-hash: {}}}]
    route: [{destination: {host: hashed}}]
  - route: [{destination: {host: httpbin, port: {number: 80}}, weight: 70}, {destination: {host: ratings, port: {number: 9080}}, weight: 30}]
`;

/** Delegate VirtualServices, build-time match filters (sourceLabels, port), a Sidecar's egress scope and REGISTRY_ONLY. */
const SCOPED = `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: scoped}
spec:
  namespace: shop
  labels: {app: cart, version: v2}
${SE("reviews", "{number: 9080, name: http, protocol: HTTP}, {number: 9443, name: http-admin, protocol: HTTP}", "{address: 10.1.0.1, labels: {version: v1}}, {address: 10.1.0.2, labels: {version: v2}}")}
${SE("hidden", "{number: 80, name: http, protocol: HTTP}", "{address: 10.1.1.1}")}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["default/reviews.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - name: carts
    match: [{sourceLabels: {app: cart}, uri: {prefix: /cart}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: not-me
    match: [{sourceLabels: {app: other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
  - name: admin-port
    match: [{port: 9443}]
    route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9443}}}]
  - name: team
    match: [{uri: {prefix: /team}}]
    delegate: {name: team-routes, namespace: default}
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team-routes, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /team/a}, headers: {x-team: {exact: a}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2, port: {number: 9080}}}]
    timeout: 2s
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1, port: {number: 9080}}}]
`;

const CONFIGS: [string, string][] = [
  ["the quickstart", readFileSync(new URL("../../examples/quickstart/mesh.yaml", import.meta.url), "utf8")],
  ["features across routes and clusters", RICH],
  ["delegates, build-time matches, a Sidecar's scope and REGISTRY_ONLY", SCOPED],
];

/** What the proxy's DNS discovery found for the DNS ServiceEntries' names (the same for both paths). */
const RESOLVED = new Map<string, string[]>([["db-a.internal", ["10.5.0.1", "10.5.0.2"]], ["db-b.internal", ["10.5.0.3"]], ["cdn.example.com", ["10.6.0.1", "10.6.0.2"]]]);

/**
 * The file path's config, and the same config as a live sidecar has it: the YAML served by `instio
 * control-plane`, pushed over ADS to an instio sidecar (its node naming the settings' namespace and
 * labels), translated by its worker, the DNS names resolved by its own discovery against a DNS server
 * answering RESOLVED.
 */
async function bothPaths(text: string): Promise<{ files: CompiledConfig; xds: CompiledConfig }> {
  const loaded = requireConfig(loadConfigText("mesh.yaml", text));
  const files = compile(loaded.model!, RESOLVED);
  const dir = mkdtempSync(join(tmpdir(), "instio-differential-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "mesh.yaml"), text);
  const dns = await startFakeDns(Object.fromEntries(RESOLVED));
  cleanups.push(() => dns.close());
  const logs: string[] = [];
  const cp = await startControlPlane({ config: dir, kubeDir: undefined, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, log: new Logger("info", (l) => logs.push(l)) });
  cleanups.push(() => cp.close());
  // The control plane found nothing wrong with the config (what the file path would say too).
  expect(logs.filter((l) => /: (error|warning): /.test(l))).toEqual([]);
  const node = nodeIdentity({ podName: "differential-0", namespace: files.settings.namespace, ip: "127.0.0.1", labels: files.settings.labels }, {});
  const settings = { ...files.settings, outbound: { ...files.settings.outbound, port: 0 }, admin: { ...files.settings.admin, port: 0 }, agent: undefined, dns: { servers: [dns.server], refreshRateMs: 60_000 } };
  const proxy = await startProxy({ config: xdsStartingConfig(settings, node), xds: { address: `127.0.0.1:${cp.xdsPort}`, node }, log: () => {} });
  cleanups.push(() => proxy.close());
  // Ready, and the DNS clusters' names resolved and patched in.
  const resolvedEverywhere = (): boolean => proxy.holder.current.config.clusters.every((c) => !c.dns || c.endpoints.length === resolveDnsEndpoints(c.dns.targets, c.dns.logical, RESOLVED, new Set()).length);
  await eventually(() => proxy.lifecycle.ready && resolvedEverywhere(), 15_000, "the sidecar's first complete config, DNS resolved");
  const xds = proxy.holder.current.config;
  // The sidecar resolves the same names the file path would.
  expect([...xds.dnsNames].sort()).toEqual([...files.dnsNames].sort());
  return { files, xds };
}

/** The route table with each cluster's endpoint count as its endpoints are now (EDS and DNS patch the endpoints, and the cluster manager the core). */
function currentTable(config: CompiledConfig): RouteTable {
  return {
    ...config.table,
    clusters: config.table.clusters.map((c, i) => {
      const endpoints = config.clusters[i]!.endpoints;
      return { ...c, endpointCount: endpoints.length, endpointNames: c.endpointNames && endpoints.map((ep) => hashName(ep.address, ep.port)), endpointWeights: endpointWeights(endpoints) };
    }),
  };
}

/** Header edits as what they do: an empty set of operations is none. */
function edits(h: HeadersModel | undefined): unknown {
  const ops = (o: HeaderOperations | undefined): HeaderOperations | undefined => (o && o.set.length + o.add.length + o.remove.length > 0 ? o : undefined);
  const request = ops(h?.request);
  const response = ops(h?.response);
  return request || response || h?.hostRewrite !== undefined ? { request, response, hostRewrite: h?.hostRewrite } : undefined;
}

/** Everything a decision leads to, by name: what the request does, independent of indices. */
function outcome(config: CompiledConfig, d: Decision): unknown {
  const cluster = d.cluster >= 0 ? config.clusters[d.cluster] : undefined;
  const starts = clusterEndpointStarts(currentTable(config));
  const endpoint = cluster && d.endpoint >= 0 ? cluster.endpoints[d.endpoint - starts[d.cluster]!] : undefined;
  const route = d.route >= 0 ? config.routes[d.route] : undefined;
  const regex = (program: number): string => config.table.hostRegexes![program]!.pattern;
  return {
    code: d.code < 0 ? d.code : "route",
    vhost: d.vhost >= 0 ? config.table.virtualHosts[d.vhost]!.name : undefined,
    entry: d.entry >= 0 ? config.entries[d.entry]!.name : undefined,
    route: route && {
      timeoutMs: route.timeoutMs,
      headers: edits(route.headers && { ...route.headers, hostRewrite: undefined }),
      // Istio's host rewrite by a `host` header set is Envoy's host_rewrite_literal, the same rewrite.
      authority: route.rewrite?.authority ?? route.headers?.hostRewrite,
      uri: route.rewrite?.uri,
      uriRegex: route.rewrite?.uriRegex && { pattern: regex(route.rewrite.uriRegex.program), rewrite: route.rewrite.uriRegex.rewrite },
      action: route.action,
      fault: route.fault,
      cors: route.cors && { ...route.cors, allowOrigins: route.cors.allowOrigins.map((o) => ({ kind: o.kind, value: o.value })) },
      // A redirect or a direct response never goes upstream: its retry policy does nothing (Envoy's has none).
      retry: route.action.kind === "forward" ? route.retry : undefined,
      mirrors: route.mirrors.map((m) => ({ cluster: config.clusters[m.cluster]?.name, percent: m.percent })),
    },
    destinationHeaders: d.dest >= 0 ? edits(config.destinations[d.dest]?.headers) : undefined,
    cluster: cluster && {
      name: cluster.name,
      host: cluster.host,
      namespace: cluster.serviceNamespace,
      http2: cluster.http2,
      passthrough: cluster.passthrough,
      // Without an SNI or SANs, Istio names the host (istiod writes it out): the same check.
      policy: { ...cluster.policy, tls: cluster.policy.tls && { ...cluster.policy.tls, sni: cluster.policy.tls.sni ?? cluster.host, subjectAltNames: cluster.policy.tls.subjectAltNames.length > 0 ? cluster.policy.tls.subjectAltNames : [cluster.policy.tls.sni ?? cluster.host] } },
      healthCheck: cluster.healthCheck && { ...cluster.healthCheck, host: undefined, port: undefined },
      endpoints: cluster.endpoints,
    },
    endpoint,
  };
}

function corpus(configs: CompiledConfig[]): fc.Arbitrary<{ request: RouteRequest; random: number }> {
  const authorities = new Set<string>(["unknown.example", "reviews:1234"]);
  const paths = new Set<string>(["/", "/x"]);
  const headers = new Map<string, Set<string>>([["x-team", new Set(["a", "b"])], ["end-user", new Set(["jason", "bob"])], ["user-agent", new Set(["mobile-app", "curl"])], ["x-user", new Set(["a", "b", "c"])], ["cookie", new Set(["session=1", "session=2"])]]);
  for (const c of configs) {
    for (const vh of c.table.virtualHosts) for (const d of vh.domains) authorities.add(d);
    for (const e of c.table.entries) {
      if (e.uri) {
        paths.add(e.uri.value);
        paths.add(`${e.uri.value}/1`);
      }
      for (const cond of e.conditions) if (cond.source === "header") (headers.get(cond.name) ?? headers.set(cond.name, new Set()).get(cond.name)!).add(cond.value);
    }
  }
  paths.add("/items/42");
  const headerValue = (name: string): fc.Arbitrary<string | undefined> => fc.option(fc.constantFrom(...headers.get(name)!), { nil: undefined });
  const headerRecord = fc.record(Object.fromEntries([...headers.keys()].map((n) => [n, headerValue(n)])));
  return fc.record({
    authority: fc.constantFrom(...authorities),
    path: fc.constantFrom(...paths),
    query: fc.constantFrom(undefined, "id=7", "id=x"),
    method: fc.constantFrom("GET", "POST"),
    headers: headerRecord,
    random: fc.integer({ min: 0, max: 0xffffffff }),
  }).map(({ authority, path, query, method, headers: h, random }) => ({
    request: { method, authority, path, query, scheme: "http", header: (n: string) => (h as Record<string, string | undefined>)[n], remoteAddress: "10.1.1.1" },
    random,
  }));
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a config served from files and the same config through the control plane to a sidecar", () => {
  for (const [name, text] of CONFIGS) {
    it(`decide and act alike: ${name}`, { timeout: 30_000 }, async () => {
      const { files, xds } = await bothPaths(text);
      const matcher = (c: CompiledConfig): ReferenceMatcher => {
        const table = currentTable(c);
        return new ReferenceMatcher(table, new Array<number>(clusterEndpointStarts(table).at(-1)!).fill(0));
      };
      const fromFiles = matcher(files);
      const fromXds = matcher(xds);
      const reached = new Set<number>();
      fc.assert(
        fc.property(corpus([files, xds]), ({ request, random }) => {
          const a = emptyDecision();
          const b = emptyDecision();
          fromFiles.decide(request, random, a);
          fromXds.decide(request, random, b);
          expect(outcome(xds, b)).toEqual(outcome(files, a));
          reached.add(a.entry);
        }),
        { numRuns: 2000 },
      );
      // The corpus is worth something only if it reaches every route of the config.
      expect(files.entries.filter((_, i) => !reached.has(i)).map((e) => e.name)).toEqual([]);
      expect(xds.settings.outboundTrafficPolicy).toBe(files.settings.outboundTrafficPolicy);
    });
  }
});
