// Cluster generation details that a client would reject or mis-verify if wrong.

import { describe, expect, it } from "vitest";
import { compile } from "../../host/config/compile.js";
import { DiagnosticSink, parseSource } from "../../host/config/source.js";
import { meshFromDocuments } from "../../host/control-plane/mesh.js";
import { envoyCluster } from "../../host/envoy/generate/clusters.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, jsonToStruct, packAny, unpackAny, type AnyMessage } from "../../host/envoy/protos.js";
import { ResourceSet } from "../../host/xds/resource-set.js";

function clusterFor(yaml: string, name: string): Record<string, unknown> {
  const sink = new DiagnosticSink();
  const { snapshot, diagnostics } = meshFromDocuments(parseSource("t.yaml", yaml, sink), sink);
  expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  const config = compile(snapshot!.model, undefined, { everyCluster: true, digests: false });
  const info = config.clusters.find((c) => c.name === name)!;
  return envoyCluster(info, "sidecar", [])!;
}

const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https-api, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
`;

describe("Envoy clusters", () => {
  it("verifies SIMPLE TLS against the system's roots when no caCertificates are given (Envoy refuses SAN checks without a CA)", () => {
    const cluster = clusterFor(`${SERVICE}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: default}
spec:
  host: api.example.com
  trafficPolicy: {tls: {mode: SIMPLE}}
`, "outbound|443||api.example.com");
    const socket = cluster.transport_socket as { typed_config: AnyMessage };
    const tls = unpackAny(socket.typed_config) as { sni: string; common_tls_context: { validation_context: { trusted_ca: { filename: string }; match_typed_subject_alt_names: { matcher: { exact: string } }[] } } };
    expect(tls.sni).toBe("api.example.com");
    expect(tls.common_tls_context.validation_context.trusted_ca.filename).toBe("/etc/ssl/certs/ca-certificates.crt");
    expect(tls.common_tls_context.validation_context.match_typed_subject_alt_names[0]!.matcher.exact).toBe("api.example.com");
  });
});

/** A decoded message without protobufjs's virtual oneof fields (`"target_specifier": "envoy_grpc"`), so it packs again. */
function withoutOneofNames(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutOneofNames);
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return value;
  const o = value as Record<string, unknown>;
  return Object.fromEntries(Object.entries(o).filter(([, v]) => !(typeof v === "string" && v in o)).map(([k, v]) => [k, withoutOneofNames(v)]));
}

describe("ISTIO_MUTUAL over xDS", () => {
  const RATINGS = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.3, serviceAccount: bookinfo-ratings, labels: {security.istio.io/tlsMode: istio}}]
`;
  const NAME = "outbound|9080||ratings.default.svc.cluster.local";
  type Sds = { name: string; sds_config: { api_config_source: { grpc_services: { envoy_grpc: { cluster_name: string } }[] } } };
  type Tls = { sni: string; common_tls_context: { tls_certificate_sds_secret_configs: Sds[]; combined_validation_context: { validation_context_sds_secret_config: Sds; default_validation_context: { match_typed_subject_alt_names: { matcher: { exact: string } }[] } }; alpn_protocols: string[] } };

  it("is sent as istiod sends it (SDS default and ROOTCA from sds-grpc, the identities, SNI, ALPN) and read back as ISTIO_MUTUAL", () => {
    const cluster = clusterFor(RATINGS, NAME);
    const tls = unpackAny((cluster.transport_socket as { typed_config: AnyMessage }).typed_config) as Tls;
    expect(tls.sni).toBe("outbound_.9080_._.ratings.default.svc.cluster.local");
    expect(tls.common_tls_context.tls_certificate_sds_secret_configs.map((s) => [s.name, s.sds_config.api_config_source.grpc_services[0]!.envoy_grpc.cluster_name])).toEqual([["default", "sds-grpc"]]);
    expect(tls.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name).toBe("ROOTCA");
    expect(tls.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names.map((m) => m.matcher.exact)).toEqual(["spiffe://cluster.local/ns/default/sa/bookinfo-ratings"]);
    expect(tls.common_tls_context.alpn_protocols).toEqual(["istio-http/1.1", "istio", "http/1.1"]);
    const set = new ResourceSet();
    set.apply(CLUSTER_TYPE, [packAny(CLUSTER_TYPE, cluster)], [], false);
    expect(set.clusters.get(NAME)!.info.policy.tls).toMatchObject({ mode: "ISTIO_MUTUAL", sni: "outbound_.9080_._.ratings.default.svc.cluster.local", subjectAltNames: ["spiffe://cluster.local/ns/default/sa/bookinfo-ratings"] });
  });

  it("is refused (a NACK naming the field) with a secret or an SDS server instio cannot bind to its workload certificate", () => {
    for (const [edit, message] of [
      [(t: Tls) => (t.common_tls_context.tls_certificate_sds_secret_configs[0]!.name = "file-cert:/etc/x"), /only the workload's own SDS secrets/],
      [(t: Tls) => (t.common_tls_context.combined_validation_context.validation_context_sds_secret_config.sds_config.api_config_source.grpc_services[0]!.envoy_grpc.cluster_name = "elsewhere"), /sds-grpc only/],
    ] as [(t: Tls) => void, RegExp][]) {
      const cluster = clusterFor(RATINGS, NAME);
      const socket = cluster.transport_socket as { typed_config: AnyMessage };
      const tls = withoutOneofNames(unpackAny(socket.typed_config)) as Tls;
      edit(tls);
      socket.typed_config = packAny(socket.typed_config.type_url, tls as unknown as Record<string, unknown>);
      expect(() => new ResourceSet().apply(CLUSTER_TYPE, [packAny(CLUSTER_TYPE, cluster)], [], false)).toThrow(message);
    }
  });
});

describe("endpoint metadata", () => {
  it("reads the workload's labels from istiod's metadata (istio.workload, the transport-socket match) when instio's own is absent", () => {
    const set = new ResourceSet();
    const cla = packAny(ENDPOINT_TYPE, {
      cluster_name: "outbound|9080||reviews.default.svc.cluster.local",
      endpoints: [{
        locality: {},
        lb_endpoints: [{
          endpoint: { address: { socket_address: { address: "10.0.0.7", port_value: 9080 } } },
          metadata: { filter_metadata: { istio: jsonToStruct({ workload: "reviews-v2;default;reviews;v2;Kubernetes" }), "envoy.transport_socket_match": jsonToStruct({ tlsMode: "istio" }) } },
        }],
      }],
    });
    set.apply(ENDPOINT_TYPE, [cla], [], false);
    expect(set.endpoints.get("outbound|9080||reviews.default.svc.cluster.local")).toEqual([{
      address: "10.0.0.7",
      port: 9080,
      labels: { "service.istio.io/workload-name": "reviews-v2", "service.istio.io/canonical-name": "reviews", "service.istio.io/canonical-revision": "v2", "security.istio.io/tlsMode": "istio" },
    }]);
  });
});
