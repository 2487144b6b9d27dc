// Kubernetes Services and EndpointSlices → the mesh's services, as istiod's
// Kubernetes registry builds them: host NAME.NAMESPACE.svc.cluster.local, the
// service's ports with Istio's protocol selection, and one endpoint per ready
// address with its pod's labels and service account.

import type { ConfigDiagnostic } from "../../config/diagnostics.js";
import { CLUSTER_DOMAIN } from "../../config/hosts.js";
import { SERVICE_PROTOCOLS } from "../../config/istio.js";
import type { ServiceModel, ServicePort, WorkloadEndpoint } from "../../config/model.js";
import type { KubeObjects, KubePod, KubeService, KubeServicePort } from "./kube-objects.js";

/** Ports whose unnamed services Istio treats as TCP (SMTP, DNS, MySQL, MongoDB: server-first protocols). */
const SERVER_FIRST_PORTS = new Set([25, 53, 3306, 27017]);

/** appProtocol values Kubernetes standardises, as Istio maps them (pkg/config/kube/conversion.go). */
const KUBERNETES_APP_PROTOCOLS: Record<string, string> = { "kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS" };

/**
 * Istio's protocol for a Service port: appProtocol when set, else the port name's
 * prefix before "-" ("grpc-web" first); unknown or unnamed ports are left to
 * protocol detection (""), except the server-first ports, which are TCP.
 */
export function portProtocol(port: KubeServicePort): string {
  if (port.appProtocol !== undefined) {
    const known = KUBERNETES_APP_PROTOCOLS[port.appProtocol.toLowerCase()] ?? port.appProtocol.toUpperCase();
    if (SERVICE_PROTOCOLS.includes(known)) return known;
  }
  const name = port.name.toLowerCase();
  const prefix = name.startsWith("grpc-web") ? "GRPC-WEB" : (name.split("-")[0] ?? "").toUpperCase();
  if (prefix !== "" && SERVICE_PROTOCOLS.includes(prefix)) return prefix;
  return SERVER_FIRST_PORTS.has(port.port) ? "TCP" : "";
}

export function serviceHost(name: string, namespace: string): string {
  return `${name}.${namespace}.svc.${CLUSTER_DOMAIN}`;
}

/**
 * The registry's services. `problems` receives what Istio would skip with a
 * warning (an EndpointSlice for no Service, a UDP port); nothing here is fatal.
 */
export function kubeServices(objects: KubeObjects, problems: ConfigDiagnostic[]): ServiceModel[] {
  const pods = new Map<string, KubePod>();
  for (const pod of objects.pods) pods.set(`${pod.namespace}/${pod.name}`, pod);
  const podsByIp = new Map<string, KubePod>();
  for (const pod of objects.pods) for (const ip of pod.ips) podsByIp.set(ip, pod);
  const slicesByService = new Map<string, KubeObjects["slices"]>();
  for (const slice of objects.slices) {
    const key = `${slice.namespace}/${slice.service}`;
    const list = slicesByService.get(key) ?? [];
    list.push(slice);
    slicesByService.set(key, list);
  }
  const services: ServiceModel[] = [];
  const known = new Set<string>();
  for (const svc of objects.services) {
    known.add(`${svc.namespace}/${svc.name}`);
    const service = toService(svc, slicesByService.get(`${svc.namespace}/${svc.name}`) ?? [], pods, podsByIp, problems);
    if (service) services.push(service);
  }
  for (const [key, slices] of slicesByService) {
    if (!known.has(key)) problems.push({ ...slices[0]!.source, path: "metadata.labels", severity: "warning", message: `EndpointSlice ${slices[0]!.namespace}/${slices[0]!.name}: no Service ${key}; its endpoints are not used` });
  }
  return services;
}

function toService(svc: KubeService, slices: KubeObjects["slices"], pods: Map<string, KubePod>, podsByIp: Map<string, KubePod>, problems: ConfigDiagnostic[]): ServiceModel | undefined {
  const ports: ServicePort[] = [];
  for (const p of svc.ports) {
    if (p.protocol !== "TCP") {
      problems.push({ ...svc.source, path: "spec.ports", severity: "warning", message: `Service ${svc.namespace}/${svc.name} port ${p.port}: ${p.protocol} is not proxied (Istio proxies TCP only)` });
      continue;
    }
    ports.push({ number: p.port, name: p.name, protocol: portProtocol(p), targetPort: typeof p.targetPort === "number" ? p.targetPort : undefined });
  }
  if (ports.length === 0) return undefined;
  const host = serviceHost(svc.name, svc.namespace);
  const meta = { kind: "Service", name: svc.name, namespace: svc.namespace, exportTo: exportTo(svc), source: svc.source };
  if (svc.externalName !== undefined) {
    // An ExternalName service is a DNS alias: Istio resolves it as a DNS ServiceEntry would.
    return { ...meta, hosts: [host], addresses: [], ports, resolution: "DNS", location: "MESH_EXTERNAL", endpoints: [{ address: svc.externalName, ports: {}, labels: {} }], workloadSelector: undefined };
  }
  const endpoints: WorkloadEndpoint[] = [];
  const seen = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType === "FQDN") continue; // Istio does not read FQDN slices
    for (const ep of slice.endpoints) {
      // Only ready endpoints carry traffic; terminating ones are never sent (endpointslice.go).
      if (!ep.ready || ep.terminating) continue;
      const address = ep.addresses[0]!;
      const pod = (ep.pod && pods.get(`${ep.pod.namespace}/${ep.pod.name}`)) ?? podsByIp.get(address);
      const portsByName: Record<string, number> = {};
      for (const sp of svc.ports) {
        const found = slice.ports.find((p) => p.name === sp.name);
        if (found) portsByName[sp.name] = found.port;
      }
      const key = `${address}|${JSON.stringify(portsByName)}`;
      if (seen.has(key)) continue; // the same endpoint in two slices while they are being rebalanced
      seen.add(key);
      endpoints.push({ address, ports: portsByName, labels: pod?.labels ?? {}, serviceAccount: pod?.serviceAccount });
    }
  }
  return { ...meta, hosts: [host], addresses: svc.clusterIPs, ports, resolution: svc.headless ? "NONE" : "STATIC", location: "MESH_INTERNAL", endpoints, workloadSelector: undefined };
}

/** networking.istio.io/exportTo on the Service, as Istio reads it ("." and namespaces, comma-separated). */
function exportTo(svc: KubeService): string[] {
  const value = svc.annotations["networking.istio.io/exportTo"];
  return value ? value.split(",").map((s) => s.trim()).filter(Boolean) : [];
}
