// The Proxy-Wasm ABI's numbers and wire formats (spec v0.2.1, as Envoy's
// proxy-wasm-cpp-host implements it; ../shared/reference/proxy-wasm-abi.md §1).
// Everything a host call or a callback exchanges with a module is one of these
// integers, or bytes in one of the two encodings below.

/** proxy_status_t: what every host call returns. */
export const enum Status {
  OK = 0,
  NOT_FOUND = 1,
  BAD_ARGUMENT = 2,
  SERIALIZATION_FAILURE = 3,
  PARSE_FAILURE = 4,
  INVALID_MEMORY_ACCESS = 6,
  EMPTY = 7,
  CAS_MISMATCH = 8,
  INTERNAL_FAILURE = 10,
  UNIMPLEMENTED = 12,
}

/** What a header callback returns (Envoy's FilterHeadersStatus); body and trailer callbacks use 0 and 1 alike. */
export const enum Action {
  CONTINUE = 0,
  /** Any value above CONTINUE stops the stream until proxy_continue_stream (Envoy clamps larger values to the strongest stop). */
  PAUSE = 1,
}

export const enum BufferType {
  HTTP_REQUEST_BODY = 0,
  HTTP_RESPONSE_BODY = 1,
  DOWNSTREAM_DATA = 2,
  UPSTREAM_DATA = 3,
  HTTP_CALL_RESPONSE_BODY = 4,
  GRPC_RECEIVE_BUFFER = 5,
  VM_CONFIGURATION = 6,
  PLUGIN_CONFIGURATION = 7,
  CALL_DATA = 8,
}

export const enum MapType {
  HTTP_REQUEST_HEADERS = 0,
  HTTP_REQUEST_TRAILERS = 1,
  HTTP_RESPONSE_HEADERS = 2,
  HTTP_RESPONSE_TRAILERS = 3,
  GRPC_INITIAL_METADATA = 4,
  GRPC_TRAILING_METADATA = 5,
  HTTP_CALL_RESPONSE_HEADERS = 6,
  HTTP_CALL_RESPONSE_TRAILERS = 7,
}

export const enum StreamType {
  HTTP_REQUEST = 0,
  HTTP_RESPONSE = 1,
  DOWNSTREAM = 2,
  UPSTREAM = 3,
}

export const enum MetricType {
  COUNTER = 0,
  GAUGE = 1,
  HISTOGRAM = 2,
}

/** WASI errno values the host answers with. */
export const enum Errno {
  SUCCESS = 0,
  BADF = 8,
  INVAL = 28,
  NOTSUP = 58,
}

/** The ABI versions a module can declare by exporting `proxy_abi_version_<v>`; cpp-host knows exactly these. */
export const ABI_VERSIONS = ["0_1_0", "0_2_0", "0_2_1"] as const;
export type AbiVersion = (typeof ABI_VERSIONS)[number];

/** cpp-host's limits on a serialized map (limits.h): larger or longer input decodes as an empty map. */
const PAIRS_MAX_BYTES = 1 << 20;
const PAIRS_MAX_COUNT = 1024;

/**
 * Encodes a flat [name, value, ...] list in the ABI's map format: a u32 count,
 * then every (key length, value length) pair, then each key and value followed
 * by a NUL. All integers are little-endian.
 */
export function encodePairs(flat: readonly string[]): Buffer {
  const count = flat.length >> 1;
  const out = Buffer.allocUnsafe(pairsSize(flat));
  out.writeUInt32LE(count, 0);
  let at = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const k = out.write(flat[2 * i]!, at);
    out[at + k] = 0;
    at += k + 1;
    const v = out.write(flat[2 * i + 1]!, at);
    out[at + v] = 0;
    at += v + 1;
    out.writeUInt32LE(k, 4 + i * 8);
    out.writeUInt32LE(v, 8 + i * 8);
  }
  return out;
}

/** The encoded size of a flat [name, value, ...] list (proxy_get_header_map_size), without encoding it. */
export function pairsSize(flat: readonly string[]): number {
  let size = 4 + (flat.length >> 1) * 8;
  for (let i = 0; i < flat.length; i++) size += Buffer.byteLength(flat[i]!) + 1;
  return size;
}

/**
 * Decodes the map format; undefined for anything malformed (as cpp-host's
 * toPairs, which then yields an empty map: the caller decides). Size 0, a
 * single NUL byte and a count of 0 are all the empty map.
 */
export function decodePairs(bytes: Uint8Array): string[] | undefined {
  if (bytes.length <= 1) return [];
  if (bytes.length < 4 || bytes.length > PAIRS_MAX_BYTES) return undefined;
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const count = view.readUInt32LE(0);
  if (count > PAIRS_MAX_COUNT || 4 + count * 8 > view.length) return undefined;
  const out: string[] = new Array<string>(count * 2);
  let at = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const k = view.readUInt32LE(4 + i * 8);
    const v = view.readUInt32LE(8 + i * 8);
    if (at + k + 1 + v + 1 > view.length || view[at + k] !== 0 || view[at + k + 1 + v] !== 0) return undefined;
    out[2 * i] = view.toString("utf8", at, at + k);
    out[2 * i + 1] = view.toString("utf8", at + k + 1, at + k + 1 + v);
    at += k + v + 2;
  }
  return at === view.length ? out : undefined;
}
