// Cluster generation details that a client would reject or mis-verify if wrong.

import { describe, expect, it } from "vitest";
import { compile } from "../../host/config/compile.js";
import { DiagnosticSink, parseSource } from "../../host/config/source.js";
import { meshFromDocuments } from "../../host/control-plane/mesh.js";
import { envoyCluster } from "../../host/envoy/generate/clusters.js";
import { ENDPOINT_TYPE, jsonToStruct, packAny, unpackAny, type AnyMessage } from "../../host/envoy/protos.js";
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
