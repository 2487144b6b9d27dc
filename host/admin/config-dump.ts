// /config_dump in Envoy's shape (envoy.admin.v3.ConfigDump): configs[] holding
// the bootstrap, then the clusters, listeners, routes and (with include_eds)
// endpoints, each @typed, with its version and when it was last updated.
// Fed by xDS, these are the resources as the control plane sent them; from an
// Envoy bootstrap's static_resources, those (as Envoy's static_* entries); fed
// by files, the Envoy resources the serving config amounts to, generated as the
// control plane would send them. Loaded on first use (it needs Envoy's
// protos), so a proxy that is never asked pays nothing.

import type { CompiledConfig } from "../config/compile.js";
import { ProxyResources } from "../envoy/generate/resources.js";
import { anyToJson, dynamicResourcesDump } from "../envoy/json.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPE_PREFIX } from "../envoy/protos.js";
import type { DumpedResource } from "../envoy/json.js";
import type { NodeIdentity } from "../xds/node-identity.js";

const ADMIN = `${TYPE_PREFIX}envoy.admin.v3.`;

/** Where the dump's resources come from. */
export interface DumpSource {
  config: CompiledConfig;
  /** The serving snapshot's version and when it was made (the files path's version_info). */
  version: number;
  createdAt: Date;
  /** With --xds: the resources as applied, and who this proxy told the control plane it is. */
  xds?: { address: string; protocol: string; node: NodeIdentity; raw: ReadonlyMap<string, ReadonlyMap<string, DumpedResource>> };
  /** From an Envoy bootstrap's static_resources: those resources (Envoy dumps them as static_*). */
  staticResources?: ReadonlyMap<string, ReadonlyMap<string, DumpedResource>>;
}

export function envoyConfigDump(source: DumpSource, includeEds: boolean): { configs: Record<string, unknown>[] } {
  const resources = source.xds?.raw ?? source.staticResources ?? generatedResources(source);
  const list = (type: string): [string, DumpedResource][] => [...(resources.get(type) ?? new Map<string, DumpedResource>())].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const boot = { "@type": `${ADMIN}BootstrapConfigDump`, bootstrap: bootstrap(source), lastUpdated: source.createdAt.toISOString() };
  if (source.staticResources) {
    // Envoy's form for what its bootstrap defines: static_*, no versions.
    const at = (r: DumpedResource): string => r.at.toISOString();
    return {
      configs: [
        boot,
        { "@type": `${ADMIN}ClustersConfigDump`, staticClusters: list(CLUSTER_TYPE).map(([, r]) => ({ cluster: anyToJson(r.any), lastUpdated: at(r) })) },
        { "@type": `${ADMIN}ListenersConfigDump`, staticListeners: list(LISTENER_TYPE).map(([, r]) => ({ listener: anyToJson(r.any), lastUpdated: at(r) })) },
      ],
    };
  }
  const configs: Record<string, unknown>[] = [boot, ...dynamicResourcesDump(resources, includeEds)];
  return { configs };
}

function generatedResources(source: DumpSource): Map<string, Map<string, DumpedResource>> {
  const generated = new ProxyResources(source.config, "sidecar");
  const out = new Map<string, Map<string, DumpedResource>>();
  for (const type of [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]) {
    out.set(type, new Map([...generated.all(type)].map((r) => [r.name, { any: r.any, version: `file-${source.version}`, at: source.createdAt }])));
  }
  return out;
}

/** What this proxy started from: its node, and where its dynamic resources come from. */
function bootstrap(source: DumpSource): Record<string, unknown> {
  const s = source.config.settings;
  const admin = { address: { socketAddress: { address: s.admin.address, portValue: s.admin.port } } };
  if (!source.xds) return { node: { id: `sidecar~${s.outbound.address}~${s.workload.name}.${s.namespace}~${s.namespace}.svc.cluster.local`, cluster: s.workload.cluster }, admin };
  const { node, address, protocol } = source.xds;
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return {
    node: { id: node.id, cluster: node.cluster, metadata: node.metadata, userAgentName: "instio", userAgentVersion: String(node.metadata.ISTIO_VERSION) },
    staticResources: { clusters: [{ name: "xds-grpc", type: "STRICT_DNS", loadAssignment: { clusterName: "xds-grpc", endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: host, portValue: port } } } }] }] } }] },
    dynamicResources: {
      ldsConfig: { ads: {}, resourceApiVersion: "V3" },
      cdsConfig: { ads: {}, resourceApiVersion: "V3" },
      adsConfig: { apiType: protocol === "delta" ? "DELTA_GRPC" : "GRPC", transportApiVersion: "V3", grpcServices: [{ envoyGrpc: { clusterName: "xds-grpc" } }] },
    },
    admin,
  };
}
