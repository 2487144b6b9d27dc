// Who this sidecar is, told to the control plane as pilot-agent tells istiod:
// the node id sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local and Istio's
// node metadata (pkg/model/proxy.go NodeMetadata), from flags or from the
// environment Istio's injector sets (POD_NAME, POD_NAMESPACE, INSTANCE_IP,
// SERVICE_ACCOUNT, ISTIO_META_*).

import { jsonToStruct } from "../envoy/protos.js";
import { VERSION } from "../version.js";

export interface NodeIdentityInput {
  podName?: string;
  namespace?: string;
  ip?: string;
  serviceAccount?: string;
  labels?: Record<string, string>;
  clusterId?: string;
}

export interface NodeIdentity {
  id: string;
  /** Envoy's node.cluster: the workload's service cluster, as pilot-agent names it (APP.NAMESPACE). */
  cluster: string;
  namespace: string;
  podName: string;
  ip: string;
  labels: Record<string, string>;
  metadata: Record<string, unknown>;
}

/** ISTIO_META_FOO_BAR=x → FOO_BAR: x, as pilot-agent copies them into the metadata. */
function istioMetaFromEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith("ISTIO_META_") && v !== undefined) out[k.slice("ISTIO_META_".length)] = v;
  return out;
}

/** Labels given as "a=b,c=d" (ISTIO_METAJSON_LABELS carries JSON instead). */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`label "${pair}" is not NAME=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export function nodeIdentity(input: NodeIdentityInput, env: NodeJS.ProcessEnv = process.env): NodeIdentity {
  const namespace = input.namespace ?? env.POD_NAMESPACE ?? "default";
  const podName = input.podName ?? env.POD_NAME ?? env.HOSTNAME ?? "instio";
  const ip = input.ip ?? env.INSTANCE_IP ?? "127.0.0.1";
  const meta = istioMetaFromEnv(env);
  let labels = input.labels;
  if (!labels && env.ISTIO_METAJSON_LABELS) {
    try {
      labels = JSON.parse(env.ISTIO_METAJSON_LABELS) as Record<string, string>;
    } catch {
      throw new Error("ISTIO_METAJSON_LABELS is not JSON");
    }
  }
  labels ??= {};
  const serviceAccount = input.serviceAccount ?? env.SERVICE_ACCOUNT ?? "default";
  const clusterId = input.clusterId ?? meta.CLUSTER_ID ?? "Kubernetes";
  const metadata: Record<string, unknown> = {
    ...meta,
    NAMESPACE: namespace,
    NAME: podName,
    INSTANCE_IPS: ip,
    SERVICE_ACCOUNT: serviceAccount,
    LABELS: labels,
    CLUSTER_ID: clusterId,
    ISTIO_VERSION: meta.ISTIO_VERSION ?? VERSION,
    // What this proxy is: the control plane answers with the sidecar generator.
    INSTIO: "true",
  };
  const app = labels.app ?? labels["app.kubernetes.io/name"] ?? podName;
  return { id: `sidecar~${ip}~${podName}.${namespace}~${namespace}.svc.cluster.local`, cluster: `${app}.${namespace}`, namespace, podName, ip, labels, metadata };
}

/** A bootstrap's node (id, cluster, metadata) over the identity from flags and environment. */
export function withBootstrapNode(base: NodeIdentity, node: { id?: string; cluster?: string; metadata: Record<string, unknown> }): NodeIdentity {
  const metadata = { ...base.metadata, ...node.metadata };
  const labels = metadata.LABELS && typeof metadata.LABELS === "object" ? (metadata.LABELS as Record<string, string>) : base.labels;
  const namespace = typeof metadata.NAMESPACE === "string" ? metadata.NAMESPACE : base.namespace;
  return { ...base, id: node.id ?? base.id, cluster: node.cluster ?? base.cluster, namespace, labels, metadata: { ...metadata, NAMESPACE: namespace, LABELS: labels } };
}

/** The envoy.config.core.v3.Node the ADS requests carry. */
export function nodeMessage(node: NodeIdentity): Record<string, unknown> {
  return { id: node.id, cluster: node.cluster, metadata: jsonToStruct(node.metadata), user_agent_name: "instio", user_agent_version: String(node.metadata.ISTIO_VERSION) };
}
