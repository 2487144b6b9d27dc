// google.protobuf.Struct on the wire, the part Istio's metadata exchange uses:
// string and nested Struct values. Written here rather than through
// protobufjs so that a proxy configured by files, which exchanges metadata on
// every mesh request, does not load protobufjs (about 9 MB resident) for two
// messages. Encoding is deterministic (keys in the order given; callers sort
// them); decoding reads any valid Struct, skips the value kinds it does not
// keep (null, number, bool, list) and throws on malformed bytes.

import { lengthDelimitedFields } from "../envoy/wire-format.js";

/** A Struct value as the metadata exchange reads it: a string, a nested Struct, or a kind it does not keep (empty). */
export interface StructValue {
  stringValue?: string;
  structValue?: { fields?: Record<string, StructValue> };
}

/** Wire types this reader meets. */
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;
/** Nested Structs deeper than this are malformed input here (Istio's are two deep). */
const MAX_DEPTH = 32;

// Struct.fields = 1, a map: entries with key = 1 and value = 2. Value.string_value = 3, struct_value = 5.
function encodeValue(v: StructValue): Buffer {
  if (v.stringValue !== undefined) return lengthDelimitedFields([[3, Buffer.from(v.stringValue, "utf8")]]);
  if (v.structValue !== undefined) return lengthDelimitedFields([[5, encodeStruct(v.structValue.fields ?? {})]]);
  return Buffer.alloc(0);
}

/** A Struct's bytes, its fields in the order of `fields`. */
export function encodeStruct(fields: Record<string, StructValue>): Buffer {
  return lengthDelimitedFields(Object.entries(fields).map(([key, value]) => [1, lengthDelimitedFields([[1, Buffer.from(key, "utf8")], [2, encodeValue(value)]])] as const));
}

/** A cursor over one message's bytes [pos, end). */
class Reader {
  constructor(
    readonly bytes: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let n = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const b = this.bytes[this.pos++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
    // Longer varints (64-bit values, e.g. a negative enum) are only ever skipped here.
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      if (this.bytes[this.pos++]! < 0x80) return n;
    }
    throw new Error("varint longer than 10 bytes");
  }

  /** The sub-message or string of a length-delimited field. */
  sub(): Reader {
    const len = this.varint();
    if (len > this.end - this.pos) throw new Error("length past the end of the message");
    const r = new Reader(this.bytes, this.pos, this.pos + len);
    this.pos += len;
    return r;
  }

  string(): string {
    const r = this.sub();
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + r.pos, r.end - r.pos).toString("utf8");
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === LEN) this.sub();
    else if (wireType === I64 || wireType === I32) {
      const n = wireType === I64 ? 8 : 4;
      if (n > this.end - this.pos) throw new Error("truncated fixed-width field");
      this.pos += n;
    } else throw new Error(`wire type ${wireType} is not used by google.protobuf.Struct`);
  }
}

function decodeValue(r: Reader, depth: number): StructValue {
  let value: StructValue = {};
  while (!r.done) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    // A oneof: the last kind on the wire wins, as protobuf's parsers do.
    if (field === 3 && wire === LEN) value = { stringValue: r.string() };
    else if (field === 5 && wire === LEN) value = { structValue: { fields: decodeFields(r.sub(), depth + 1) } };
    else {
      r.skip(wire);
      if (field >= 1 && field <= 6) value = {};
    }
  }
  return value;
}

function decodeFields(r: Reader, depth: number): Record<string, StructValue> {
  if (depth > MAX_DEPTH) throw new Error(`Struct nested deeper than ${MAX_DEPTH}`);
  // No prototype: a key of "__proto__" from the wire is a key like any other.
  const fields = Object.create(null) as Record<string, StructValue>;
  while (!r.done) {
    const tag = r.varint();
    if (tag !== ((1 << 3) | LEN)) {
      r.skip(tag & 7);
      continue;
    }
    const entry = r.sub();
    let key = "";
    let value: StructValue = {};
    while (!entry.done) {
      const t = entry.varint();
      if (t === ((1 << 3) | LEN)) key = entry.string();
      else if (t === ((2 << 3) | LEN)) value = decodeValue(entry.sub(), depth);
      else entry.skip(t & 7);
    }
    fields[key] = value;
  }
  return fields;
}

/** A Struct's fields from its bytes; throws on bytes that are not a Struct. */
export function decodeStruct(bytes: Uint8Array): Record<string, StructValue> {
  return decodeFields(new Reader(bytes, 0, bytes.length), 0);
}
