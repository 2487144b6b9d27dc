// Reading decoded Envoy v3 messages field by field. Every field a message sets
// must be read, or explicitly accepted as having no effect on instio; whatever
// is left is an unsupported field, and the resource is rejected (NACKed) with
// the field's path, never served with the field silently dropped.

import protobuf from "protobufjs";
import { messageType, TYPE_PREFIX, type AnyMessage } from "../protos.js";

/** Oneofs as plain fields (no virtual "which one" keys), enum names, 64-bit integers as strings. */
const READ_OPTIONS: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer, oneofs: false, defaults: false };

/** A resource (or part of one) instio cannot serve: the resource, the field path and why. */
export class Unsupported extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
  }
}

type Obj = Record<string, unknown>;

/** The longest timer Node keeps (about 24.8 days). */
const MAX_DURATION_MS = 2 ** 31 - 1;

export class MessageReader {
  private readonly read = new Set<string>();

  constructor(
    private readonly message: Obj,
    /** Where this message is, for errors: "virtual_hosts[0].routes[2].route". */
    readonly path: string,
    /** The type URL, for a message read out of an Any. */
    readonly typeUrl?: string,
  ) {}

  /** Decodes an Any (by its type URL) into a reader; `expected` type URLs only. */
  static ofAny(any: AnyMessage, path: string, expected?: readonly string[]): MessageReader {
    if (typeof any.type_url !== "string" || any.type_url === "") throw new Unsupported(path, "an Any without a type_url");
    if (expected && !expected.includes(any.type_url)) throw new Unsupported(path, `type ${any.type_url.replace(TYPE_PREFIX, "")} is not supported here (expected ${expected.map((t) => t.replace(TYPE_PREFIX, "")).join(" or ")})`);
    let type: protobuf.Type;
    try {
      type = messageType(any.type_url);
    } catch {
      throw new Unsupported(path, `unknown type ${any.type_url}`);
    }
    let decoded: Obj;
    try {
      decoded = type.toObject(type.decode(any.value), READ_OPTIONS);
    } catch (err) {
      throw new Unsupported(path, `does not decode as ${any.type_url.replace(TYPE_PREFIX, "")}: ${(err as Error).message}`);
    }
    return new MessageReader(decoded, path, any.type_url);
  }

  private at(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.message[key] !== undefined && this.message[key] !== null;
  }

  /** The type URL of an Any field, without reading it (to pick the reader for a filter's config). */
  anyType(key: string): string | undefined {
    const v = this.message[key] as { type_url?: unknown } | undefined;
    return typeof v?.type_url === "string" ? v.type_url : undefined;
  }

  /** A string field's value without reading it (a resource's name, for errors). */
  peek(key: string): string | undefined {
    const v = this.message[key];
    return typeof v === "string" ? v : undefined;
  }

  fail(key: string, reason: string): never {
    throw this.error(key, reason);
  }

  /** The error for `key` (throw it where the compiler cannot see that fail() does not return). */
  error(key: string, reason: string): Unsupported {
    return new Unsupported(this.at(key), reason);
  }

  /** The raw value, marked read. */
  private take(key: string): unknown {
    this.read.add(key);
    return this.message[key];
  }

  str(key: string): string | undefined {
    const v = this.take(key);
    return typeof v === "string" ? v : undefined;
  }

  num(key: string): number | undefined {
    const v = this.take(key);
    if (v === undefined || v === null) return undefined;
    const n = typeof v === "string" ? Number(v) : (v as number);
    return Number.isFinite(n) ? n : undefined;
  }

  bool(key: string): boolean | undefined {
    const v = this.take(key);
    return typeof v === "boolean" ? v : undefined;
  }

  bytes(key: string): Buffer | undefined {
    const v = this.take(key);
    return Buffer.isBuffer(v) ? v : v instanceof Uint8Array ? Buffer.from(v) : undefined;
  }

  /** A google.protobuf wrapper (UInt32Value, BoolValue, …): its value. */
  wrapped<T = number>(key: string): T | undefined {
    const v = this.obj(key);
    if (!v) return undefined;
    const value = v.take("value");
    v.done();
    // A wrapper set to its zero value (0, false) has nothing on the wire; 0 is falsy for BoolValue readers too.
    if (value === undefined) return 0 as T;
    return (typeof value === "string" ? Number(value) : value) as T;
  }

  /** A google.protobuf.Duration in milliseconds. */
  durationMs(key: string): number | undefined {
    const d = this.obj(key);
    if (!d) return undefined;
    const seconds = Number(d.take("seconds") ?? 0);
    const nanos = Number(d.take("nanos") ?? 0);
    d.done();
    if (seconds < 0 || nanos < 0) this.fail(key, "a negative duration");
    const ms = seconds * 1000 + nanos / 1e6;
    // Node's timers hold at most 2^31-1 ms; a longer one would fire at once.
    if (!(ms <= MAX_DURATION_MS)) this.fail(key, `durations over ${MAX_DURATION_MS / 86_400_000} days are not supported`);
    return ms;
  }

  obj(key: string): MessageReader | undefined {
    const v = this.take(key);
    if (v === undefined || v === null) return undefined;
    return new MessageReader(v as Obj, this.at(key));
  }

  list(key: string): MessageReader[] {
    const v = this.take(key);
    if (!Array.isArray(v)) return [];
    return v.map((item, i) => new MessageReader(item as Obj, `${this.at(key)}[${i}]`));
  }

  strings(key: string): string[] {
    const v = this.take(key);
    return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
  }

  numbers(key: string): number[] {
    const v = this.take(key);
    return Array.isArray(v) ? v.map(Number).filter(Number.isFinite) : [];
  }

  /** A map field (typed_per_filter_config): entries with their readers' paths. */
  map(key: string): [string, unknown][] {
    const v = this.take(key);
    return v && typeof v === "object" ? Object.entries(v as Obj) : [];
  }

  any(key: string, expected?: readonly string[]): MessageReader | undefined {
    const v = this.take(key) as AnyMessage | undefined;
    if (!v) return undefined;
    return MessageReader.ofAny(v, this.at(key), expected);
  }

  /** Fields set to what Envoy does by default, or that change nothing instio does: read and dropped. */
  accept(...keys: string[]): this {
    for (const k of keys) this.read.add(k);
    return this;
  }

  /** A field instio serves only at one value (an enum, a flag): anything else is unsupported. */
  only(key: string, allowed: readonly unknown[], why = "is not supported"): void {
    const v = this.take(key);
    if (v === undefined || v === null) return;
    const plain = typeof v === "object" && v !== null && "value" in v ? (v as Obj).value : v;
    if (!allowed.includes(plain)) this.fail(key, `${JSON.stringify(plain)} ${why}`);
  }

  /** Every field set and not read is unsupported: the first one rejects the message. */
  done(): void {
    for (const [k, v] of Object.entries(this.message)) {
      if (v === undefined || v === null || this.read.has(k)) continue;
      if (Array.isArray(v) && v.length === 0) continue;
      throw new Unsupported(this.at(k), "is not supported by instio");
    }
  }
}
