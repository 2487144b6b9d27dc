// What a proxy fed by xDS serves before the control plane's first config: its
// settings (listener addresses, admin and agent ports, HTTP limits) with the
// node's namespace, labels and workload, and nothing to route. Readiness stays
// 503 until the first complete config replaces it.

import { compile, type CompiledConfig } from "../config/compile.js";
import type { Settings } from "../config/model.js";
import type { NodeIdentity } from "./node-identity.js";

export function xdsStartingConfig(base: Settings, node: NodeIdentity): CompiledConfig {
  const workload = typeof node.metadata.WORKLOAD_NAME === "string" ? node.metadata.WORKLOAD_NAME : node.podName;
  const settings: Settings = { ...base, namespace: node.namespace, labels: node.labels, workload: { name: workload, cluster: String(node.metadata.CLUSTER_ID) } };
  return compile({ settings, services: [], workloadEntries: [], virtualServices: [], destinationRules: [], sidecars: [], gateways: [] });
}
