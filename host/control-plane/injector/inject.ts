// Sidecar injection, as Istio's injector shapes a pod (pkg/kube/inject and its
// injection template), with instio's containers: `instio-init` installs the
// capture rules (`instio iptables` with Istio's flags, from the pod's
// traffic.sidecar.istio.io annotations), and `instio-proxy` takes its config
// from the control plane and its certificate from the control plane's CA.
//
//   native (default; Kubernetes 1.28+): instio-proxy is an init container
//     with restartPolicy: Always, right after instio-init and before the pod's
//     own init containers; its startup probe holds the app containers until the
//     sidecar is ready, and it outlives them (Jobs complete).
//   classic (sidecar.istio.io/nativeSidecar: "false", or native: false for
//     older clusters): instio-proxy is the first container, and a postStart
//     hook (`instio wait`) holds the next containers until it is ready
//     (holdApplicationUntilProxyStarts).
//
// Pods that opted out, host-network pods, pods in Kubernetes' own namespaces
// and pods already injected are left alone, each with the reason.

import { canonicalRevision, canonicalService } from "../../config/hosts.js";
import { VERSION } from "../../version.js";

/** A Kubernetes object as parsed from YAML or JSON. */
export type KubeObject = Record<string, unknown>;

export interface InjectOptions {
  /** The image of both containers. */
  image: string;
  /** The control plane's service address: ADS on 15010, the CA on 15012. */
  controlPlane: string;
  /** Native sidecars (Kubernetes 1.28+); a pod's sidecar.istio.io/nativeSidecar annotation overrides it. */
  native: boolean;
  /** istio.io/rev, as Istio's injector records it. */
  revision: string;
}

export function defaultInjectOptions(): InjectOptions {
  // istiod's Service name: the control plane serves as istiod (ca/ca-service.ts ISTIOD_NAME), so manifests and sidecars need no other.
  return { image: `instio:${VERSION}`, controlPlane: "istiod.istio-system.svc", native: true, revision: "default" };
}

/** Istio's ignored namespaces (pkg/kube/inject/initializer.go). */
const IGNORED_NAMESPACES = new Set(["kube-system", "kube-public", "kube-node-lease", "local-path-storage"]);
export const STATUS_ANNOTATION = "sidecar.istio.io/status";
const INJECT = "sidecar.istio.io/inject";
const PROXY_UID = 1337;
const STATUS_PORT = 15020;

export type InjectionDecision = { inject: true } | { inject: false; reason: string };

/**
 * Whether a pod gets a sidecar (Istio's injectRequired, with the webhook's selectors folded in): the label
 * sidecar.istio.io/inject, else the annotation, decides when "true" or "false"; else the namespace's
 * istio-injection label when the namespace is known (enabled: inject), else inject (the caller asked).
 */
export function injectionRequired(meta: KubeObject, spec: KubeObject, namespace: string, namespaceLabels?: Record<string, string>): InjectionDecision {
  if (spec.hostNetwork === true) return { inject: false, reason: "the pod uses the host's network" };
  if (IGNORED_NAMESPACES.has(namespace)) return { inject: false, reason: `namespace ${namespace} is never injected` };
  const annotations = strings(meta.annotations);
  if (annotations[STATUS_ANNOTATION] !== undefined) return { inject: false, reason: `already injected (${STATUS_ANNOTATION} is set)` };
  const choice = strings(meta.labels)[INJECT] ?? annotations[INJECT];
  if (choice?.toLowerCase() === "false") return { inject: false, reason: `${INJECT} is "false"` };
  if (choice?.toLowerCase() === "true") return { inject: true };
  if (namespaceLabels !== undefined && namespaceLabels["istio-injection"] !== "enabled") return { inject: false, reason: `namespace ${namespace} is not labelled istio-injection=enabled` };
  return { inject: true };
}

/** A map of strings from untrusted input: anything else reads as empty, and non-string values are dropped. */
function strings(value: unknown): Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => typeof v === "string")) as Record<string, string>;
}

/** A list of objects from untrusted input (containers, ports, volumes): anything else reads as empty. */
function objects(value: unknown): KubeObject[] {
  return Array.isArray(value) ? (value.filter((v) => v !== null && typeof v === "object" && !Array.isArray(v)) as KubeObject[]) : [];
}

/** The pod's name, or its generateName's stem ("reviews-v1-" → "reviews-v1"), "" when it has neither. */
function podName(meta: KubeObject): string {
  return String(meta.generateName ?? meta.name ?? "").replace(/-$/, "");
}

/** Istio's excludeInboundPort: the user's ports, then the status port unless listed or 0. */
function excludeInboundPorts(user: string | undefined): string {
  const ports = (user ?? "").split(",");
  if (ports.includes(String(STATUS_PORT))) return `15090,15021,${user}`;
  return ["15090", "15021", ...ports.map((p) => p.trim()).filter((p) => p !== ""), String(STATUS_PORT)].join(",");
}

/** instio-init's arguments: `instio iptables` with Istio's flags, in Istio's order. */
export function captureArgs(annotations: Record<string, string>): string[] {
  const a = (name: string, fallback: string): string => annotations[`traffic.sidecar.istio.io/${name}`] ?? fallback;
  const args = ["iptables", "-p", "15001", "-z", "15006", "-u", String(PROXY_UID), "-m", annotations["sidecar.istio.io/interceptionMode"] ?? "REDIRECT", "-i", a("includeOutboundIPRanges", "*"), "-x", a("excludeOutboundIPRanges", ""), "-b", a("includeInboundPorts", "*"), "-d", excludeInboundPorts(annotations["traffic.sidecar.istio.io/excludeInboundPorts"])];
  if (annotations["traffic.sidecar.istio.io/includeOutboundPorts"] !== undefined) args.push("-q", annotations["traffic.sidecar.istio.io/includeOutboundPorts"]);
  if (annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] !== undefined) args.push("-o", annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]);
  const reroute = annotations["istio.io/reroute-virtual-interfaces"] ?? annotations["traffic.sidecar.istio.io/kubevirtInterfaces"];
  if (reroute !== undefined) args.push("-k", reroute);
  if (annotations["traffic.sidecar.istio.io/excludeInterfaces"] !== undefined) args.push("-c", annotations["traffic.sidecar.istio.io/excludeInterfaces"]);
  return args;
}

/** Istio's resources template: any proxyCPU/proxyMemory(/Limit) annotation replaces the defaults entirely. */
function resources(annotations: Record<string, string>): KubeObject {
  const get = (name: string): string | undefined => annotations[`sidecar.istio.io/${name}`];
  const [cpu, memory, cpuLimit, memoryLimit] = [get("proxyCPU"), get("proxyMemory"), get("proxyCPULimit"), get("proxyMemoryLimit")];
  if (cpu === undefined && memory === undefined && cpuLimit === undefined && memoryLimit === undefined) return { limits: { cpu: "2", memory: "1Gi" }, requests: { cpu: "100m", memory: "128Mi" } };
  const out: KubeObject = {};
  if (cpu !== undefined || memory !== undefined) out.requests = { ...(cpu !== undefined ? { cpu } : {}), ...(memory !== undefined ? { memory } : {}) };
  if (cpuLimit !== undefined || memoryLimit !== undefined) out.limits = { ...(cpuLimit !== undefined ? { cpu: cpuLimit } : {}), ...(memoryLimit !== undefined ? { memory: memoryLimit } : {}) };
  return out;
}

const fieldRef = (name: string, path: string): KubeObject => ({ name, valueFrom: { fieldRef: { fieldPath: path } } });

/** The volumes instio-proxy mounts: the CA's root, the service-account token for the CA, pod info, a writable dir. */
const VOLUMES: KubeObject[] = [
  { name: "instio-data", emptyDir: {} },
  { name: "istio-podinfo", downwardAPI: { items: [{ path: "labels", fieldRef: { fieldPath: "metadata.labels" } }, { path: "annotations", fieldRef: { fieldPath: "metadata.annotations" } }] } },
  { name: "istio-token", projected: { sources: [{ serviceAccountToken: { audience: "istio-ca", expirationSeconds: 43200, path: "istio-token" } }] } },
  { name: "istiod-ca-cert", configMap: { name: "istio-ca-root-cert" } },
];
const MOUNTS: KubeObject[] = [
  { name: "instio-data", mountPath: "/var/lib/instio" },
  { name: "istio-podinfo", mountPath: "/etc/istio/pod" },
  { name: "istio-token", mountPath: "/var/run/secrets/tokens" },
  { name: "istiod-ca-cert", mountPath: "/var/run/secrets/istio" },
];
const READY_PROBE = { httpGet: { path: "/healthz/ready", port: 15021 } };

function initContainer(o: InjectOptions, annotations: Record<string, string>): KubeObject {
  return {
    name: "instio-init",
    image: o.image,
    args: captureArgs(annotations),
    resources: resources(annotations),
    securityContext: { allowPrivilegeEscalation: false, capabilities: { add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] }, privileged: false, readOnlyRootFilesystem: false, runAsGroup: 0, runAsNonRoot: false, runAsUser: 0 },
  };
}

function proxyContainer(o: InjectOptions, meta: KubeObject, spec: KubeObject, native: boolean): KubeObject {
  const annotations = strings(meta.annotations);
  const labels = strings(meta.labels);
  const apps = objects(spec.containers).map((c) => String(c.name));
  const ports = objects(spec.containers).flatMap((c) => objects(c.ports));
  const workload = podName(meta) || labels.app || "unknown";
  const env: KubeObject[] = [
    { name: "CA_ADDR", value: `${o.controlPlane}:15012` },
    fieldRef("POD_NAME", "metadata.name"),
    fieldRef("POD_NAMESPACE", "metadata.namespace"),
    fieldRef("INSTANCE_IP", "status.podIP"),
    fieldRef("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    fieldRef("HOST_IP", "status.hostIP"),
    { name: "ISTIO_CPU_LIMIT", valueFrom: { resourceFieldRef: { resource: "limits.cpu", divisor: "1" } } },
    { name: "ISTIO_META_POD_PORTS", value: JSON.stringify(ports) },
    { name: "ISTIO_META_APP_CONTAINERS", value: apps.join(",") },
    { name: "ISTIO_META_CLUSTER_ID", value: "Kubernetes" },
    fieldRef("ISTIO_META_NODE_NAME", "spec.nodeName"),
    { name: "ISTIO_META_INTERCEPTION_MODE", value: "REDIRECT" },
    { name: "ISTIO_META_WORKLOAD_NAME", value: workload },
    { name: "ISTIO_META_MESH_ID", value: "cluster.local" },
    { name: "ISTIO_METAJSON_LABELS", value: JSON.stringify(labels) },
    { name: "TRUST_DOMAIN", value: "cluster.local" },
  ];
  const container: KubeObject = {
    name: "instio-proxy",
    image: o.image,
    args: ["proxy", "--xds", `${o.controlPlane}:15010`, "--ca", `${o.controlPlane}:15012`, "--capture"],
    env,
    ports: [{ containerPort: 15090, name: "http-envoy-prom", protocol: "TCP" }],
    readinessProbe: { ...READY_PROBE, failureThreshold: 4, periodSeconds: 15, timeoutSeconds: 3 },
    resources: resources(annotations),
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, privileged: false, readOnlyRootFilesystem: true, runAsGroup: PROXY_UID, runAsNonRoot: true, runAsUser: PROXY_UID },
    volumeMounts: MOUNTS,
  };
  if (native) {
    container.restartPolicy = "Always";
    // The kubelet starts the next containers once this probe passes: the sidecar is ready before the app.
    container.startupProbe = { ...READY_PROBE, failureThreshold: 600, periodSeconds: 1, timeoutSeconds: 3 };
  } else {
    // holdApplicationUntilProxyStarts: the kubelet runs the next container only after this hook returns.
    container.lifecycle = { postStart: { exec: { command: ["instio", "wait"] } } };
  }
  return container;
}

/** The pod metadata and spec with a sidecar, as Istio's injector writes them (inputs are not changed). */
export function injectPodSpec(meta: KubeObject, spec: KubeObject, o: InjectOptions): { metadata: KubeObject; spec: KubeObject } {
  const annotations = strings(meta.annotations);
  const labels = strings(meta.labels);
  const native = annotations["sidecar.istio.io/nativeSidecar"] === undefined ? o.native : annotations["sidecar.istio.io/nativeSidecar"] !== "false";
  const proxy = proxyContainer(o, meta, spec, native);
  const init = initContainer(o, annotations);
  const containers = objects(spec.containers);
  const userInit = objects(spec.initContainers);
  const status = { initContainers: native ? ["instio-init", "instio-proxy"] : ["instio-init"], containers: native ? null : ["instio-proxy"], volumes: VOLUMES.map((v) => v.name), imagePullSecrets: null, revision: o.revision };
  const firstApp = containers[0]?.name;
  const metadata: KubeObject = {
    ...meta,
    labels: {
      ...labels,
      "security.istio.io/tlsMode": labels["security.istio.io/tlsMode"] ?? "istio",
      "service.istio.io/canonical-name": canonicalService(labels) ?? podName(meta),
      "service.istio.io/canonical-revision": canonicalRevision(labels),
    },
    annotations: {
      ...annotations,
      "istio.io/rev": o.revision,
      ...(firstApp !== undefined ? { "kubectl.kubernetes.io/default-container": String(firstApp), "kubectl.kubernetes.io/default-logs-container": String(firstApp) } : {}),
      "prometheus.io/path": "/stats/prometheus",
      "prometheus.io/port": String(STATUS_PORT),
      "prometheus.io/scrape": "true",
      [STATUS_ANNOTATION]: JSON.stringify(status),
    },
  };
  return {
    metadata,
    spec: {
      ...spec,
      initContainers: native ? [init, proxy, ...userInit] : [...userInit, init],
      containers: native ? containers : [proxy, ...containers],
      volumes: [...objects(spec.volumes), ...VOLUMES],
    },
  };
}
