// Envoy's YAML and JSON (an Envoy bootstrap file) → protobuf messages, as
// Envoy reads them: field names in snake_case or as protobuf's JSON names, an
// Any as {"@type": URL, ...its fields}, Durations as "1.5s", wrappers as their
// plain value, Structs as plain JSON, enums by name. Strict: a field the type
// does not have is an error at its path, never dropped.

import protobuf from "protobufjs";
import { jsonToStruct, messageType, type AnyMessage } from "./protos.js";

export type JsonPath = (string | number)[];

export class JsonMessageError extends Error {
  constructor(
    readonly path: JsonPath,
    readonly reason: string,
  ) {
    super(reason);
  }
}

const WRAPPERS = new Set(["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue"].map((n) => `.google.protobuf.${n}`));

/** Envoy's JSON for an Any ({"@type": URL, ...}) → the Any, its message encoded. */
export function anyFromJson(json: unknown, path: JsonPath = []): AnyMessage {
  if (!isObject(json)) throw new JsonMessageError(path, "an Any must be an object with @type");
  const url = json["@type"];
  if (typeof url !== "string") throw new JsonMessageError(path, "an Any needs its @type");
  let type: protobuf.Type;
  try {
    type = messageType(url);
  } catch {
    throw new JsonMessageError([...path, "@type"], `unknown type ${url}`);
  }
  const fields = { ...json };
  delete fields["@type"];
  return { type_url: url, value: type.encode(type.fromObject(messageFromJson(type, fields, path))).finish() };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A message's JSON → the object protobufjs's fromObject reads (proto field names, nested Anys encoded). */
export function messageFromJson(type: protobuf.Type, json: unknown, path: JsonPath): Record<string, unknown> {
  if (!isObject(json)) throw new JsonMessageError(path, `expected an object (${type.name})`);
  const byJsonName = new Map<string, protobuf.Field>();
  for (const f of type.fieldsArray) {
    byJsonName.set(f.name, f);
    byJsonName.set((f.options?.json_name as string | undefined) ?? f.name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()), f);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const field = byJsonName.get(key);
    if (!field) throw new JsonMessageError([...path, key], `${type.name} has no field ${key}`);
    if (value === null || value === undefined) continue;
    const at = [...path, key];
    if (field.map) {
      if (!isObject(value)) throw new JsonMessageError(at, "expected a map");
      out[field.name] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, valueFromJson(field, v, [...at, k])]));
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new JsonMessageError(at, "expected a list");
      out[field.name] = value.map((v, i) => valueFromJson(field, v, [...at, i]));
    } else out[field.name] = valueFromJson(field, value, at);
  }
  return out;
}

function valueFromJson(field: protobuf.Field, value: unknown, path: JsonPath): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Enum) {
    if (typeof value === "string" && resolved.values[value] === undefined) throw new JsonMessageError(path, `${resolved.name} has no value ${value}`);
    return value;
  }
  if (!(resolved instanceof protobuf.Type)) return scalar(field.type, value, path);
  const name = resolved.fullName;
  if (name === ".google.protobuf.Any") return anyFromJson(value, path);
  if (name === ".google.protobuf.Duration") return durationFromJson(value, path);
  if (name === ".google.protobuf.Struct") {
    if (!isObject(value)) throw new JsonMessageError(path, "expected an object");
    return jsonToStruct(value);
  }
  if (WRAPPERS.has(name)) return { value: isObject(value) && "value" in value ? value.value : scalar(resolved.fields.value!.type, value, path) };
  return messageFromJson(resolved, value, path);
}

function scalar(type: string, value: unknown, path: JsonPath): unknown {
  if (type === "string") {
    if (typeof value !== "string") throw new JsonMessageError(path, "expected a string");
    return value;
  }
  if (type === "bool") {
    if (typeof value !== "boolean") throw new JsonMessageError(path, "expected true or false");
    return value;
  }
  if (type === "bytes") {
    if (typeof value !== "string") throw new JsonMessageError(path, "expected base64 bytes");
    return Buffer.from(value, "base64");
  }
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new JsonMessageError(path, "expected a number");
  if (type !== "double" && type !== "float" && !Number.isInteger(n)) throw new JsonMessageError(path, "expected an integer");
  if (type.startsWith("uint") || type.startsWith("fixed")) {
    if (n < 0) throw new JsonMessageError(path, "expected a non-negative integer");
  }
  return n;
}

/** "1.5s" (protobuf's JSON form; Envoy's YAML too) or {seconds, nanos}. */
function durationFromJson(value: unknown, path: JsonPath): { seconds: number; nanos: number } {
  if (isObject(value)) return { seconds: Number(value.seconds ?? 0), nanos: Number(value.nanos ?? 0) };
  const m = typeof value === "string" ? /^(\d+)(?:\.(\d{1,9}))?s$/.exec(value) : null;
  if (!m) throw new JsonMessageError(path, `"${String(value)}" is not a duration such as 1.5s`);
  return { seconds: Number(m[1]), nanos: m[2] ? Number(m[2].padEnd(9, "0")) : 0 };
}
