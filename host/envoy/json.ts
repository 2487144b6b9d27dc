// Protobuf's canonical JSON mapping for Envoy's messages, as Envoy's admin
// /config_dump writes them: lowerCamelCase field names (or json_name), an Any
// as {"@type": URL, ...its fields}, Durations as "1.500s", wrappers as their
// value, Structs as plain JSON, enums by name, 64-bit integers and bytes as
// strings. Tools written for Envoy (istioctl proxy-config, jq recipes) read it.

import protobuf from "protobufjs";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, messageType, ROUTE_TYPE, structToJson, TYPE_PREFIX, type AnyMessage } from "./protos.js";

const WRAPPERS = new Set(["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue"].map((n) => `.google.protobuf.${n}`));

/** An Any as Envoy prints it. */
export function anyToJson(any: AnyMessage): Record<string, unknown> {
  const type = messageType(any.type_url);
  return { "@type": any.type_url, ...messageToJson(type, type.decode(any.value) as unknown as Record<string, unknown>) };
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function messageToJson(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const value = message[field.name];
    if (value === undefined || value === null) continue;
    if (!Object.prototype.hasOwnProperty.call(message, field.name)) continue; // proto3 default, not on the wire
    if (Array.isArray(value) && value.length === 0) continue;
    const key = (field.options?.json_name as string | undefined) ?? camel(field.name);
    if (field.map) {
      const map: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) map[k] = valueToJson(field, v);
      if (Object.keys(map).length > 0) out[key] = map;
    } else if (field.repeated) out[key] = (value as unknown[]).map((v) => valueToJson(field, v));
    else out[key] = valueToJson(field, value);
  }
  return out;
}

function valueToJson(field: protobuf.Field, value: unknown): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Enum) return typeof value === "number" ? (resolved.valuesById[value] ?? value) : value;
  if (resolved instanceof protobuf.Type) {
    const name = resolved.fullName;
    const m = value as Record<string, unknown>;
    if (name === ".google.protobuf.Any") return anyToJson(m as unknown as AnyMessage);
    if (name === ".google.protobuf.Duration") return durationString(m);
    if (name === ".google.protobuf.Struct") return structToJson(resolved.toObject(m as unknown as protobuf.Message, { longs: String }));
    if (WRAPPERS.has(name)) return scalar(resolved.fields.value!.type, m.value ?? defaultOf(resolved.fields.value!.type));
    return messageToJson(resolved, m);
  }
  return scalar(field.type, value);
}

function defaultOf(type: string): unknown {
  return type === "bool" ? false : type === "string" ? "" : 0;
}

function scalar(type: string, value: unknown): unknown {
  if (type === "bytes") return Buffer.from(value as Uint8Array).toString("base64");
  // 64-bit integers are strings in protobuf's JSON; Long objects print as their decimal value.
  if (["int64", "uint64", "sint64", "fixed64", "sfixed64"].includes(type)) return String(value);
  return value;
}

function durationString(d: Record<string, unknown>): string {
  const seconds = Number(d.seconds ?? 0);
  const nanos = Number(d.nanos ?? 0);
  if (nanos === 0) return `${seconds}s`;
  return `${(seconds + nanos / 1e9).toFixed(9).replace(/0+$/, "")}s`;
}

/** A resource as a proxy holds it: the Any, the version of the response that brought it, and when. */
export interface DumpedResource {
  any: AnyMessage;
  version: string;
  at: Date;
}

const ADMIN = `${TYPE_PREFIX}envoy.admin.v3.`;

/**
 * Envoy's ClustersConfigDump, ListenersConfigDump, RoutesConfigDump and (with `includeEds`, as Envoy's
 * ?include_eds) EndpointsConfigDump of dynamic resources, by type URL then name, each with its version.
 */
export function dynamicResourcesDump(resources: ReadonlyMap<string, ReadonlyMap<string, DumpedResource>>, includeEds: boolean): Record<string, unknown>[] {
  const list = (type: string): [string, DumpedResource][] => [...(resources.get(type) ?? new Map<string, DumpedResource>())].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const stamp = (r: DumpedResource): { versionInfo: string; lastUpdated: string } => ({ versionInfo: r.version, lastUpdated: r.at.toISOString() });
  const latest = (items: [string, DumpedResource][]): string | undefined => items.reduce<DumpedResource | undefined>((n, [, r]) => (!n || r.at > n.at ? r : n), undefined)?.version;
  const configs: Record<string, unknown>[] = [
    { "@type": `${ADMIN}ClustersConfigDump`, versionInfo: latest(list(CLUSTER_TYPE)), dynamicActiveClusters: list(CLUSTER_TYPE).map(([, r]) => ({ ...stamp(r), cluster: anyToJson(r.any) })) },
    { "@type": `${ADMIN}ListenersConfigDump`, versionInfo: latest(list(LISTENER_TYPE)), dynamicListeners: list(LISTENER_TYPE).map(([name, r]) => ({ name, activeState: { ...stamp(r), listener: anyToJson(r.any) } })) },
    { "@type": `${ADMIN}RoutesConfigDump`, dynamicRouteConfigs: list(ROUTE_TYPE).map(([, r]) => ({ ...stamp(r), routeConfig: anyToJson(r.any) })) },
  ];
  if (includeEds) configs.push({ "@type": `${ADMIN}EndpointsConfigDump`, dynamicEndpointConfigs: list(ENDPOINT_TYPE).map(([, r]) => ({ ...stamp(r), endpointConfig: anyToJson(r.any) })) });
  return configs;
}
