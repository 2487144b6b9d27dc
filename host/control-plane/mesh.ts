// The control plane's view of the mesh: Istio config and the Kubernetes
// registry read by the same loader as `instio proxy` (file:line for every
// problem), and each proxy's Envoy resources generated from it, once per kind
// of proxy (namespace, labels, generator) and mesh version.

import { createHash } from "node:crypto";
import { compile, withEndpointsFrom, type CompiledConfig } from "../config/compile.js";
import type { ConfigDiagnostic } from "../config/diagnostics.js";
import { readModel } from "../config/istio.js";
import type { ConfigModel } from "../config/model.js";
import { DiagnosticSink, readSources, type ParseCache, type SourceDocument } from "../config/source.js";
import { EncodeCache, ProxyResources } from "../envoy/generate/resources.js";
import { isKubeDocument, readKubeObjects, type KubeObjects } from "./registry/kube-objects.js";
import { kubeServices } from "./registry/kube-services.js";
import type { ProxyNode } from "./xds/node.js";

export interface MeshSnapshot {
  model: ConfigModel;
  kube: KubeObjects;
  /** Warnings kept with the snapshot (errors reject it). */
  diagnostics: ConfigDiagnostic[];
  /** Everything but the endpoints: when only endpoints change, only EDS is pushed. */
  configDigest: string;
  /** Everything but the endpoints and the VirtualServices: what shapes clusters. When only VirtualServices change, CDS and EDS are kept. */
  clustersDigest: string;
  endpointsDigest: string;
}

export interface MeshPaths {
  /** Istio config: a file or directory (it may hold Kubernetes objects too). */
  config: string | undefined;
  /** Kubernetes objects: Services, EndpointSlices, Pods, Namespaces (Istio resources are read here too). */
  kubeDir: string | undefined;
  /** A live cluster's objects, Istio's CRDs included (registry/kube-cluster.ts). */
  cluster?: ClusterDocuments;
  /** Parsed files kept between loads (only changed files are parsed again). */
  parseCache?: ParseCache;
}

/** Documents from a cluster are named cluster:KIND/NAMESPACE/NAME. */
export const CLUSTER_DOCUMENT_PREFIX = "cluster:";

/** A cluster's objects as documents, able to fall back to an object's last accepted version. */
export interface ClusterDocuments {
  documents(sink: DiagnosticSink): SourceDocument[];
  /** The documents last given made a good mesh. */
  accept(): void;
  /** Serve these objects at their last accepted version until they change; returns those held. */
  holdBack(names: Iterable<string>): string[];
}

export interface MeshLoad {
  snapshot: MeshSnapshot | undefined;
  diagnostics: ConfigDiagnostic[];
  /** Errors of cluster objects served at their last accepted version instead (the snapshot stands without them). */
  heldBack?: ConfigDiagnostic[];
}

/**
 * Reads and validates the mesh; `snapshot` is undefined when anything is an
 * error. Files are all or nothing (a bad edit keeps the last good config), but
 * a cluster object in error is held at its last accepted version, so that one
 * bad VirtualService does not freeze the whole cluster's changes.
 */
export function loadMesh(paths: MeshPaths): MeshLoad {
  const read = (): MeshLoad => {
    const sink = new DiagnosticSink();
    const docs: SourceDocument[] = [];
    for (const path of [paths.config, paths.kubeDir]) if (path !== undefined) docs.push(...readSources(path, sink, paths.parseCache));
    paths.parseCache?.sweep();
    if (paths.cluster) docs.push(...paths.cluster.documents(sink));
    return meshFromDocuments(docs, sink);
  };
  const result = read();
  if (result.snapshot) paths.cluster?.accept();
  if (result.snapshot || !paths.cluster) return result;
  const errors = result.diagnostics.filter((d) => d.severity === "error");
  if (!errors.every((d) => d.file.startsWith(CLUSTER_DOCUMENT_PREFIX))) return result;
  if (paths.cluster.holdBack(new Set(errors.map((d) => d.file))).length === 0) return result;
  const retried = read();
  if (retried.snapshot) paths.cluster.accept();
  return { ...retried, heldBack: errors };
}

/** The mesh from documents already read (a live cluster's objects come this way too). */
export function meshFromDocuments(docs: SourceDocument[], sink: DiagnosticSink): MeshLoad {
  const kubeDocs = docs.filter(isKubeDocument);
  const model = readModel(docs.filter((d) => !isKubeDocument(d)), sink);
  const kube = readKubeObjects(kubeDocs, sink);
  const problems: ConfigDiagnostic[] = [];
  model.services.push(...kubeServices(kube, problems));
  const diagnostics = [...sink.diagnostics, ...problems];
  if (diagnostics.some((d) => d.severity === "error")) return { snapshot: undefined, diagnostics };
  return { snapshot: { model, kube, diagnostics, ...meshDigests(model) }, diagnostics };
}

function meshDigests(model: ConfigModel): { configDigest: string; clustersDigest: string; endpointsDigest: string } {
  // Source positions are left out: a resource moving down a file is not a change.
  const h = (s: string): string => createHash("sha256").update(s).digest("hex");
  const virtualServices = JSON.stringify(model.virtualServices, (key, value: unknown) => (key === "source" ? undefined : value));
  const clusters = JSON.stringify({ ...model, virtualServices: undefined }, (key, value: unknown) => (key === "source" || key === "endpoints" ? undefined : value));
  const endpoints = JSON.stringify(model.services.map((s) => s.endpoints));
  const clustersDigest = h(clusters);
  return { configDigest: h(`${clustersDigest}|${h(virtualServices)}`), clustersDigest, endpointsDigest: h(endpoints) };
}

/**
 * The label keys a proxy's config can depend on: those some selector reads
 * (Sidecar workloadSelector, Gateway selector, a route match's sourceLabels).
 * Proxies that differ only in other labels (app, version, pod-template-hash)
 * share their generated resources.
 */
function selectorKeys(model: ConfigModel): Set<string> {
  const keys = new Set<string>();
  const add = (labels: Record<string, string> | undefined): void => {
    for (const k of Object.keys(labels ?? {})) keys.add(k);
  };
  for (const s of model.sidecars) add(s.workloadSelector);
  for (const g of model.gateways) add(g.selector);
  // A workload's security policies are part of its config (auto mTLS reads PeerAuthentication too).
  for (const p of model.peerAuthentications) add(p.selector);
  for (const p of model.authorizationPolicies) add(p.selector);
  for (const vs of model.virtualServices) {
    for (const route of vs.http) for (const m of route.matches) add(m.sourceLabels);
    for (const route of [...vs.tcp, ...vs.tls]) for (const m of route.matches) add(m.sourceLabels);
  }
  return keys;
}

/** What proxies with the same namespace, selected-on labels and generator share: their resources. */
function proxyClass(node: ProxyNode, labels: Record<string, string>, keys: Set<string>): string {
  return `${node.generator}|${node.namespace}|${JSON.stringify(Object.entries(labels).filter(([k]) => keys.has(k)).sort())}`;
}

export class Mesh {
  private byClass = new Map<string, ProxyResources>();
  /** The classes' resources at the previous version: what the new ones are diffed against. */
  private previousByClass = new Map<string, ProxyResources>();
  private readonly encoded = new EncodeCache();
  private keys: Set<string>;
  /** Whether the last update changed endpoints only (each class then keeps all but its EDS). */
  private endpointsOnly = false;
  /** Whether it changed VirtualServices only (each class then keeps its CDS and EDS). */
  private virtualServicesOnly = false;
  /** Each connected node's class at this version (its labels, its class key). */
  private nodeClasses = new WeakMap<ProxyNode, { key: string; labels: Record<string, string> }>();

  constructor(private current: MeshSnapshot) {
    this.keys = selectorKeys(current.model);
  }

  get snapshot(): MeshSnapshot {
    return this.current;
  }

  update(snapshot: MeshSnapshot): void {
    this.endpointsOnly = snapshot.configDigest === this.current.configDigest;
    this.virtualServicesOnly = !this.endpointsOnly && snapshot.clustersDigest === this.current.clustersDigest && snapshot.endpointsDigest === this.current.endpointsDigest;
    this.current = snapshot;
    this.keys = selectorKeys(snapshot.model);
    this.previousByClass = this.byClass;
    this.byClass = new Map();
    this.nodeClasses = new WeakMap();
    this.encoded.nextGeneration();
  }

  /** The node's labels, else its pod's from the registry (a bootstrap without LABELS). */
  labelsOf(node: ProxyNode): Record<string, string> {
    if (Object.keys(node.labels).length > 0) return node.labels;
    const pod = this.current.kube.pods.find((p) => `${p.name}.${p.namespace}` === node.name);
    return pod?.labels ?? {};
  }

  /** The resources for this proxy at the current mesh version; compiled on first use per proxy class. */
  resourcesFor(node: ProxyNode): ProxyResources {
    let cls = this.nodeClasses.get(node);
    if (!cls) {
      const labels = this.labelsOf(node);
      cls = { key: proxyClass(node, labels, this.keys), labels };
      this.nodeClasses.set(node, cls);
    }
    const { key, labels } = cls;
    const known = this.byClass.get(key);
    if (known) return known;
    const model = this.current.model;
    const classModel = { ...model, settings: { ...model.settings, namespace: node.namespace, labels } };
    const previous = this.previousByClass.get(key);
    let resources: ProxyResources;
    if (previous && this.endpointsOnly) {
      resources = new ProxyResources(withEndpointsFrom(previous.config, classModel), node.generator, this.encoded, { from: previous, keep: "routes" });
    } else {
      const config = compile(classModel, undefined, { everyCluster: true, digests: false });
      resources = new ProxyResources(config, node.generator, this.encoded, previous && this.virtualServicesOnly ? { from: previous, keep: "clusters" } : undefined);
      resources.diagnostics.unshift(...config.diagnostics.filter((d) => d.severity === "error"));
      if (node.generator === "sidecar") resources.diagnostics.push(...unenforcedInboundPolicies(config, model, node.namespace));
    }
    if (node.generator === "sidecar") {
      // Only the current version is ever diffed against: the chain stops here.
      if (previous) previous.predecessor = undefined;
      resources.predecessor = previous;
    }
    this.byClass.set(key, resources);
    return resources;
  }
}

/**
 * The security policies (and the inbound side of WasmPlugins) that select a sidecar which this control plane cannot
 * make it apply yet: no inbound listeners are sent over xDS (istiod's inbound chains with RBAC and Wasm filters), so a
 * sidecar fed by xDS serves its inbound port PERMISSIVE, authorizes every caller and runs plugins on outbound traffic
 * only. Said at each resource, when the proxy connects, rather than left silent.
 */
function unenforcedInboundPolicies(config: CompiledConfig, model: ConfigModel, namespace: string): ConfigDiagnostic[] {
  const out: ConfigDiagnostic[] = [];
  const why = "the control plane sends no inbound listeners yet, so a sidecar it configures does not enforce it";
  for (const p of config.inboundSecurity.authorization) out.push({ ...p.source, path: "spec", severity: "warning", message: `AuthorizationPolicy ${p.namespace}/${p.name} selects this workload, but ${why}` });
  const m = config.inboundSecurity.mtls;
  if (m.mode !== "PERMISSIVE" || m.ports.some(([, mode]) => mode !== "PERMISSIVE")) {
    for (const pa of model.peerAuthentications) {
      if (pa.namespace !== namespace && pa.namespace !== model.settings.rootNamespace) continue;
      out.push({ ...pa.source, path: "spec.mtls", severity: "warning", message: `PeerAuthentication ${pa.namespace}/${pa.name} makes this workload's mTLS ${m.mode}, but ${why} (it accepts mTLS and plaintext)` });
    }
  }
  for (const p of config.wasmPlugins) {
    if (!p.match.some((x) => x.mode !== "CLIENT") && p.match.length > 0) continue;
    out.push({ ...p.source, path: "spec.match", severity: "warning", message: `WasmPlugin ${p.name} applies to this workload's inbound traffic, but ${why} (it runs on outbound traffic only)` });
  }
  return out;
}
