// An Envoy bootstrap file (YAML or JSON, as `envoy -c` reads it) → what instio
// starts from: the node, the admin address, static listeners and clusters
// (served with no control plane), or dynamic_resources pointing at an ADS
// server. Every field is checked against Envoy's Bootstrap proto and every
// error names file:line:column; the static resources go through the same
// translation as xDS, so what instio cannot serve is an error, not dropped.

import { readFileSync } from "node:fs";
import type { ConfigDiagnostic } from "../config/diagnostics.js";
import { DiagnosticSink, parseSource, type FieldPath, type SourceDocument } from "../config/source.js";
import { MAX_CONFIG_FILE_BYTES } from "../config/files.js";
import { JsonMessageError, messageFromJson } from "./from-json.js";
import { CLUSTER_TYPE, LISTENER_TYPE, messageType, structToJson, TYPE_PREFIX, type AnyMessage } from "./protos.js";

export interface Bootstrap {
  file: string;
  node: { id: string | undefined; cluster: string | undefined; metadata: Record<string, unknown> };
  admin: { address: string; port: number } | undefined;
  /** static_resources, encoded as xDS sends them. */
  listeners: AnyMessage[];
  clusters: AnyMessage[];
  /** dynamic_resources: the ADS server (host:port of the static cluster ads_config names) and its protocol. */
  ads: { address: string; delta: boolean } | undefined;
  /** Where each static resource is in the file, for errors found when it is translated. */
  locate(kind: "listeners" | "clusters", index: number, path: string): ConfigDiagnostic;
}

const BOOTSTRAP_TYPE = `${TYPE_PREFIX}envoy.config.bootstrap.v3.Bootstrap`;

/** The Bootstrap fields instio reads; any other set is an error (it would change what Envoy does). */
const READ = new Set(["node", "admin", "static_resources", "dynamic_resources"]);

/** "a.b[0].c[\"x\"]" (a translation error's path) → ["a", "b", 0, "c", "x"]. */
export function parseFieldPath(path: string): FieldPath {
  const out: FieldPath = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]|\["([^"]*)"\]/g)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else out.push(m[3]!);
  }
  return out;
}

export class BootstrapError extends Error {
  constructor(readonly diagnostics: ConfigDiagnostic[]) {
    super(`${diagnostics.length} error(s) in the bootstrap`);
  }
}

export function readBootstrap(file: string): Bootstrap {
  const sink = new DiagnosticSink();
  let text: string;
  try {
    const bytes = readFileSync(file);
    if (bytes.length > MAX_CONFIG_FILE_BYTES) throw new Error(`larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
    text = bytes.toString("utf8");
  } catch (err) {
    throw new BootstrapError([{ file, line: 1, column: 1, path: "", severity: "error", message: `cannot read the bootstrap: ${(err as Error).message}` }]);
  }
  const docs = parseSource(file, text, sink);
  if (sink.hasErrors) throw new BootstrapError(sink.diagnostics);
  if (docs.length !== 1 || typeof docs[0]!.value !== "object" || docs[0]!.value === null) {
    throw new BootstrapError([{ file, line: 1, column: 1, path: "", severity: "error", message: "a bootstrap is one YAML or JSON object" }]);
  }
  const doc = docs[0]!;
  const error = (path: FieldPath, message: string): void => sink.error(doc, path, message);
  // The whole file against Envoy's Bootstrap: every field name and value type, with its position. What
  // comes out has the protos' field names whichever form the file used, nested Anys encoded.
  let top: Record<string, unknown>;
  try {
    top = messageFromJson(messageType(BOOTSTRAP_TYPE), doc.value, []);
  } catch (err) {
    if (!(err instanceof JsonMessageError)) throw err;
    error(err.path, err.reason);
    throw new BootstrapError(sink.diagnostics);
  }
  for (const key of Object.keys(top)) if (!READ.has(key) && top[key] !== undefined) error([key], "is not supported by instio");

  const node = (top.node ?? {}) as { id?: string; cluster?: string; metadata?: unknown };
  const admin = socketAddress((top.admin as { address?: unknown } | undefined)?.address);
  if (top.admin && !admin) error(["admin", "address"], "the admin interface needs a socket_address with a port_value");
  const staticResources = (top.static_resources ?? {}) as { listeners?: unknown[]; clusters?: unknown[]; secrets?: unknown[] };
  for (const key of Object.keys(staticResources)) if (key !== "listeners" && key !== "clusters") error(["static_resources", key], "is not supported by instio");
  const encode = (typeUrl: string, kind: "listeners" | "clusters"): AnyMessage[] =>
    (staticResources[kind] ?? []).map((fields) => {
      const type = messageType(typeUrl);
      return { type_url: typeUrl, value: type.encode(type.fromObject(fields as Record<string, unknown>)).finish() };
    });
  const listeners = encode(LISTENER_TYPE, "listeners");
  const clusters = encode(CLUSTER_TYPE, "clusters");

  let ads: Bootstrap["ads"];
  const dynamic = top.dynamic_resources as Record<string, unknown> | undefined;
  if (dynamic) ads = adsServer(dynamic, staticResources.clusters ?? [], error);
  // The ADS server's cluster is how Envoy reaches it; instio's ADS client dials it directly. Other static
  // resources beside dynamic ones would be merged with them in Envoy, which instio does not do yet.
  if (ads) {
    const adsCluster = ((dynamic!.ads_config as Record<string, unknown>).grpc_services as { envoy_grpc?: { cluster_name?: string } }[])[0]?.envoy_grpc?.cluster_name;
    if (listeners.length > 0) error(["static_resources", "listeners"], "static listeners beside dynamic_resources are not supported yet");
    (staticResources.clusters ?? []).forEach((c, i) => {
      if ((c as { name?: string }).name !== adsCluster) error(["static_resources", "clusters", i], "static clusters other than the ADS server's beside dynamic_resources are not supported yet");
    });
  }
  if (sink.hasErrors) throw new BootstrapError(sink.diagnostics);
  return {
    file,
    node: { id: node.id, cluster: node.cluster, metadata: structToJson(node.metadata) },
    admin,
    listeners: ads ? [] : listeners,
    clusters: ads ? [] : clusters,
    ads,
    locate: (kind, index, path) => locateIn(doc, ["static_resources", kind, index, ...parseFieldPath(path)]),
  };
}

function locateIn(doc: SourceDocument, path: FieldPath): ConfigDiagnostic {
  return { ...doc.locate(path), path: path.join("."), severity: "error", message: "" };
}

function socketAddress(address: unknown): { address: string; port: number } | undefined {
  const s = (address as { socket_address?: { address?: string; port_value?: number } } | undefined)?.socket_address;
  if (!s || typeof s.port_value !== "number") return undefined;
  return { address: s.address ?? "0.0.0.0", port: s.port_value };
}

/** dynamic_resources → the ADS server's address and protocol; errors for what instio does not follow. */
function adsServer(dynamic: Record<string, unknown>, clusters: unknown[], error: (path: FieldPath, message: string) => void): Bootstrap["ads"] {
  for (const key of Object.keys(dynamic)) if (!["ads_config", "lds_config", "cds_config"].includes(key)) error(["dynamic_resources", key], "is not supported by instio");
  for (const key of ["lds_config", "cds_config"]) {
    const source = dynamic[key] as Record<string, unknown> | undefined;
    if (source && source.ads === undefined) error(["dynamic_resources", key], "only ads: {} (everything over the one ADS stream) is supported");
  }
  const ads = dynamic.ads_config as { api_type?: string; grpc_services?: { envoy_grpc?: { cluster_name?: string } }[] } | undefined;
  if (!ads) {
    error(["dynamic_resources"], "needs ads_config");
    return undefined;
  }
  if (ads.api_type !== "GRPC" && ads.api_type !== "DELTA_GRPC") {
    error(["dynamic_resources", "ads_config", "api_type"], "must be GRPC or DELTA_GRPC");
    return undefined;
  }
  const name = ads.grpc_services?.[0]?.envoy_grpc?.cluster_name;
  if (!name || (ads.grpc_services?.length ?? 0) !== 1) {
    error(["dynamic_resources", "ads_config", "grpc_services"], "needs one envoy_grpc service naming a static cluster");
    return undefined;
  }
  const cluster = clusters.find((c) => (c as { name?: string }).name === name) as { load_assignment?: { endpoints?: { lb_endpoints?: { endpoint?: { address?: unknown } }[] }[] } } | undefined;
  const address = socketAddress(cluster?.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address);
  if (!address) {
    error(["dynamic_resources", "ads_config", "grpc_services", 0, "envoy_grpc", "cluster_name"], `no static cluster ${name} with an endpoint address and port`);
    return undefined;
  }
  const host = address.address.includes(":") ? `[${address.address}]` : address.address;
  return { address: `${host}:${address.port}`, delta: ads.api_type === "DELTA_GRPC" };
}
