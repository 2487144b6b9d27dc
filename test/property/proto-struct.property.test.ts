// instio's google.protobuf.Struct codec (host/security/proto-struct.ts, the
// metadata exchange's) against protobufjs, the reference: the same bytes for
// what it encodes; the same strings and nested Structs from anything protobufjs
// encodes, the other value kinds included; and on hostile bytes a result or an
// Error, never a hang or another kind of failure.

import fc from "fast-check";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { decodeStruct, encodeStruct, type StructValue } from "../../host/security/proto-struct.js";
import "../support/fast-check-seed.js";

const root = protobuf.Root.fromJSON(protobuf.common.get("google/protobuf/struct.proto") as protobuf.INamespace);
const Struct = root.lookupType("google.protobuf.Struct");

/** A Value of any kind, as protobufjs's fromObject takes it. */
type AnyValue = { stringValue: string } | { numberValue: number } | { boolValue: boolean } | { nullValue: number } | { structValue: { fields?: Record<string, AnyValue> } } | { listValue: { values: AnyValue[] } };

const key = fc.string({ unit: "grapheme", maxLength: 12 });
const anyValue = fc.letrec<{ value: AnyValue; fields: Record<string, AnyValue> }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.string({ unit: "grapheme", maxLength: 20 }).map((s) => ({ stringValue: s })),
    fc.double({ noNaN: true }).map((n) => ({ numberValue: n })),
    fc.boolean().map((b) => ({ boolValue: b })),
    fc.constant({ nullValue: 0 }),
    tie("fields").map((fields) => ({ structValue: { fields } })),
    fc.array(tie("value"), { maxLength: 3 }).map((values) => ({ listValue: { values } })),
  ),
  fields: fc.dictionary(key, tie("value"), { maxKeys: 4 }),
})).fields;

/** What the exchange keeps of a Value: strings and nested Structs; any other kind reads as {}. */
function kept(fields: Record<string, AnyValue> = {}): Record<string, StructValue> {
  const out = Object.create(null) as Record<string, StructValue>; // "__proto__" is a key like any other
  for (const [k, v] of Object.entries(fields)) {
    if ("stringValue" in v) out[k] = { stringValue: v.stringValue };
    else if ("structValue" in v) out[k] = { structValue: { fields: kept(v.structValue.fields) } };
    else out[k] = {};
  }
  return out;
}

/** Plain objects, so that the prototype-less records the decoder returns compare equal. */
const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x));

const stringsAndStructs = fc.letrec<{ fields: Record<string, StructValue> }>((tie) => ({
  fields: fc.dictionary(key, fc.oneof({ depthSize: "small" }, fc.string({ unit: "grapheme", maxLength: 20 }).map((s) => ({ stringValue: s })), tie("fields").map((fields) => ({ structValue: { fields } }))), { maxKeys: 4 }),
})).fields;

describe("google.protobuf.Struct codec", () => {
  it("decodes whatever protobufjs encodes: strings and nested Structs kept, other kinds empty", () => {
    fc.assert(
      fc.property(anyValue, (fields) => {
        const bytes = Struct.encode(Struct.fromObject({ fields })).finish();
        expect(plain(decodeStruct(bytes))).toEqual(kept(fields));
      }),
      { numRuns: 500 },
    );
  });

  it("encodes the bytes protobufjs encodes for the same fields in the same order", () => {
    fc.assert(
      fc.property(stringsAndStructs, (fields) => {
        const ours = Buffer.from(encodeStruct(fields)).toString("hex");
        expect(ours).toBe(Buffer.from(Struct.encode(Struct.fromObject({ fields })).finish()).toString("hex"));
      }),
      { numRuns: 500 },
    );
  });

  it("returns or throws an Error on random and mutated bytes, and agrees with protobufjs on canonical ones", () => {
    const mutated = fc.tuple(stringsAndStructs, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat()).map(([fields, edits, cut]) => {
      const bytes = Uint8Array.from(encodeStruct(fields));
      for (const [at, b] of edits) if (bytes.length > 0) bytes[at % bytes.length] = b;
      return bytes.subarray(0, bytes.length === 0 ? 0 : bytes.length - (cut % Math.min(bytes.length, 4)));
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), mutated), (bytes) => {
        let ours: Record<string, StructValue> | undefined;
        try {
          ours = decodeStruct(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        let reference: Record<string, AnyValue> | undefined;
        try {
          const message = Struct.decode(bytes);
          // Compared only where the bytes are the canonical encoding of what protobufjs read: protobufjs also reads
          // a known field sent with the wrong wire type, which protobuf's own parsers (and this one) skip as unknown.
          if (Buffer.compare(Buffer.from(Struct.encode(message).finish()), Buffer.from(bytes)) !== 0) return;
          reference = (Struct.toObject(message, { defaults: false }) as { fields?: Record<string, AnyValue> }).fields ?? {};
        } catch {
          return; // bytes protobufjs refuses: not a disagreement on content
        }
        expect(plain(ours)).toEqual(plain(kept(reference)));
      }),
      { numRuns: 2000 },
    );
  });

  it("refuses Structs nested past 32 levels instead of recursing without bound", () => {
    let fields: Record<string, StructValue> = { leaf: { stringValue: "x" } };
    for (let i = 0; i < 40; i++) fields = { nested: { structValue: { fields } } };
    expect(() => decodeStruct(encodeStruct(fields))).toThrow(/nested deeper than 32/);
  });

  it("reads a key named __proto__ as a key", () => {
    const decoded = decodeStruct(encodeStruct({ ["__proto__"]: { stringValue: "p" }, a: { stringValue: "b" } }));
    expect(Object.keys(decoded)).toEqual(["__proto__", "a"]);
    expect(decoded["__proto__"]).toEqual({ stringValue: "p" });
  });
});
