// Config adapters and compiler: Istio semantics, and errors that say where and why.

import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../host/config/diagnostics.js";
import { resolveHost, virtualHostDomains } from "../../host/config/hosts.js";
import { loadConfigText } from "../../host/config/load.js";

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9443, name: admin, targetPort: 10443}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, ports: {http: 8080}, labels: {version: v2}}
`;

function errors(text: string): string[] {
  return loadConfigText("mesh.yaml", text).diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic);
}

describe("host names", () => {
  it("resolves short names against the resource's namespace, as Istio", () => {
    expect(resolveHost("reviews", "prod")).toBe("reviews.prod.svc.cluster.local");
    expect(resolveHost("reviews.prod", "default")).toBe("reviews.prod");
    expect(resolveHost("*.example.com", "default")).toBe("*.example.com");
    expect(resolveHost("10.1.2.3", "default")).toBe("10.1.2.3");
  });

  it("generates the short authority forms only for the proxy's own namespace", () => {
    expect(virtualHostDomains("reviews.default.svc.cluster.local", 9080, "default")).toEqual([
      "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080", "reviews.default.svc", "reviews.default.svc:9080",
      "reviews.default", "reviews.default:9080", "reviews", "reviews:9080",
    ]);
    expect(virtualHostDomains("reviews.prod.svc.cluster.local", 9080, "default")).not.toContain("reviews");
    expect(virtualHostDomains("api.example.com", 443, "default")).toEqual(["api.example.com", "api.example.com:443"]);
  });
});

describe("validation errors", () => {
  it("names file, line, column and field path, and reports every error in the file", () => {
    const errs = errors(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {regex: "^/a("}
      headers:
        End-User: {exact: jason}
    route:
    - destination: {host: reviews}
      weight: -1
    timeout: 3 seconds
  - route: [{destination: {host: reviews}}]
    delegate: {name: other}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec: {}
`);
    expect(errs).toEqual([
      'mesh.yaml:8:20: error: spec.http[0].match[0].uri.regex: invalid regex "^/a(" at position 4: missing closing )',
      'mesh.yaml:10:19: error: spec.http[0].match[0].headers.End-User: header name must be lower-case and a valid HTTP token, got "End-User"',
      "mesh.yaml:13:15: error: spec.http[0].route[0].weight: must be between 0 and 2147483647, got -1",
      'mesh.yaml:14:14: error: spec.http[0].timeout: must be a duration such as "5s" or "250ms", got "3 seconds"',
      "mesh.yaml:16:15: error: spec.http[1].delegate: cannot be combined with route, redirect or directResponse",
      "mesh.yaml:21:7: error: spec.servers: at least one server is required",
    ]);
  });

  it("reads endpoint weights as Istio's uint32 (0 or none is 1) and refuses others at their line", () => {
    const yaml = (weights: string[]): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: w}
spec:
  hosts: [w.example]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
${weights.map((w, i) => `  - {address: 10.0.0.${i + 1}, weight: ${w}}`).join("\n")}
`;
    expect(errors(yaml(["-1", "4294967296", "two", "1.5"]))).toEqual([
      "mesh.yaml:9:33: error: spec.endpoints[0].weight: must be between 0 and 4294967295, got -1",
      "mesh.yaml:10:33: error: spec.endpoints[1].weight: must be between 0 and 4294967295, got 4294967296",
      'mesh.yaml:11:33: error: spec.endpoints[2].weight: must be an integer, got string "two"',
      "mesh.yaml:12:33: error: spec.endpoints[3].weight: must be an integer, got number 1.5",
    ]);
    const config = loadConfigText("mesh.yaml", yaml(["0", "1", "4294967295"])).config!;
    expect(config.model!.services[0]!.endpoints.map((ep) => ep.weight)).toEqual([undefined, undefined, 4294967295]);
  });

  it("rejects unknown fields, DYNAMIC_DNS, wildcard hosts to resolve, and non-IP STATIC endpoints", () => {
    const errs = errors(`apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocl: HTTP}]
  resolution: DYNAMIC_DNS
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: st}
spec:
  hosts: [st.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: st.internal}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ["*.wild.example"]
  ports: [{number: 80, name: http}]
  resolution: DNS
`);
    expect(errs).toEqual([
      'mesh.yaml:6:45: error: spec.ports[0].protocl: unknown field "protocl"',
      "mesh.yaml:7:15: error: spec.resolution: not supported yet: DYNAMIC_DNS",
      'mesh.yaml:16:25: error: spec.endpoints[0].address: resolution STATIC needs an IP address, got "st.internal" (use resolution DNS for names)',
      'mesh.yaml:22:11: error: spec.hosts[0]: resolution DNS without endpoints resolves the hosts, so "*.wild.example" cannot be a wildcard',
    ]);
  });

  it("reports YAML syntax errors with their position", () => {
    expect(errors("kind: [unclosed\n")[0]).toMatch(/^mesh\.yaml:\d+:\d+: error: YAML: /);
  });

  it("warns about, and skips, resources that are not Istio networking", () => {
    const r = loadConfigText("mesh.yaml", `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n${SE}`);
    expect(r.config).toBeDefined();
    expect(r.diagnostics.map(formatDiagnostic)).toEqual(["mesh.yaml:1:13: warning: apiVersion: ignored: apps/v1 Deployment is not an Istio networking or security resource or instio settings"]);
  });

  it("checks redirects and direct responses as Istio does", () => {
    expect(errors(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
  - redirect: {uri: /x, redirectCode: 305, port: 8080, derivePort: FROM_REQUEST_PORT}
    route: [{destination: {host: reviews}}]
  - directResponse: {status: 200, body: {bytes: "not base64!"}}
`)).toEqual([
      "mesh.yaml:7:15: error: spec.http[0].redirect: cannot be combined with route",
      "mesh.yaml:7:39: error: spec.http[0].redirect.redirectCode: must be one of 301, 302, 303, 307, 308, got 305",
      "mesh.yaml:7:68: error: spec.http[0].redirect.derivePort: only one of port and derivePort may be set",
      "mesh.yaml:9:49: error: spec.http[1].directResponse.body.bytes: must be base64",
    ]);
  });

  it("rejects a total weight of 0 across several destinations", () => {
    expect(errors(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: a}, weight: 0}
    - {destination: {host: b}, weight: 0}
`)).toEqual(["mesh.yaml:8:5: error: spec.http[0].route: total destination weight must be greater than 0"]);
  });
});

describe("compile", () => {
  const compile = (text: string) => {
    const r = loadConfigText("mesh.yaml", text);
    if (!r.config) throw new Error(r.diagnostics.map(formatDiagnostic).join("\n"));
    return r.config;
  };

  it("builds one virtual host per service port; bare names go to port 80 or the first port", () => {
    const c = compile(SE);
    expect(c.virtualHosts.map((v) => v.name)).toEqual(["reviews.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local:9443"]);
    expect(c.virtualHosts[0]!.domains).toContain("reviews");
    expect(c.virtualHosts[1]!.domains).not.toContain("reviews");
    expect(c.virtualHosts[1]!.domains).toContain("reviews:9443");
  });

  it("takes endpoint ports from the endpoint, then targetPort, then the service port", () => {
    const c = compile(SE);
    expect(c.clusters.map((cl) => [cl.name, cl.endpoints.map((e) => `${e.address}:${e.port}`)])).toEqual([
      ["outbound|9080||reviews.default.svc.cluster.local", ["10.0.0.1:9080", "10.0.0.2:8080"]],
      ["outbound|9443||reviews.default.svc.cluster.local", ["10.0.0.1:10443", "10.0.0.2:10443"]],
    ]);
  });

  it("drops routes after a catch-all and applies match.port and sourceLabels at build time", () => {
    const c = compile(`${SE}---
apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: s}
spec: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: ratings}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
  - match: [{port: 9443, uri: {prefix: /admin}}]
    route: [{destination: {host: reviews, port: {number: 9443}}}]
  - name: all
    route: [{destination: {host: reviews, port: {number: 9080}}}]
  - name: never
    route: [{destination: {host: reviews, port: {number: 9080}}}]
`);
    const names = (vh: number) => {
      const v = c.table.virtualHosts[vh]!;
      return c.entries.slice(v.entryStart, v.entryStart + v.entryCount).map((e) => e.name);
    };
    expect(names(0)).toEqual(["all"]);
    expect(names(1)).toEqual(["", "all"]);
  });

  it("merges delegate VirtualServices into their root as Istio does, one level deep", () => {
    const r = loadConfigText("mesh.yaml", `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: r
    match: [{uri: {prefix: /reviews}, headers: {x-team: {exact: a}}}]
    timeout: 3s
    delegate: {name: leaf}
  - match: [{uri: {prefix: /gone}}]
    delegate: {name: missing}
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: default}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /reviews/v2}}, {headers: {x-beta: {exact: "1"}}}]
    route: [{destination: {host: reviews, port: {number: 9443}}}]
  - match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: reviews, port: {number: 9443}}}]
  - timeout: 1s
    route: [{destination: {host: reviews, port: {number: 9080}}}]
`);
    const c = r.config!;
    expect(c).toBeDefined();
    const v = c.table.virtualHosts[0]!;
    const entries = c.table.entries.slice(v.entryStart, v.entryStart + v.entryCount);
    // Each delegate match is narrowed by the root's; /elsewhere is outside the root's /reviews: that route is dropped.
    expect(entries.map((e) => [e.uri?.kind, e.uri?.value, e.conditions.map((x) => `${x.name}=${x.value}`)])).toEqual([
      ["prefix", "/reviews/v2", ["x-team=a"]],
      ["prefix", "/reviews", ["x-beta=1", "x-team=a"]],
      ["prefix", "/reviews", ["x-team=a"]],
      [undefined, undefined, []],
    ]);
    expect(c.routes[entries[0]!.route]!.timeoutMs).toBe(3000); // the root's timeout fills the delegate's
    expect(c.routes[entries[2]!.route]!.timeoutMs).toBe(1000);
    expect(c.routes[entries[0]!.route]!.name).toBe("r-v2");
    const warnings = r.diagnostics.filter((d) => d.severity === "warning").map((d) => `${d.line}: ${d.message}`);
    expect(warnings).toEqual([
      expect.stringMatching(/^22: delegate VirtualService default\/missing does not exist/),
      expect.stringMatching(/^34: no match of this delegate route fits inside a match of the root route/),
    ]);
  });

  it("rejects a delegate that delegates again, and warns when two VirtualServices claim one host (IST0109)", () => {
    expect(errors(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf}
spec:
  http:
  - delegate: {name: other}
`)).toEqual([expect.stringMatching(/^mesh\.yaml:6:15: error: spec\.http\[0\]\.delegate: a delegate VirtualService .* cannot delegate again/)]);
    const r = loadConfigText("mesh.yaml", `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, port: {number: 9080}}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, port: {number: 9443}}}]}]}
`);
    expect(r.diagnostics.map((d) => d.message)).toContainEqual(expect.stringMatching(/also defined by VirtualService default\/a; .* \(IST0109\)/));
  });

  it("merges trafficPolicy as Istio does: port level replaces the rule's components, subsets override per component", () => {
    const c = compile(`${SE}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 2s}, http: {http1MaxPendingRequests: 5, maxRetries: 0}}
    outlierDetection: {consecutive5xxErrors: 7}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: X-User, ringHash: {minimumRingSize: 64}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{port: 9443}]
    route: [{destination: {host: reviews, port: {number: 9443}}}]
  - match: [{headers: {x-v2: {exact: "1"}}}]
    route: [{destination: {host: reviews, port: {number: 9080}, subset: v2}}]
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
`);
    const policy = (name: string) => c.clusters.find((x) => x.name === name)!.policy;
    const plain = policy("outbound|9080||reviews.default.svc.cluster.local");
    expect(plain.loadBalancer).toEqual({ kind: "ROUND_ROBIN" });
    expect(plain.limits).toMatchObject({ maxConnections: 10, connectTimeoutMs: 2000, maxPendingRequests: 5, maxRetries: 2 ** 32 - 1 }); // 0 is "unset" for Istio
    expect(plain.outlierDetection).toMatchObject({ consecutive5xxErrors: 7, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0 });
    // The port-level entry replaces every component: no connection pool or outlier detection there.
    const admin = policy("outbound|9443||reviews.default.svc.cluster.local");
    expect(admin.loadBalancer).toEqual({ kind: "RANDOM" });
    expect(admin.limits.maxConnections).toBe(2 ** 32 - 1);
    expect(admin.outlierDetection).toBeUndefined();
    // The subset overrides the load balancer only.
    const v2 = policy("outbound|9080|v2|reviews.default.svc.cluster.local");
    expect(v2.loadBalancer).toEqual({ kind: "RING_HASH", key: { kind: "header", name: "x-user" }, minimumRingSize: 64 });
    expect(v2.limits.maxConnections).toBe(10);
    expect(c.table.headerNames).toContain("x-user");
  });

  it("rejects traffic policy features it does not implement, naming each", () => {
    expect(errors(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, localityLbSetting: {enabled: true}}
    tls: {mode: MUTUAL, sni: x}
    connectionPool: {tcp: {tcpKeepalive: {probes: 3}}}
  subsets:
  - name: a
    trafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 100}, httpHeaderName: x}}}
`)).toEqual([
      expect.stringMatching(/7:60: error: spec\.trafficPolicy\.loadBalancer\.localityLbSetting: not supported yet: locality-weighted load balancing and failover \(every endpoint/),
      expect.stringMatching(/8:10: error: spec\.trafficPolicy\.tls: mode MUTUAL needs clientCertificate and privateKey/),
      expect.stringMatching(/9:51: error: spec\.trafficPolicy\.connectionPool\.tcp\.tcpKeepalive\.probes: not supported yet: only tcpKeepalive\.time/),
      expect.stringMatching(/12:73: error: spec\.subsets\[0\]\.trafficPolicy\.loadBalancer\.consistentHash\.maglev\.tableSize: must be a prime number, got 100/),
    ]);
  });

  it("applies the Sidecar's egress hosts and outboundTrafficPolicy; a selector matching the proxy wins", () => {
    const otherNs = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: other}
spec:
  hosts: [api.other.example]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.9.1}]
`;
    const c = compile(`${SE}---
${otherNs}---
apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: s}
spec: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["*/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  egress: [{hosts: ["./*"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`);
    expect(c.clusters.map((x) => x.host)).not.toContain("api.other.example");
    expect(c.virtualHosts.map((v) => v.host)).toEqual(["reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"]);
    expect(c.settings.outboundTrafficPolicy).toBe("REGISTRY_ONLY");
    expect(errors(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec:
  egress: [{hosts: [reviews]}]
  ingress: []
`)).toEqual([
      expect.stringMatching(/5:21: error: spec\.egress\[0\]\.hosts\[0\]: must be "namespace\/host"/),
      expect.stringMatching(/6:12: error: spec\.ingress: not supported yet: Sidecar ingress listeners/),
    ]);
  });

  it("warns with Istio's analyzer codes that unknown destinations and subsets give 503 NC", () => {
    const r = loadConfigText("mesh.yaml", `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: nowhere}, weight: 1}, {destination: {host: reviews, subset: v7, port: {number: 9080}}, weight: 1}]
`);
    expect(r.config).toBeDefined();
    expect(r.diagnostics.map((d) => d.message)).toEqual([
      'Referenced host not found: "nowhere.default.svc.cluster.local" (IST0101): no ServiceEntry defines it; requests routed there get 503 (NC)',
      'Referenced host+subset in destinationrule not found: "reviews.default.svc.cluster.local+v7" (IST0101): requests routed there get 503 (NC)',
    ]);
  });

  it("accepts Istio's bookinfo-gateway.yaml (hosts: * bound to a Gateway) and refuses * on mesh-bound VirtualServices", () => {
    const gw = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
`;
    expect(errors(gw)).toEqual([]);
    expect(errors(gw.replace("gateways: [bookinfo-gateway]", "gateways: [bookinfo-gateway, mesh]"))).toEqual([expect.stringMatching(/12:11: error: spec\.hosts\[0\]: wildcard host \* is not allowed for virtual services bound to the mesh gateway/)]);
  });

  it("warns of a VirtualService bound to a Gateway that does not exist (IST0101)", () => {
    const r = loadConfigText("mesh.yaml", `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  gateways: [nowhere]
  http: [{route: [{destination: {host: reviews}}]}]
`);
    expect(r.diagnostics.map((d) => d.message)).toContain('Referenced gateway not found: "default/nowhere" (IST0101): the VirtualService routes nothing there');
  });

  it("lets a later object with the same kind, namespace and name replace an earlier one, as kubectl apply, with a note", () => {
    const vs = (prefix: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {prefix: ${prefix}}}], route: [{destination: {host: reviews}}]}]
`;
    const r = loadConfigText("mesh.yaml", `${SE}---\n${vs("/first")}---\n${vs("/second")}`);
    expect(r.config!.model!.virtualServices.map((v) => JSON.stringify(v.http[0]!.matches[0]!.uri))).toEqual([expect.stringContaining("/second")]);
    expect(r.diagnostics.map((d) => d.message)).toEqual([expect.stringMatching(/^VirtualService default\/vs is applied again at mesh\.yaml:\d+; the later one replaces this one, as kubectl apply does$/)]);
  });

  it("bounds every file read: a certificate at /dev/zero is an error, not a read that fills memory", () => {
    const settings = (file: string): string => `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: s}
spec:
  listeners: {outbound: {address: 127.0.0.1, port: 0, tls: {certFile: ${file}, keyFile: ${file}}}}
`;
    expect(errors(settings("/dev/zero"))).toEqual([expect.stringMatching(/error: spec\.listeners\.outbound\.tls: cannot use certificate \/dev\/zero .*: \/dev\/zero is not a regular file/)]);
  });

  it("reports YAML alias errors and alias bombs with file:line, and accepts many uses of one anchor", () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x, x]\n${Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`).join("\n")}\n`;
    expect(errors(bomb)).toEqual([expect.stringMatching(/^mesh\.yaml:1:1: error: YAML: aliases expand to more than 100000 nodes/)]);
    expect(errors("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: *missing\n")).toEqual([expect.stringMatching(/^mesh\.yaml:4:7: error: YAML: Unresolved alias/)]);
    const reused = `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [reviews]
  http:
${Array.from({ length: 300 }, (_, i) => i === 0 ? "  - {match: [{uri: {prefix: /p0}}], route: &r [{destination: {host: reviews}}]}" : `  - {match: [{uri: {prefix: /p${i}}}], route: *r}`).join("\n")}
`;
    expect(errors(reused)).toEqual([]);
  });

  it("honours exportTo: a resource exported to another namespace is invisible here", () => {
    const c = compile(SE.replace("resolution: STATIC", "resolution: STATIC\n  exportTo: [prod]"));
    expect(c.virtualHosts).toEqual([]);
  });
});
