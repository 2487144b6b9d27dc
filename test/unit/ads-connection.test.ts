// One ADS stream's bookkeeping across mesh versions, without a network: a
// subscription that grows while the stream is still in sync with the previous
// version must still be answered (the diff between versions knows nothing of
// names the client has just asked for).

import { describe, expect, it } from "vitest";
import { DiagnosticSink, parseSource } from "../../host/config/source.js";
import { Mesh, meshFromDocuments, type MeshSnapshot } from "../../host/control-plane/mesh.js";
import { AdsConnection, type ConnectionEvents } from "../../host/control-plane/xds/connection.js";
import { parseNode } from "../../host/control-plane/xds/node.js";
import { CLUSTER_TYPE, DECODE_OPTIONS, ENDPOINT_TYPE, messageType } from "../../host/envoy/protos.js";
import { kubeService, type Backend } from "../support/mesh.js";
import { adsNode } from "../support/ads-client.js";

const pod = (name: string, port: number): Backend => ({ name, version: "v1", port }) as Backend;

function snapshot(yaml: string): MeshSnapshot {
  const sink = new DiagnosticSink();
  return meshFromDocuments(parseSource("kube.yaml", yaml, sink), sink).snapshot!;
}

const DeltaResponse = messageType("envoy.service.discovery.v3.DeltaDiscoveryResponse");
const ECHO = "outbound|7070||echo.default.svc.cluster.local";
const LATER = "outbound|8080||later.default.svc.cluster.local";

describe("AdsConnection", () => {
  it("answers a name subscribed while the stream still holds the previous version's resources", () => {
    const base = `${kubeService("echo", 7070, [pod("echo-1", 17070)])}---\n${kubeService("later", 8080, [pod("later-1", 18080)])}`;
    const mesh = new Mesh(snapshot(base));
    const node = parseNode(adsNode("unit-1", "default"));
    const written: { resources?: { name: string }[]; type_url: string }[] = [];
    const events: ConnectionEvents = { nack: () => {}, expiredNonce: () => {}, pushed: () => {}, converged: () => {} };
    const conn = new AdsConnection("unit-1", node, "test", true, { write: (b) => (written.push(DeltaResponse.toObject(DeltaResponse.decode(b), DECODE_OPTIONS) as never), true), drain: async () => {} }, () => mesh.resourcesFor(node), () => "v1", events);
    conn.onDeltaRequest({ node: {}, type_url: CLUSTER_TYPE });
    conn.onDeltaRequest({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [ECHO] });
    // A new mesh version (a third service) reaches the control plane; this stream has not been pushed it yet.
    mesh.update(snapshot(`${base}---\n${kubeService("third", 9090, [pod("third-1", 19090)])}`));
    written.length = 0;
    conn.onDeltaRequest({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [LATER] });
    expect(written.map((r) => [r.type_url, (r.resources ?? []).map((x) => x.name)])).toEqual([[ENDPOINT_TYPE, [LATER]]]);
  });
});
