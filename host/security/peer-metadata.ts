// Istio's metadata exchange over HTTP (the peer_metadata filter): the client
// sidecar sends its workload's description in x-envoy-peer-metadata (base64 of a
// google.protobuf.Struct, deterministically serialized) with its node id in
// x-envoy-peer-metadata-id; the server sidecar reads and strips them before the
// app sees them and answers with its own only to a request that carried them.
// Both sides then label their metrics with the other's workload.
//
// The peer's headers are untrusted bytes: they are size-bounded, decoded once
// per peer id into a bounded cache, and anything malformed reads as "no peer".

import { decodeStruct, encodeStruct, type StructValue } from "./proto-struct.js";

export const PEER_METADATA = "x-envoy-peer-metadata";
export const PEER_METADATA_ID = "x-envoy-peer-metadata-id";

/** What the metrics read of a peer (missing values are "unknown" there). */
export interface PeerInfo {
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly workload: string;
  readonly cluster: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** The labels Istio's exchange carries (plus PILOT_MX_ADDITIONAL_LABELS, which instio has no setting for). */
const EXCHANGED_LABELS = ["app", "version", "service.istio.io/canonical-name", "service.istio.io/canonical-revision"];
/** A header value longer than this is not decoded (Istio's are a few hundred bytes). */
const MAX_METADATA_BYTES = 8192;
const CACHE_LIMIT = 1024;

/** The local workload's two headers, computed once per settings. */
export function localPeerMetadata(self: { id: string; name: string; namespace: string; workload: string; cluster: string; labels: Record<string, string> }): { id: string; value: string } {
  const labels: Record<string, StructValue> = {};
  for (const k of EXCHANGED_LABELS) if (self.labels[k] !== undefined) labels[k] = { stringValue: self.labels[k] };
  // Deterministic serialization: keys in sorted order; the empty ones left out, LABELS always present.
  const fields: Record<string, StructValue> = {};
  const entries: [string, string][] = [["CLUSTER_ID", self.cluster], ["NAME", self.name], ["NAMESPACE", self.namespace], ["WORKLOAD_NAME", self.workload]];
  for (const [k, v] of entries) if (v) fields[k] = { stringValue: v };
  fields.LABELS = { structValue: { fields: sortedKeys(labels) } };
  const bytes = encodeStruct(sortedKeys(fields));
  return { id: self.id, value: Buffer.from(bytes).toString("base64") };
}

function sortedKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Decoded peers by node id (Envoy keeps such a cache per worker). */
export class PeerCache {
  private readonly byId = new Map<string, PeerInfo | null>();

  /** The peer the two header values describe; undefined when absent or malformed. */
  peer(id: string | undefined, value: string | undefined): PeerInfo | undefined {
    if (value === undefined || value.length > MAX_METADATA_BYTES) return undefined;
    const key = `${id ?? ""}\u0000${value}`;
    let peer = this.byId.get(key);
    if (peer === undefined) {
      if (this.byId.size >= CACHE_LIMIT) this.byId.clear();
      this.byId.set(key, (peer = decode(id ?? "", value)));
    }
    return peer ?? undefined;
  }
}

function decode(id: string, value: string): PeerInfo | null {
  try {
    // Readers accept missing padding; Buffer's decoder also skips characters outside the alphabet.
    const f = decodeStruct(Buffer.from(value, "base64"));
    const str = (k: string): string => (typeof f[k]?.stringValue === "string" ? f[k]!.stringValue! : "");
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(f.LABELS?.structValue?.fields ?? {})) if (typeof v.stringValue === "string") labels[k] = v.stringValue;
    return { id, name: str("NAME"), namespace: str("NAMESPACE"), workload: str("WORKLOAD_NAME"), cluster: str("CLUSTER_ID"), labels };
  } catch {
    return null;
  }
}
