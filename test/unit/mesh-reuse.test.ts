// The control plane regenerates a proxy class's resources at the granularity of
// a change: a VirtualService change keeps the class's clusters and endpoint
// assignments, an endpoint change its listeners, routes and clusters. Whatever
// is kept must be exactly what a fresh generation from the new mesh gives.

import { describe, expect, it } from "vitest";
import { DiagnosticSink, parseSource } from "../../host/config/source.js";
import { Mesh, meshFromDocuments, type MeshSnapshot } from "../../host/control-plane/mesh.js";
import { parseNode } from "../../host/control-plane/xds/node.js";
import { CLUSTER_TYPE, DECODE_OPTIONS, ENDPOINT_TYPE, LISTENER_TYPE, messageType, packAny, ROUTE_TYPE } from "../../host/envoy/protos.js";
import type { ProxyResources } from "../../host/envoy/generate/resources.js";
import { kubeService, type Backend } from "../support/mesh.js";
import { adsNode } from "../support/ads-client.js";

const TYPES = [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE];

function snapshot(yaml: string): MeshSnapshot {
  const sink = new DiagnosticSink();
  const load = meshFromDocuments(parseSource("mesh.yaml", yaml, sink), sink);
  if (!load.snapshot) throw new Error(load.diagnostics.map((d) => d.message).join("\n"));
  return load.snapshot;
}

const backends = (service: string): Backend[] => [{ name: `${service}-1`, version: "v1", port: 17001 } as Backend, { name: `${service}-2`, version: "v2", port: 17002 } as Backend];

const kube = ["reviews", "ratings", "details"].map((s, i) => kubeService(s, 9080 + i, backends(s), i === 2 ? "other" : "default")).join("---\n");

const rules = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: 7}}, outlierDetection: {consecutive5xxErrors: 3, interval: 5s}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}]
`;

const virtualService = (split: number, extra = ""): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
    retries: {attempts: 2, perTryTimeout: 1s}
  - route: [{destination: {host: reviews, subset: v1}, weight: ${split}}, {destination: {host: reviews, subset: v2}, weight: ${100 - split}}]
${extra}`;

/** name → version of each type: what a proxy would be sent. */
function sent(r: ProxyResources): Record<string, Record<string, string>> {
  return Object.fromEntries(TYPES.map((t) => [t, Object.fromEntries([...r.all(t)].map((x) => [x.name, x.version]))]));
}

const NODES = [parseNode(adsNode("a-1", "default")), parseNode(adsNode("b-1", "other")), parseNode(adsNode("g-1", "default", "grpc"))];

describe("regenerating a proxy class at the granularity of a change", () => {
  const steps: [string, string][] = [
    ["a route's weights", `${kube}---\n${rules}---\n${virtualService(90)}`],
    ["a second VirtualService, with a delegate-free TCP route and a fault", `${kube}---\n${rules}---\n${virtualService(50, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http: [{fault: {abort: {httpStatus: 503, percentage: {value: 10}}}, route: [{destination: {host: ratings}}]}]
`)}`],
    ["a VirtualService naming a subset that does not exist and a host that does not", `${kube}---\n${rules}---\n${virtualService(50).replace("subset: v2}}]\n    retries", "subset: v9}}]\n    retries").replace("host: reviews, subset: v1}, weight", "host: nowhere, subset: v1}, weight")}`],
    ["VirtualServices removed", `${kube}---\n${rules}`],
    ["endpoints moved", `${kube.replaceAll("17001", "17011")}---\n${rules}`],
    ["a VirtualService back, endpoints as they are", `${kube.replaceAll("17001", "17011")}---\n${rules}---\n${virtualService(70)}`],
    ["a DestinationRule's policy, with a VirtualService", `${kube.replaceAll("17001", "17011")}---\n${rules.replace("http1MaxPendingRequests: 7", "http1MaxPendingRequests: 9")}---\n${virtualService(60)}`],
  ];

  it("sends exactly what a fresh generation sends, and reuses the clusters when only VirtualServices changed", () => {
    const mesh = new Mesh(snapshot(`${kube}---\n${rules}---\n${virtualService(100)}`));
    let before = NODES.map((n) => mesh.resourcesFor(n));
    for (const [what, yaml] of steps) {
      const next = snapshot(yaml);
      mesh.update(next);
      const fresh = new Mesh(next);
      const after = NODES.map((n) => mesh.resourcesFor(n));
      NODES.forEach((n, i) => {
        expect(sent(after[i]!), `${what}: ${n.id}`).toEqual(sent(fresh.resourcesFor(n)));
        expect(after[i]!.diagnostics.map((d) => d.message).sort(), `${what}: ${n.id}`).toEqual(fresh.resourcesFor(n).diagnostics.map((d) => d.message).sort());
        // Kept means the same encoded objects: nothing generated or encoded again.
        const kept = [...after[i]!.all(CLUSTER_TYPE)].every((c) => [...before[i]!.all(CLUSTER_TYPE)].includes(c));
        if (!/endpoints moved|DestinationRule/.test(what)) expect(kept, `${what}: ${n.id} keeps its clusters`).toBe(true);
      });
      before = after;
    }
  });

  it("assembles each route configuration from its virtual hosts' encodings into what protobufjs encodes of the whole", () => {
    const mesh = new Mesh(snapshot(`${kube}---\n${rules}---\n${virtualService(90)}`));
    const RouteConfiguration = messageType(ROUTE_TYPE);
    const decode = (bytes: Uint8Array): unknown => RouteConfiguration.toObject(RouteConfiguration.decode(bytes), DECODE_OPTIONS);
    const configs = NODES.slice(0, 2).flatMap((n) => [...mesh.resourcesFor(n).all(ROUTE_TYPE)]);
    expect(configs.length).toBeGreaterThan(1);
    for (const r of configs) {
      expect((r.json.virtual_hosts as unknown[]).length).toBeGreaterThan(1);
      expect(decode(r.any.value)).toEqual(decode(packAny(ROUTE_TYPE, r.json).value));
    }
  });
});
