// Who is asking: the xDS node (id and metadata) as pilot-agent and gRPC
// bootstraps send it, read as istiod reads it (pilot/pkg/model/context.go
// ParseServiceNodeWithMetadata, pkg/model/proxy.go NodeMetadata).

import type { Generator } from "../../envoy/generate/routes.js";
import { structToJson } from "../../envoy/protos.js";

export interface ProxyNode {
  /** The node id as sent: TYPE~IP~POD.NAMESPACE~DNS_DOMAIN. */
  id: string;
  type: string;
  ip: string;
  /** POD.NAMESPACE, what istioctl proxy-status names the proxy by. */
  name: string;
  namespace: string;
  labels: Record<string, string>;
  serviceAccount: string | undefined;
  istioVersion: string;
  clusterId: string;
  /** "grpc" (metadata GENERATOR: grpc) selects the proxyless generator, as istiod's grpcgen. */
  generator: Generator;
  metadata: Record<string, unknown>;
}

const NODE_TYPES = ["sidecar", "router", "waypoint", "ztunnel"];

/** Reads a decoded envoy.config.core.v3.Node; throws a message for the client when it cannot be used. */
export function parseNode(node: unknown): ProxyNode {
  const n = node as { id?: unknown; metadata?: unknown } | undefined;
  if (!n || typeof n.id !== "string" || n.id === "") throw new Error("missing node information");
  const parts = n.id.split("~");
  if (parts.length !== 4 || !NODE_TYPES.includes(parts[0]!)) throw new Error(`node id "${n.id.slice(0, 200)}" is not TYPE~IP~POD.NAMESPACE~DOMAIN with TYPE one of ${NODE_TYPES.join(", ")}`);
  const [type, ip, name] = parts as [string, string, string, string];
  const metadata = structToJson(n.metadata);
  const str = (key: string): string | undefined => (typeof metadata[key] === "string" ? (metadata[key] as string) : undefined);
  const namespace = str("NAMESPACE") ?? (name.includes(".") ? name.slice(name.lastIndexOf(".") + 1) : "");
  if (namespace === "") throw new Error(`node ${n.id.slice(0, 200)}: no namespace (metadata NAMESPACE, or POD.NAMESPACE in the id)`);
  const labels: Record<string, string> = {};
  const rawLabels = metadata.LABELS;
  if (rawLabels && typeof rawLabels === "object") for (const [k, v] of Object.entries(rawLabels)) if (typeof v === "string") labels[k] = v;
  return {
    id: n.id,
    type,
    ip: str("INSTANCE_IPS")?.split(",")[0] ?? ip,
    name,
    namespace,
    labels,
    serviceAccount: str("SERVICE_ACCOUNT"),
    istioVersion: str("ISTIO_VERSION") ?? "",
    clusterId: str("CLUSTER_ID") ?? "Kubernetes",
    generator: str("GENERATOR") === "grpc" ? "grpc" : "sidecar",
    metadata,
  };
}
