// Discovery responses written straight to protobuf wire format from resources
// encoded once. A push sends the same resources to thousands of streams: each
// resource's Any (state of the world) and Resource wrapper (delta) are encoded
// on first use and kept with it, so a response costs one copy of those bytes,
// not a protobufjs object walk and encode per stream.
//
// Field numbers from envoy/service/discovery/v3/discovery.proto:
//   DiscoveryResponse      version_info 1, resources 2 (Any), type_url 4, nonce 5
//   DeltaDiscoveryResponse system_version_info 1, resources 2 (Resource), type_url 4, nonce 5, removed_resources 6
//   Resource               version 1, resource 2 (Any), name 3
//   google.protobuf.Any    type_url 1, value 2

import type { AnyMessage } from "../../envoy/protos.js";

/** What the wire encoding needs of a resource (host/envoy/generate/resources.ts EncodedResource). */
export interface WireResource {
  name: string;
  version: string;
  any: AnyMessage;
  /** Cached encodings, filled on first use. */
  anyBytes?: Buffer;
  deltaBytes?: Buffer;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** A message as its length-delimited fields, in order: [field number, bytes]. */
function message(fields: [number, Buffer | Uint8Array][]): Buffer {
  let size = 0;
  for (const [field, bytes] of fields) size += varintLength(field * 8 + 2) + varintLength(bytes.length) + bytes.length;
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const [field, bytes] of fields) {
    pos = writeVarint(out, pos, field * 8 + 2);
    pos = writeVarint(out, pos, bytes.length);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

const text = (s: string): Buffer => Buffer.from(s, "utf8");

function anyBytes(r: WireResource): Buffer {
  return (r.anyBytes ??= message([[1, text(r.any.type_url)], [2, r.any.value]]));
}

function deltaBytes(r: WireResource): Buffer {
  return (r.deltaBytes ??= message([[1, text(r.version)], [2, anyBytes(r)], [3, text(r.name)]]));
}

export function encodeSotwResponse(version: string, typeUrl: string, nonce: string, resources: WireResource[]): Buffer {
  return message([[1, text(version)], ...resources.map((r): [number, Buffer] => [2, anyBytes(r)]), [4, text(typeUrl)], [5, text(nonce)]]);
}

export function encodeDeltaResponse(systemVersion: string, typeUrl: string, nonce: string, resources: WireResource[], removed: string[]): Buffer {
  return message([
    [1, text(systemVersion)],
    ...resources.map((r): [number, Buffer] => [2, deltaBytes(r)]),
    [4, text(typeUrl)],
    [5, text(nonce)],
    ...removed.map((n): [number, Buffer] => [6, text(n)]),
  ]);
}
