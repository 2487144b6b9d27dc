// Envoy's v3 API protos, loaded from the copies @grpc/grpc-js-xds ships (never
// copied into this repository), and the encoding of resources into `Any`.
//
// Loading parses a few hundred .proto files: done once per process, on first use.

import { accessSync, constants, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join } from "node:path";
import protobuf from "protobufjs";
import { packageFile } from "../package-root.js";

export const TYPE_PREFIX = "type.googleapis.com/";

/** The resource types of xDS, by their type URLs [xds_protocol "Resource Types"]. */
export const LISTENER_TYPE = `${TYPE_PREFIX}envoy.config.listener.v3.Listener`;
export const ROUTE_TYPE = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
export const CLUSTER_TYPE = `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`;
export const ENDPOINT_TYPE = `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;

/** Istio's short names for the types, as its metrics label them (pkg/model/xds.go GetMetricType). */
export const TYPE_SHORT_NAMES: Readonly<Record<string, string>> = {
  [LISTENER_TYPE]: "lds",
  [ROUTE_TYPE]: "rds",
  [CLUSTER_TYPE]: "cds",
  [ENDPOINT_TYPE]: "eds",
};

/** Istio's push order: clusters and their endpoints before the listeners and routes that use them (pilot/pkg/xds/ads.go PushOrder). */
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;

const PROTO_FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/fault/v3/fault.proto",
  "envoy/extensions/filters/http/cors/v3/cors.proto",
  "envoy/extensions/filters/http/wasm/v3/wasm.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
  "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
  "envoy/admin/v3/config_dump.proto",
];

let loaded: protobuf.Root | undefined;

/**
 * Where `npm run build` writes the parsed root (build/envoy-protos.json): loading it takes a few milliseconds where
 * parsing the .proto files takes about a second per process and worker, and the single binary carries it instead of
 * @grpc/grpc-js-xds's proto tree.
 */
export const PROTOS_JSON = "build/envoy-protos.json";

/** The root holding every Envoy type instio reads or writes. */
export function envoyProtos(): protobuf.Root {
  if (loaded) return loaded;
  try {
    const json = JSON.parse(readFileSync(packageFile(PROTOS_JSON), "utf8")) as protobuf.INamespace;
    loaded = protobuf.Root.fromJSON(json);
    loaded.resolveAll();
    return loaded;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return (loaded = parseEnvoyProtos());
}

/** Envoy's protos parsed from the .proto files @grpc/grpc-js-xds ships (the build writes the result as JSON). */
export function parseEnvoyProtos(): protobuf.Root {
  const require = createRequire(import.meta.url);
  const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  const includeDirs = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d));
  // protobufjs bundles only some of Google's well-known protos; Envoy's options import descriptor.proto.
  const descriptor = require("protobufjs/google/protobuf/descriptor.json") as { nested: { google: { nested: { protobuf: { nested: Record<string, protobuf.INamespace> } } } } };
  protobuf.common("descriptor", descriptor.nested.google.nested.protobuf.nested);
  const root = new protobuf.Root();
  // Imports are relative to the include directories, as protoc's -I.
  root.resolvePath = (_origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of includeDirs) {
      const full = join(dir, target);
      try {
        accessSync(full, constants.R_OK);
        return full;
      } catch {
        // not in this directory
      }
    }
    return target; // protobufjs's bundled google/protobuf types
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

/** The protobuf type of a full name ("envoy.config.listener.v3.Listener") or a type URL. */
export function messageType(nameOrUrl: string): protobuf.Type {
  let type = typeCache.get(nameOrUrl);
  if (!type) {
    const name = nameOrUrl.startsWith(TYPE_PREFIX) ? nameOrUrl.slice(TYPE_PREFIX.length) : nameOrUrl;
    // An empty name finds the root namespace, which protobufjs hands back as if it were a type.
    if (name === "") throw new Error(`no such type: "${nameOrUrl}"`);
    type = envoyProtos().lookupType(name);
    typeCache.set(nameOrUrl, type);
  }
  return type;
}

/** Lookups walk the namespace tree; resources are encoded by the thousand. */
const typeCache = new Map<string, protobuf.Type>();

/** A `google.protobuf.Any` as protobufjs writes it. */
export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

/**
 * Encodes `object` (proto field names, as in Envoy's YAML) as an Any of `typeUrl`.
 * Fields the type does not have are an error: a resource is never sent with a
 * field silently missing.
 */
export function packAny(typeUrl: string, object: Record<string, unknown>): AnyMessage {
  const type = messageType(typeUrl);
  const problem = badField(type, object, "");
  if (problem) throw new Error(`${typeUrl}: ${problem}`);
  return { type_url: typeUrl, value: type.encode(type.fromObject(object)).finish() };
}

/**
 * The first key in `object` that `type` has no field for, or enum value it does not
 * define: protobufjs's fromObject drops both without a word.
 */
function badField(type: protobuf.Type, object: Record<string, unknown>, path: string): string | undefined {
  for (const [key, value] of Object.entries(object)) {
    if (value === undefined) continue;
    const field = type.fields[key];
    if (!field) return `no field ${path}${key}`;
    const inner = field.resolve().resolvedType;
    const items = Array.isArray(value) ? value : field.map ? Object.values(value as object) : [value];
    for (const [i, item] of items.entries()) {
      const at = `${path}${key}${Array.isArray(value) ? `[${i}]` : ""}`;
      if (inner instanceof protobuf.Enum) {
        if (typeof item === "string" && inner.values[item] === undefined) return `${at}: no ${inner.name} value ${item}`;
        continue;
      }
      if (!(inner instanceof protobuf.Type) || inner.fullName === ".google.protobuf.Any" || inner.fullName === ".google.protobuf.Struct") continue;
      if (item === null || typeof item !== "object" || ArrayBuffer.isView(item)) continue;
      const found = badField(inner, item as Record<string, unknown>, `${at}.`);
      if (found) return found;
    }
  }
  return undefined;
}

/** A google.protobuf.Duration of `ms` milliseconds. */
export function duration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** How decoded messages read: enum names, 64-bit integers as strings, oneofs named, no defaults. */
export const DECODE_OPTIONS: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer, oneofs: true, defaults: false };

/** Decodes an Any's value by its type URL. */
export function unpackAny(any: AnyMessage): Record<string, unknown> {
  const type = messageType(any.type_url);
  return type.toObject(type.decode(any.value), DECODE_OPTIONS);
}

/** google.protobuf.Struct / Value as decoded → plain JSON. */
export function structToJson(struct: unknown): Record<string, unknown> {
  const fields = (struct as { fields?: Record<string, unknown> } | undefined)?.fields ?? {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: unknown): unknown {
  // protobufjs's bundled struct.proto names its fields in camelCase, whatever keepCase says.
  const value = v as Record<string, unknown> | null;
  if (!value) return null;
  if ("stringValue" in value) return value.stringValue;
  if ("numberValue" in value) return value.numberValue;
  if ("boolValue" in value) return value.boolValue;
  if ("structValue" in value) return structToJson(value.structValue);
  if ("listValue" in value) return ((value.listValue as { values?: unknown[] }).values ?? []).map(valueToJson);
  return null;
}

/** Plain JSON → a google.protobuf.Struct for protobufjs (its bundled struct.proto names fields in camelCase). */
export function jsonToStruct(json: Record<string, unknown>): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) if (v !== undefined) fields[k] = jsonToValue(v);
  return { fields };
}

function jsonToValue(v: unknown): unknown {
  if (v === null) return { nullValue: "NULL_VALUE" };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(jsonToValue) } };
  return { structValue: jsonToStruct(v as Record<string, unknown>) };
}
