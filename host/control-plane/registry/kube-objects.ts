// Kubernetes objects the registry reads — Service, EndpointSlice, Pod, Namespace —
// from YAML documents (a --kube-dir) or from the API server (JSON, same shapes).
//
// The API server has validated these objects against their schemas already, and
// they carry many fields the mesh does not read (status, managedFields, a pod's
// containers): unknown fields are not errors here, as they are for Istio
// resources. What the registry does read is type-checked, with file:line.

import type { Location } from "../../config/diagnostics.js";
import { FieldReader, type Obj } from "../../config/fields.js";
import type { DiagnosticSink, SourceDocument } from "../../config/source.js";

export interface KubeServicePort {
  name: string;
  port: number;
  /** A number, a container port name, or undefined (the port itself). */
  targetPort: number | string | undefined;
  /** TCP, UDP or SCTP (Kubernetes' transport protocol, not Istio's). */
  protocol: string;
  appProtocol: string | undefined;
}

export interface KubeService {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Cluster IPs; empty for a headless service ("None"). */
  clusterIPs: string[];
  headless: boolean;
  /** ExternalName services: the DNS name they alias. */
  externalName: string | undefined;
  ports: KubeServicePort[];
  source: Location;
}

export interface KubeSliceEndpoint {
  addresses: string[];
  /** conditions.ready; unset means ready (Kubernetes' and Istio's reading). */
  ready: boolean;
  terminating: boolean;
  /** The pod behind the endpoint, when targetRef names one. */
  pod: { name: string; namespace: string } | undefined;
}

export interface KubeEndpointSlice {
  name: string;
  namespace: string;
  /** The kubernetes.io/service-name label: the Service these endpoints belong to. */
  service: string;
  addressType: string;
  /** Port numbers by the Service port's name ("" for an unnamed port). */
  ports: { name: string; port: number }[];
  endpoints: KubeSliceEndpoint[];
  source: Location;
}

export interface KubePod {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  serviceAccount: string;
  ips: string[];
  source: Location;
}

export interface KubeNamespace {
  name: string;
  labels: Record<string, string>;
  source: Location;
}

export interface KubeObjects {
  services: KubeService[];
  slices: KubeEndpointSlice[];
  pods: KubePod[];
  namespaces: KubeNamespace[];
}

export function emptyKubeObjects(): KubeObjects {
  return { services: [], slices: [], pods: [], namespaces: [] };
}

/** The Kubernetes kinds the registry reads, by apiVersion/kind. */
const KINDS: Record<string, keyof KubeObjects> = {
  "v1/Service": "services",
  "discovery.k8s.io/v1/EndpointSlice": "slices",
  "v1/Pod": "pods",
  "v1/Namespace": "namespaces",
};

/** Is this document one of the Kubernetes kinds the registry reads? */
export function isKubeDocument(doc: SourceDocument): boolean {
  const v = doc.value as Obj | null;
  return typeof v === "object" && v !== null && typeof v.apiVersion === "string" && typeof v.kind === "string" && `${v.apiVersion}/${v.kind}` in KINDS;
}

/** Reads every Kubernetes document; a document that is not one of the kinds read is an error. */
export function readKubeObjects(docs: SourceDocument[], sink: DiagnosticSink): KubeObjects {
  const out = emptyKubeObjects();
  for (const doc of docs) {
    const r = new FieldReader(sink, doc);
    const top = doc.value as Obj;
    if (typeof top !== "object" || top === null || Array.isArray(top)) {
      r.error([], "must be a Kubernetes object");
      continue;
    }
    if (top.kind === "List" && Array.isArray(top.items)) {
      r.error(["kind"], "a List: write its items as separate documents");
      continue;
    }
    const key = KINDS[`${String(top.apiVersion)}/${String(top.kind)}`];
    if (!key) {
      r.error(["kind"], `${String(top.apiVersion)} ${String(top.kind)} is not read by the registry; expected ${Object.keys(KINDS).join(", ")}`);
      continue;
    }
    const read = { services: readService, slices: readSlice, pods: readPod, namespaces: readNamespace }[key] as (r: FieldReader, top: Obj) => never;
    const value = read(r, top);
    if (value) (out[key] as unknown[]).push(value);
  }
  return out;
}

interface Meta {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

function readMeta(r: FieldReader, top: Obj, namespaced: boolean): Meta | undefined {
  const meta = top.metadata as Obj | undefined;
  if (typeof meta !== "object" || meta === null) {
    r.error(["metadata"], "is required");
    return undefined;
  }
  const name = r.string(meta.name, ["metadata", "name"], true);
  if (!name) return undefined;
  const namespace = namespaced ? r.string(meta.namespace, ["metadata", "namespace"]) || "default" : "";
  return { name, namespace, labels: r.stringMap(meta.labels, ["metadata", "labels"]), annotations: r.stringMap(meta.annotations, ["metadata", "annotations"]) };
}

function readService(r: FieldReader, top: Obj): KubeService | undefined {
  const meta = readMeta(r, top, true);
  const spec = top.spec as Obj | undefined;
  if (!meta) return undefined;
  if (typeof spec !== "object" || spec === null) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const type = r.string(spec.type, ["spec", "type"]) ?? "ClusterIP";
  const clusterIP = r.string(spec.clusterIP, ["spec", "clusterIP"]);
  const clusterIPs = spec.clusterIPs !== undefined ? r.stringList(spec.clusterIPs, ["spec", "clusterIPs"]) : clusterIP !== undefined ? [clusterIP] : [];
  const headless = clusterIP === "None" || clusterIPs.includes("None");
  const ports: KubeServicePort[] = [];
  r.list(spec.ports, ["spec", "ports"]).forEach((p, i) => {
    const at = ["spec", "ports", i];
    if (typeof p !== "object" || p === null) return r.error(at, "must be an object");
    const port = p as Obj;
    const number = r.integer(port.port, [...at, "port"], 1, 65535, true);
    if (number === undefined) return;
    const target = port.targetPort;
    const targetPort = typeof target === "string" && /^\d+$/.test(target) ? Number(target) : typeof target === "number" || typeof target === "string" ? target : undefined;
    if (typeof targetPort === "number" && (targetPort < 1 || targetPort > 65535)) r.error([...at, "targetPort"], `must be a port number 1-65535, got ${targetPort}`);
    ports.push({ name: r.string(port.name, [...at, "name"]) ?? "", port: number, targetPort, protocol: r.string(port.protocol, [...at, "protocol"]) ?? "TCP", appProtocol: r.string(port.appProtocol, [...at, "appProtocol"]) });
  });
  const externalName = type === "ExternalName" ? r.string(spec.externalName, ["spec", "externalName"], true) : undefined;
  return { ...meta, clusterIPs: headless ? [] : clusterIPs.filter((ip) => ip !== ""), headless, externalName, ports, source: r.doc.locate([]) };
}

function readSlice(r: FieldReader, top: Obj): KubeEndpointSlice | undefined {
  const meta = readMeta(r, top, true);
  if (!meta) return undefined;
  const service = meta.labels["kubernetes.io/service-name"];
  if (!service) {
    r.error(["metadata", "labels"], `an EndpointSlice needs the label kubernetes.io/service-name naming its Service`);
    return undefined;
  }
  const addressType = r.string(top.addressType, ["addressType"], true) ?? "IPv4";
  const ports: KubeEndpointSlice["ports"] = [];
  r.list(top.ports, ["ports"]).forEach((p, i) => {
    if (typeof p !== "object" || p === null) return r.error(["ports", i], "must be an object");
    const port = r.integer((p as Obj).port, ["ports", i, "port"], 1, 65535);
    if (port !== undefined) ports.push({ name: r.string((p as Obj).name, ["ports", i, "name"]) ?? "", port });
  });
  const endpoints: KubeSliceEndpoint[] = [];
  r.list(top.endpoints, ["endpoints"]).forEach((e, i) => {
    const at = ["endpoints", i];
    if (typeof e !== "object" || e === null) return r.error(at, "must be an object");
    const ep = e as Obj;
    const addresses = r.stringList(ep.addresses, [...at, "addresses"]);
    if (addresses.length === 0) return r.error([...at, "addresses"], "at least one address is required");
    const conditions = (typeof ep.conditions === "object" && ep.conditions !== null ? ep.conditions : {}) as Obj;
    const ref = ep.targetRef as Obj | undefined;
    const pod = typeof ref === "object" && ref !== null && ref.kind === "Pod" && typeof ref.name === "string" ? { name: ref.name, namespace: typeof ref.namespace === "string" ? ref.namespace : meta.namespace } : undefined;
    endpoints.push({
      addresses,
      ready: r.boolean(conditions.ready, [...at, "conditions", "ready"]) ?? true,
      terminating: r.boolean(conditions.terminating, [...at, "conditions", "terminating"]) ?? false,
      pod,
    });
  });
  return { name: meta.name, namespace: meta.namespace, service, addressType, ports, endpoints, source: r.doc.locate([]) };
}

function readPod(r: FieldReader, top: Obj): KubePod | undefined {
  const meta = readMeta(r, top, true);
  if (!meta) return undefined;
  const spec = (typeof top.spec === "object" && top.spec !== null ? top.spec : {}) as Obj;
  const status = (typeof top.status === "object" && top.status !== null ? top.status : {}) as Obj;
  const ips = Array.isArray(status.podIPs)
    ? (status.podIPs as unknown[]).flatMap((p, i) => r.string((p as Obj | null)?.ip, ["status", "podIPs", i, "ip"]) ?? [])
    : [r.string(status.podIP, ["status", "podIP"])].filter((ip): ip is string => !!ip);
  return { name: meta.name, namespace: meta.namespace, labels: meta.labels, serviceAccount: r.string(spec.serviceAccountName, ["spec", "serviceAccountName"]) || "default", ips, source: r.doc.locate([]) };
}

function readNamespace(r: FieldReader, top: Obj): KubeNamespace | undefined {
  const meta = readMeta(r, top, false);
  return meta && { name: meta.name, labels: meta.labels, source: r.doc.locate([]) };
}
