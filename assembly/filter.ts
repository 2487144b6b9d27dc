// The route core as a Proxy-Wasm HTTP filter, for Envoy (`npm run build:filter`
// builds build/route-filter.wasm). The same table and decision code as the
// sidecar's core (index.ts): on each request the filter reads the fields the
// table references through the host's header map, decides, and hands the
// decision to Envoy as request headers Envoy can route on:
//   x-instio-cluster   the chosen cluster's name (a route with cluster_header routes on it)
//   x-instio-endpoint  the chosen endpoint, "address:port" (also filter state wasm.instio_endpoint)
// A request the table has no route for passes unannotated; the client's own
// headers of these names are always removed.
//
// The plugin configuration is the table, as `instio compile-table CONFIG`
// writes it: a memory snapshot of a route core laid out by this very module
// (image, request and decision areas, hash tables) and the names the decision
// indexes. It is copied to the address it was laid out at; the names stay.
//
// Memory: [static data | snapshot | names] from the heap base; the host's
// allocations (malloc) go to a scratch area at SCRATCH_BASE and are dropped
// after every callback, so the filter allocates nothing that lives on. Like
// the core, this code allocates no managed objects: byte strings are static
// data and pointers.

import { SLOT_AUTHORITY, SLOT_COUNT_MAX, SLOT_FIRST_HEADER, SLOT_METHOD, SLOT_PATH, SLOT_QUERY, SLOT_SCHEME, SLOT_SIZE, SLOT_SOURCE_IP, REQUEST_BYTES, OUT_CLUSTER, OUT_ENDPOINT, OUT_SIZE } from "./layout";
import { init, route } from "./index";
import { fnvStart, fnvStep } from "./bytes";

export { heapBase, init, route, pickEndpoint, regex, hash64 } from "./index";

// ── the host's functions (Proxy-Wasm ABI 0.2.1) ──

@external("env", "proxy_log")
declare function proxy_log(level: u32, ptr: usize, len: usize): u32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(type: u32, start: u32, max: u32, ptrOut: usize, sizeOut: usize): u32;
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(type: u32, keyPtr: usize, keyLen: usize, ptrOut: usize, sizeOut: usize): u32;
@external("env", "proxy_replace_header_map_value")
declare function proxy_replace_header_map_value(type: u32, keyPtr: usize, keyLen: usize, valuePtr: usize, valueLen: usize): u32;
@external("env", "proxy_remove_header_map_value")
declare function proxy_remove_header_map_value(type: u32, keyPtr: usize, keyLen: usize): u32;
@external("env", "proxy_get_property")
declare function proxy_get_property(pathPtr: usize, pathLen: usize, ptrOut: usize, sizeOut: usize): u32;
@external("env", "proxy_set_property")
declare function proxy_set_property(pathPtr: usize, pathLen: usize, valuePtr: usize, valueLen: usize): u32;
@external("env", "proxy_get_current_time_nanoseconds")
declare function proxy_get_current_time_nanoseconds(out: usize): u32;

const OK: u32 = 0;
const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;
const LOG_ERROR: u32 = 4;

/** The table's container, as host/route-filter/filter-table.ts writes it (u32 fields, little-endian). */
const TABLE_MAGIC: u32 = 0x31465349; // "ISF1"
const T_BASE: u32 = 4;
const T_SNAPSHOT_LEN: u32 = 8;
const T_REQUEST_AT: u32 = 12;
const T_OUT_AT: u32 = 16;
const T_FLAGS: u32 = 20;
const T_HEADER_COUNT: u32 = 24;
const T_CLUSTER_COUNT: u32 = 28;
const T_ENDPOINT_COUNT: u32 = 32;
const T_SPAN: u32 = 36; //  the snapshot's whole length: past T_SNAPSHOT_LEN it is zeros, left out of the table
const T_CHECKSUM: u32 = 40; // FNV-1a of everything after the header
const T_NAMES: u32 = 44; // then every name as (u32 length, bytes): headers, clusters, endpoints; then the snapshot
const F_METHOD: u32 = 1;
const F_QUERY: u32 = 2;
const F_SCHEME: u32 = 4;
const F_SOURCE_IP: u32 = 8;

/** The host's allocations land here, above any table this filter accepts. */
const SCRATCH_BASE: usize = 256 << 20;

// Byte strings (UTF-8, static data).
const K_AUTHORITY = memory.data<u8>([0x3a, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x79]); // ":authority"
const K_PATH = memory.data<u8>([0x3a, 0x70, 0x61, 0x74, 0x68]); // ":path"
const K_METHOD = memory.data<u8>([0x3a, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64]); // ":method"
const K_SCHEME = memory.data<u8>([0x3a, 0x73, 0x63, 0x68, 0x65, 0x6d, 0x65]); // ":scheme"
const K_SOURCE_ADDRESS = memory.data<u8>([0x73, 0x6f, 0x75, 0x72, 0x63, 0x65, 0x00, 0x61, 0x64, 0x64, 0x72, 0x65, 0x73, 0x73]); // "source\0address"
const K_CLUSTER = memory.data<u8>([0x78, 0x2d, 0x69, 0x6e, 0x73, 0x74, 0x69, 0x6f, 0x2d, 0x63, 0x6c, 0x75, 0x73, 0x74, 0x65, 0x72]); // "x-instio-cluster"
const K_ENDPOINT = memory.data<u8>([0x78, 0x2d, 0x69, 0x6e, 0x73, 0x74, 0x69, 0x6f, 0x2d, 0x65, 0x6e, 0x64, 0x70, 0x6f, 0x69, 0x6e, 0x74]); // "x-instio-endpoint"
const K_ENDPOINT_STATE = memory.data<u8>([0x69, 0x6e, 0x73, 0x74, 0x69, 0x6f, 0x5f, 0x65, 0x6e, 0x64, 0x70, 0x6f, 0x69, 0x6e, 0x74]); // "instio_endpoint"
const M_BAD_TABLE = memory.data<u8>([0x69, 0x6e, 0x73, 0x74, 0x69, 0x6f, 0x3a, 0x20, 0x74, 0x68, 0x65, 0x20, 0x70, 0x6c, 0x75, 0x67, 0x69, 0x6e, 0x20, 0x63, 0x6f, 0x6e, 0x66, 0x69, 0x67, 0x75, 0x72, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x20, 0x69, 0x73, 0x20, 0x6e, 0x6f, 0x74, 0x20, 0x61, 0x20, 0x74, 0x61, 0x62, 0x6c, 0x65, 0x20, 0x66, 0x72, 0x6f, 0x6d, 0x20, 0x27, 0x69, 0x6e, 0x73, 0x74, 0x69, 0x6f, 0x20, 0x63, 0x6f, 0x6d, 0x70, 0x69, 0x6c, 0x65, 0x2d, 0x74, 0x61, 0x62, 0x6c, 0x65, 0x27, 0x20, 0x66, 0x6f, 0x72, 0x20, 0x74, 0x68, 0x69, 0x73, 0x20, 0x62, 0x75, 0x69, 0x6c, 0x64]);
const M_BAD_TABLE_LEN: usize = 90; // "instio: the plugin configuration is not a table from 'instio compile-table' for this build"

// Out-parameters the host writes (pointer, length).
const RET = memory.data(8);

let scratch: usize = SCRATCH_BASE;
let configured = false;
let requestAt: usize = 0;
let outAt: usize = 0;
let flags: u32 = 0;
let headerCount: u32 = 0;
/** Tables of (pointer, length) pairs into the names area. */
let headerNames: usize = 0;
let clusterNames: usize = 0;
let clusterCount: u32 = 0;
let endpointNames: usize = 0;
let endpointCount: u32 = 0;
let cursor: u32 = 0; // bytes used in the request area
let seed: u32 = 0x9e3779b9;

export function proxy_abi_version_0_2_1(): void {}

/** The host's allocator: scratch memory, dropped when the callback returns. */
export function malloc(size: usize): usize {
  const at = (scratch + 7) & ~7;
  const end = at + size;
  if (!ensureMemory(end)) return 0;
  scratch = end;
  return at;
}

function ensureMemory(end: usize): bool {
  const have = <usize>memory.size() << 16;
  if (end <= have) return true;
  return memory.grow(<i32>((end - have + 0xffff) >> 16)) >= 0;
}

function dropScratch(): void {
  scratch = SCRATCH_BASE;
}

export function proxy_on_context_create(_context: u32, _parent: u32): void {}

export function proxy_on_vm_start(_root: u32, _size: u32): u32 {
  if (proxy_get_current_time_nanoseconds(RET) == OK) seed = <u32>load<u64>(RET) | 1;
  return 1;
}

/** Loads the table from the plugin configuration; false (the plugin is rejected) when it is not one for this build. */
export function proxy_on_configure(root: u32, size: u32): u32 {
  const ok = configure(size);
  dropScratch();
  if (!ok) proxy_log(LOG_ERROR, M_BAD_TABLE, M_BAD_TABLE_LEN);
  return ok ? 1 : 0;
}

function configure(size: u32): bool {
  configured = false; // a table that fails half-way must not leave the previous one half-overwritten in use
  if (size < T_NAMES || proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, RET, RET + 4) != OK) return false;
  const t = <usize>load<u32>(RET);
  const len = load<u32>(RET + 4);
  if (len < T_NAMES || load<u32>(t) != TABLE_MAGIC || load<u32>(t + T_CHECKSUM) != checksum(t + T_NAMES, len - T_NAMES)) return false;
  // Bounds in 64 bits: no sum of the table's numbers can wrap around.
  const end = <u64>t + <u64>len;
  const base = <u64>load<u32>(t + T_BASE);
  const snapshotLen = <u64>load<u32>(t + T_SNAPSHOT_LEN);
  const span = <u64>load<u32>(t + T_SPAN);
  // Laid out by this module: the snapshot starts at its heap base and ends below the scratch area.
  if (base != <u64>((<usize>__heap_base + 15) & ~15) || snapshotLen > span || base + span > <u64>SCRATCH_BASE) return false;
  const reqAt = <u64>load<u32>(t + T_REQUEST_AT);
  const decisionAt = <u64>load<u32>(t + T_OUT_AT);
  if (reqAt < base || reqAt + <u64>SLOT_COUNT_MAX * SLOT_SIZE + REQUEST_BYTES > base + span || decisionAt < base || decisionAt + OUT_SIZE > base + span) return false;
  headerCount = load<u32>(t + T_HEADER_COUNT);
  clusterCount = load<u32>(t + T_CLUSTER_COUNT);
  endpointCount = load<u32>(t + T_ENDPOINT_COUNT);
  const total = <u64>headerCount + <u64>clusterCount + <u64>endpointCount;
  // Every name takes at least its 4-byte length: more names than that cannot fit.
  if (<u64>SLOT_FIRST_HEADER + <u64>headerCount > <u64>SLOT_COUNT_MAX || total > (<u64>len - T_NAMES) / 4) return false;
  // The names go after the snapshot, with a (pointer, length) table for each list.
  const names = <u64>t + T_NAMES;
  let p = names;
  for (let i: u64 = 0; i < total; i++) {
    if (p + 4 > end) return false;
    p += 4 + <u64>load<u32>(<usize>p);
  }
  if (p + snapshotLen != end) return false;
  const namesLen = p - names;
  const tables = (base + span + 15) & ~15;
  const namesAt = tables + total * 8;
  if (namesAt + namesLen > <u64>SCRATCH_BASE || !ensureMemory(<usize>(namesAt + namesLen))) return false;
  memory.copy(<usize>base, <usize>p, <usize>snapshotLen);
  memory.fill(<usize>(base + snapshotLen), 0, <usize>(span - snapshotLen)); // a table loaded before may have left bytes there
  memory.copy(<usize>namesAt, <usize>names, <usize>namesLen);
  headerNames = <usize>tables;
  clusterNames = headerNames + <usize>headerCount * 8;
  endpointNames = clusterNames + <usize>clusterCount * 8;
  let q = <usize>namesAt;
  for (let i: u32 = 0; <u64>i < total; i++) {
    const n = load<u32>(q);
    store<u32>(headerNames + <usize>i * 8, <u32>(q + 4));
    store<u32>(headerNames + <usize>i * 8 + 4, n);
    q += 4 + <usize>n;
  }
  requestAt = <usize>reqAt;
  outAt = <usize>decisionAt;
  flags = load<u32>(t + T_FLAGS);
  configured = init(<u32>base, <u32>requestAt, <u32>outAt) == 0;
  return configured;
}

/** FNV-1a over the table after its header: a table damaged in transit or by hand is refused, not run. */
function checksum(at: usize, n: u32): u32 {
  let h = fnvStart();
  for (let i: u32 = 0; i < n; i++) h = fnvStep(h, load<u8>(at + i));
  return h;
}

// ── per request ──

/** Starts a request: every slot absent, the byte area empty (as RouteCore.begin). */
function begin(): void {
  const n = <u32>SLOT_FIRST_HEADER + headerCount;
  for (let i: u32 = 0; i < n; i++) store<i32>(requestAt + <usize>i * SLOT_SIZE + 4, -1);
  cursor = 0;
}

/** Copies `len` bytes at `ptr` into slot `slot`; false when the request area is full. */
function setSlot(slot: u32, ptr: usize, len: u32): bool {
  if (cursor + len > <u32>REQUEST_BYTES) return false;
  const at = requestAt + <usize>SLOT_COUNT_MAX * SLOT_SIZE + cursor;
  memory.copy(at, ptr, len);
  store<u32>(requestAt + <usize>slot * SLOT_SIZE, <u32>at);
  store<i32>(requestAt + <usize>slot * SLOT_SIZE + 4, <i32>len);
  cursor += len;
  return true;
}

/** Reads request header `key` into the RET pair; false when the request has none. */
@inline function header(key: usize, keyLen: usize): bool {
  return proxy_get_header_map_value(REQUEST_HEADERS, key, keyLen, RET, RET + 4) == OK;
}

function retPtr(): usize {
  return <usize>load<u32>(RET);
}
function retLen(): u32 {
  return load<u32>(RET + 4);
}

/** xorshift32: the weighted pick's and the load balancer's randomness. */
function random(): u32 {
  let x = seed;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  seed = x;
  return x;
}

export function proxy_on_request_headers(_context: u32, _headers: u32, _endOfStream: u32): u32 {
  // What the client sent under these names must not choose a cluster.
  proxy_remove_header_map_value(REQUEST_HEADERS, K_CLUSTER, 16);
  proxy_remove_header_map_value(REQUEST_HEADERS, K_ENDPOINT, 17);
  if (configured && readRequest()) annotate(route(random()));
  dropScratch();
  return 0; // Continue: Envoy routes, on the headers set here
}

/** The referenced fields into the request area; false when they do not fit (the request passes unannotated). */
function readRequest(): bool {
  begin();
  if (header(K_AUTHORITY, 10) && !setSlot(SLOT_AUTHORITY, retPtr(), retLen())) return false;
  if (header(K_PATH, 5)) {
    const p = retPtr();
    const n = retLen();
    let q: u32 = 0;
    while (q < n && load<u8>(p + q) != 0x3f) q++; // '?'
    if (!setSlot(SLOT_PATH, p, q)) return false;
    if ((flags & F_QUERY) != 0 && q < n && !setSlot(SLOT_QUERY, p + q + 1, n - q - 1)) return false;
  }
  if ((flags & F_METHOD) != 0 && header(K_METHOD, 7) && !setSlot(SLOT_METHOD, retPtr(), retLen())) return false;
  if ((flags & F_SCHEME) != 0 && header(K_SCHEME, 7) && !setSlot(SLOT_SCHEME, retPtr(), retLen())) return false;
  if ((flags & F_SOURCE_IP) != 0 && proxy_get_property(K_SOURCE_ADDRESS, 14, RET, RET + 4) == OK) {
    // "address:port" (or "[v6]:port"): the address alone, as the sidecar hashes it.
    const p = retPtr();
    let n = retLen();
    let colon = n;
    while (colon > 0 && load<u8>(p + colon - 1) != 0x3a) colon--;
    if (colon > 0) n = colon - 1;
    let start: usize = 0;
    if (n >= 2 && load<u8>(p) == 0x5b && load<u8>(p + n - 1) == 0x5d) {
      start = 1;
      n -= 2;
    }
    if (!setSlot(SLOT_SOURCE_IP, p + start, n)) return false;
  }
  for (let i: u32 = 0; i < headerCount; i++) {
    const name = headerNames + <usize>i * 8;
    if (header(<usize>load<u32>(name), <usize>load<u32>(name + 4)) && !setSlot(SLOT_FIRST_HEADER + i, retPtr(), retLen())) return false;
  }
  return true;
}

/** The decision as headers Envoy routes on, and the endpoint as filter state. */
function annotate(code: i32): void {
  if (code < 0) return;
  const cluster = load<i32>(outAt + OUT_CLUSTER);
  if (cluster >= 0 && <u32>cluster < clusterCount) {
    const name = clusterNames + <usize>cluster * 8;
    proxy_replace_header_map_value(REQUEST_HEADERS, K_CLUSTER, 16, <usize>load<u32>(name), <usize>load<u32>(name + 4));
  }
  const endpoint = load<i32>(outAt + OUT_ENDPOINT);
  if (endpoint >= 0 && <u32>endpoint < endpointCount) {
    const name = endpointNames + <usize>endpoint * 8;
    proxy_replace_header_map_value(REQUEST_HEADERS, K_ENDPOINT, 17, <usize>load<u32>(name), <usize>load<u32>(name + 4));
    proxy_set_property(K_ENDPOINT_STATE, 15, <usize>load<u32>(name), <usize>load<u32>(name + 4));
  }
}

export function proxy_on_done(_context: u32): u32 {
  return 1;
}

export function proxy_on_log(_context: u32): void {}

export function proxy_on_delete(_context: u32): void {}
