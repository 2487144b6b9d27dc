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
import { lengthDelimitedFields } from "../../envoy/wire-format.js";

/** What the wire encoding needs of a resource (host/envoy/generate/resources.ts EncodedResource). */
export interface WireResource {
  name: string;
  version: string;
  any: AnyMessage;
  /** Cached encodings, filled on first use. */
  anyBytes?: Buffer;
  deltaBytes?: Buffer;
}

const text = (s: string): Buffer => Buffer.from(s, "utf8");

function anyBytes(r: WireResource): Buffer {
  return (r.anyBytes ??= lengthDelimitedFields([[1, text(r.any.type_url)], [2, r.any.value]]));
}

function deltaBytes(r: WireResource): Buffer {
  return (r.deltaBytes ??= lengthDelimitedFields([[1, text(r.version)], [2, anyBytes(r)], [3, text(r.name)]]));
}

export function encodeSotwResponse(version: string, typeUrl: string, nonce: string, resources: WireResource[]): Buffer {
  return lengthDelimitedFields([[1, text(version)], ...resources.map((r): [number, Buffer] => [2, anyBytes(r)]), [4, text(typeUrl)], [5, text(nonce)]]);
}

export function encodeDeltaResponse(systemVersion: string, typeUrl: string, nonce: string, resources: WireResource[], removed: string[]): Buffer {
  return lengthDelimitedFields([
    [1, text(systemVersion)],
    ...resources.map((r): [number, Buffer] => [2, deltaBytes(r)]),
    [4, text(typeUrl)],
    [5, text(nonce)],
    ...removed.map((n): [number, Buffer] => [6, text(n)]),
  ]);
}
