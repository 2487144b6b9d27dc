// What a proxy not configured by Istio YAML starts from. Fed by xDS: its
// settings (listener addresses, admin and agent ports, HTTP limits) with the
// node's namespace, labels and workload, and nothing to route; readiness stays
// 503 until the first complete config replaces it. From an Envoy bootstrap with
// static resources only: those resources, translated.

import { compile, type CompiledConfig } from "../config/compile.js";
import type { ConfigDiagnostic } from "../config/diagnostics.js";
import type { Settings } from "../config/model.js";
import { BootstrapError, type Bootstrap } from "../envoy/bootstrap.js";
import { CLUSTER_TYPE, LISTENER_TYPE } from "../envoy/protos.js";
import type { DumpedResource } from "../envoy/json.js";
import type { NodeIdentity } from "./node-identity.js";
import { Rejected, ResourceSet } from "./resource-set.js";

export function xdsStartingConfig(base: Settings, node: NodeIdentity): CompiledConfig {
  const workload = typeof node.metadata.WORKLOAD_NAME === "string" ? node.metadata.WORKLOAD_NAME : node.podName;
  const settings: Settings = { ...base, namespace: node.namespace, labels: node.labels, workload: { name: workload, cluster: String(node.metadata.CLUSTER_ID) } };
  return compile({ settings, services: [], workloadEntries: [], virtualServices: [], destinationRules: [], sidecars: [], gateways: [], peerAuthentications: [], authorizationPolicies: [], wasmPlugins: [] });
}

/**
 * An Envoy bootstrap's static_resources as a config: translated as xDS
 * resources are (the same errors, placed at the bootstrap's file:line), with no
 * control plane. Throws BootstrapError with every problem found.
 */
export function staticBootstrapConfig(bootstrap: Bootstrap, settings: Settings): { config: CompiledConfig; resources: Map<string, Map<string, DumpedResource>> } {
  const set = new ResourceSet();
  const problems: ConfigDiagnostic[] = [];
  // The resources as the bootstrap gave them, by name, for /config_dump.
  const dumped = new Map<string, Map<string, DumpedResource>>();
  const at = new Date();
  for (const [type, kind, resources] of [[CLUSTER_TYPE, "clusters", bootstrap.clusters], [LISTENER_TYPE, "listeners", bootstrap.listeners]] as const) {
    try {
      const { names } = set.apply(type, resources, [], true);
      dumped.set(type, new Map(names.map((name, i) => [name, { any: resources[i]!, version: "static", at }])));
    } catch (err) {
      if (!(err instanceof Rejected)) throw err;
      problems.push({ ...bootstrap.locate(kind, err.index ?? 0, err.path ?? ""), message: err.reason ?? err.message });
    }
  }
  if (problems.length === 0 && !set.warm()) {
    const missing = [...set.endpointNames().filter((n) => !set.endpoints.has(n)).map((n) => `cluster endpoints ${n} (EDS)`), ...set.routeNames().filter((n) => !set.routes.has(n)).map((n) => `route configuration ${n} (RDS)`)];
    problems.push({ file: bootstrap.file, line: 1, column: 1, path: "static_resources", severity: "error", message: `${missing.join(", ")} can only come from a control plane: give dynamic_resources, or use STATIC clusters and inline route_config` });
  }
  if (problems.length > 0) throw new BootstrapError(problems);
  return { config: set.build(settings), resources: dumped };
}
