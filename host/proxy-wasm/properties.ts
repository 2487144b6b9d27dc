// proxy_get_property: Envoy's attributes as a plugin reads them
// (envoy source/extensions/common/wasm/context.cc, getProperty and
// serializeValue): strings as their bytes, integers as 8-byte little-endian,
// booleans as one byte, maps in the ABI's pairs format. Paths arrive split on
// NUL: ["request", "path"], ["request", "headers", "x-foo"], ["node",
// "metadata", "NAMESPACE"]. Read from the request's plain record, never from
// the pipeline's internals.

import { encodePairs } from "./abi.js";
import { splitAuthority } from "../http/authority.js";
import type { ExchangeRecord } from "../telemetry/record.js";

export function int64(value: number): Uint8Array {
  const b = Buffer.allocUnsafe(8);
  b.writeBigInt64LE(BigInt(Math.trunc(value)));
  return b;
}

function bool(value: boolean): Uint8Array {
  return Uint8Array.of(value ? 1 : 0);
}

function str(value: string | undefined): Uint8Array | undefined {
  return value === undefined ? undefined : Buffer.from(value);
}

/** Lower-case names, repeated values joined with ",", as Envoy's HeadersWrapper presents a header map. */
function headerMap(flat: readonly string[], name: string | undefined): Uint8Array | undefined {
  if (name !== undefined) {
    const values: string[] = [];
    for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) values.push(flat[i + 1]!);
    return values.length === 0 ? undefined : Buffer.from(values.join(","));
  }
  const joined = new Map<string, string>();
  for (let i = 0; i < flat.length; i += 2) {
    const prior = joined.get(flat[i]!);
    joined.set(flat[i]!, prior === undefined ? flat[i + 1]! : `${prior},${flat[i + 1]!}`);
  }
  return encodePairs([...joined].flat());
}

/** The port of "host:port" ("[v6]:port" too), as an int64 value; 0 without one. */
function portOf(address: string): Uint8Array {
  return int64(Number(splitAuthority(address).port ?? 0));
}

/** What a stream's properties come from: the request's record, the headers as the plugins see them, the response once it is known. */
export interface PropertyFacts {
  readonly record: ExchangeRecord;
  readonly requestHeaders: readonly string[];
  readonly responseHeaders: readonly string[] | undefined;
  /** When the request was over (request.duration), 0 while it runs. */
  readonly endedAt: number;
}

export function streamProperty(facts: PropertyFacts, path: readonly string[]): Uint8Array | undefined {
  const r = facts.record;
  const ds = r.ds;
  const [root, key, sub] = path;
  switch (root) {
    case "request": {
      const pseudo = (name: string): string | undefined => {
        for (let i = 0; i < facts.requestHeaders.length; i += 2) if (facts.requestHeaders[i] === name) return facts.requestHeaders[i + 1];
        return undefined;
      };
      switch (key) {
        case "path":
          return str(pseudo(":path"));
        case "url_path":
          return str(pseudo(":path")?.split("?")[0]);
        case "query": {
          const p = pseudo(":path") ?? "";
          return Buffer.from(p.includes("?") ? p.slice(p.indexOf("?") + 1) : "");
        }
        case "host":
          return str(pseudo(":authority"));
        case "method":
          return str(pseudo(":method"));
        case "scheme":
          return str(pseudo(":scheme"));
        case "headers":
          return headerMap(facts.requestHeaders, sub);
        case "id":
          return str(pseudo("x-request-id") ?? (r.requestId || undefined));
        case "useragent":
          return str(pseudo("user-agent"));
        case "referer":
          return str(pseudo("referer"));
        case "protocol":
          return Buffer.from(ds.headers.includes(":authority") ? "HTTP/2" : "HTTP/1.1");
        case "time":
          return int64(r.startTime * 1e6);
        case "duration":
          return facts.endedAt === 0 ? undefined : int64((facts.endedAt - r.startedAt) * 1e6);
        case "size":
          return int64(ds.bodyBytes);
      }
      return undefined;
    }
    case "response":
      if (!facts.responseHeaders && key !== "code_details" && key !== "flags") return undefined;
      switch (key) {
        case "code":
          return r.status > 0 ? int64(r.status) : undefined;
        case "code_details":
          return r.details ? Buffer.from(r.details) : undefined;
        case "headers":
          return headerMap(facts.responseHeaders ?? [], sub);
        case "size":
          return int64(r.bytesSent);
        case "total_size":
          return int64(r.bytesSent + r.headerBytesSent);
        case "grpc_status":
          return r.grpcStatus === "" ? undefined : int64(Number(r.grpcStatus));
      }
      return undefined;
    case "source":
      // The listeners keep the client's address, not its port: source.port is not found.
      return key === "address" ? Buffer.from(ds.remoteAddress) : undefined;
    case "destination": {
      const local = ds.originalDestination ?? ds.localAddress;
      return key === "address" ? Buffer.from(local) : key === "port" ? portOf(local) : undefined;
    }
    case "upstream":
      if (r.upstreamHost === "") return undefined;
      return key === "address" ? Buffer.from(r.upstreamHost) : key === "port" ? portOf(r.upstreamHost) : undefined;
    case "connection":
      switch (key) {
        case "mtls":
          return bool(ds.peer !== undefined);
        case "requested_server_name":
          return Buffer.from(ds.peer?.sni ?? "");
        case "uri_san_peer_certificate":
          return ds.peer?.principal ? Buffer.from(ds.peer.principal) : undefined;
        case "uri_san_local_certificate":
          return ds.peer?.localPrincipal ? Buffer.from(ds.peer.localPrincipal) : undefined;
      }
      return undefined;
    // Envoy ≥ 1.33 names these under xds.*; the older top-level names are kept, as filters still read them.
    case "xds":
      return key === "cluster_name" ? str(r.clusterName || undefined) : key === "route_name" ? str(r.routeName || undefined) : undefined;
    case "cluster_name":
      return str(r.clusterName || undefined);
    case "route_name":
      return str(r.routeName || undefined);
  }
  return undefined;
}

/** node.* from the proxy's identity (Istio's node metadata names) and the plugin's own names. */
export function nodeProperty(node: { id: string; metadata: Record<string, string | Record<string, string>> }, path: readonly string[]): Uint8Array | undefined {
  if (path[0] !== "node" && !(path[0] === "xds" && path[1] === "node")) return undefined;
  const rest = path[0] === "xds" ? path.slice(2) : path.slice(1);
  if (rest[0] === "id") return Buffer.from(node.id);
  if (rest[0] !== "metadata") return undefined;
  if (rest.length === 1) return encodePairs(Object.entries(node.metadata).flatMap(([k, v]) => (typeof v === "string" ? [k, v] : [])));
  const value = node.metadata[rest[1]!];
  if (typeof value === "string") return rest.length === 2 ? Buffer.from(value) : undefined;
  if (value === undefined) return undefined;
  if (rest.length === 2) return encodePairs(Object.entries(value).flat());
  const leaf = value[rest[2]!];
  return leaf === undefined ? undefined : Buffer.from(leaf);
}
