// Hostile xDS. Whatever a control plane sends — bytes that are no message,
// or a well-formed resource with a field deleted, set to a strange value or
// repeated — the sidecar either serves it or rejects it with a message naming
// the resource (a NACK), never another exception; and what it accepts builds
// into a config and a route core without an error.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compile } from "../../host/config/compile.js";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { writeRequest } from "../../host/core/request-fields.js";
import { RouteCore } from "../../host/core/route-core.js";
import { ProxyResources } from "../../host/envoy/generate/resources.js";
import { messageType, type AnyMessage } from "../../host/envoy/protos.js";
import { Rejected, ResourceSet, SIDECAR_TYPES } from "../../host/xds/resource-set.js";
import "../support/fast-check-seed.js";

const MESH = `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: fuzz}
spec: {namespace: default}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 7070, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}, {address: 10.0.0.2, labels: {version: v2}}]
---
# Endpoints that run a sidecar: auto mTLS, an ISTIO_MUTUAL cluster with istiod's SDS secrets to mutate.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.3, serviceAccount: bookinfo-ratings, labels: {app: ratings, security.istio.io/tlsMode: istio}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
    connectionPool: {tcp: {maxConnections: 5}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: "/r/[0-9]+"}, headers: {end-user: {exact: jason}}, queryParams: {q: {prefix: a}}}]
    rewrite: {uriRegexRewrite: {match: "^/r/([0-9]+)$", rewrite: "/x/\\\\1"}}
    fault: {abort: {httpStatus: 500, percentage: {value: 5}}}
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,unavailable"}
    route: [{destination: {host: reviews, subset: v2}, weight: 80, headers: {request: {add: {x-a: "1"}}}}, {destination: {host: reviews, subset: v1}, weight: 20}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}], allowMethods: [GET]}
`;

type Json = Record<string, unknown>;

const files = requireConfig(loadConfigText("mesh.yaml", MESH));
const generated = new ProxyResources(compile(files.model!, undefined, { everyCluster: true, digests: false }), "sidecar");
const RESOURCES = SIDECAR_TYPES.flatMap((type) => [...generated.all(type)].map((r) => ({ type, name: r.name, json: r.json as Json })));

/** The good resources; each case applies its own on top and puts them back (the undo apply returns). */
const set = new ResourceSet();
for (const type of SIDECAR_TYPES) set.apply(type, [...generated.all(type)].map((r) => r.any), [], true);

/** Every path to a value inside a resource's JSON (Any contents are bytes, left alone). */
function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return [at];
  const out: (string | number)[][] = at.length > 0 ? [at] : [];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value as Json);
  for (const [k, v] of entries) if (k !== "value" || !ArrayBuffer.isView(v)) out.push(...paths(v, [...at, k]));
  return out;
}

const STRANGE: unknown[] = [0, -1, 1.5, 4294967295, "", "x", "*", "type.googleapis.com/", "((", "5xx,bogus", "a:b:c", true, false, {}, [], { value: 0 }, { value: 4294967295 }, { seconds: -1 }, { seconds: "315576000000" }];

type Mutation = { kind: "delete" } | { kind: "set"; value: unknown } | { kind: "repeat" };

function mutate(json: Json, path: (string | number)[], m: Mutation): Json {
  const copy = structuredClone(json) as Json;
  let parent: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (m.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (m.kind === "set") parent[last] = structuredClone(m.value);
  else if (Array.isArray(parent)) parent.splice(last as number, 0, structuredClone(parent[last as number]));
  return copy;
}

/** Applies `any` to a set holding the good resources: Rejected, or served and buildable. */
const MAX_CORES = 300;
let coresBuilt = 0;

function serveOrReject(type: string, any: AnyMessage): "served" | "rejected" {
  let undo: () => void;
  try {
    undo = set.apply(type, [any], [], false).undo;
  } catch (err) {
    if (!(err instanceof Rejected)) throw err;
    expect(err.message.length).toBeGreaterThan(0);
    return "rejected";
  }
  try {
    if (set.warm()) {
      const config = set.build(files.settings);
      // Routes a few virtual hosts' domains through a route core built from it. Each core is a Wasm
      // instance with its own memory reservation: a few hundred per run, not one per case.
      if (coresBuilt++ >= MAX_CORES) return "served";
      const core = new RouteCore(config.table);
      for (const vh of config.table.virtualHosts.slice(0, 4)) {
        for (const authority of vh.domains.slice(0, 2)) {
          writeRequest(core, config.table.headerNames, { method: "GET", authority, path: "/r/12", query: "q=a", scheme: "http", header: (n) => (n === "end-user" ? "jason" : n === "x-user" ? "u1" : undefined) });
          core.route(0x9e3779b9);
        }
      }
    }
  } finally {
    undo();
  }
  return "served";
}

describe("resources a control plane sends", () => {
  it("that do not decode are rejected with a message", () => {
    fc.assert(
      fc.property(fc.constantFrom(...SIDECAR_TYPES), fc.uint8Array({ maxLength: 200 }), (type, bytes) => {
        serveOrReject(type, { type_url: type, value: bytes });
      }),
      { numRuns: 2000 },
    );
  });

  it("with a field deleted, set to a strange value or repeated, are served or rejected, never an error of another kind", () => {
    const resource = fc.constantFrom(...RESOURCES);
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(
      fc.constant<Mutation>({ kind: "delete" }),
      fc.constant<Mutation>({ kind: "repeat" }),
      fc.constantFrom(...STRANGE).map((value): Mutation => ({ kind: "set", value })),
    );
    const seen = { served: 0, rejected: 0 };
    fc.assert(
      fc.property(resource.chain((r) => fc.tuple(fc.constant(r), fc.constantFrom(...paths(r.json)), mutation)), ([r, path, m]) => {
        const type = messageType(r.type);
        let any: AnyMessage;
        try {
          const json = mutate(r.json, path, m);
          any = { type_url: r.type, value: type.encode(type.fromObject(json)).finish() };
        } catch {
          return; // not even encodable: no control plane can send it
        }
        seen[serveOrReject(r.type, any)]++;
      }),
      { numRuns: 1000 },
    );
    // Both outcomes occur: the mutations reach fields that matter.
    expect(seen.served).toBeGreaterThan(50);
    expect(seen.rejected).toBeGreaterThan(50);
  });
});
