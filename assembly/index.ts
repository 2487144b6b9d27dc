// The route core: the exported ABI of the Wasm module. Integers only.
//
// HOT PATH — change with care. route() runs once per request. It must not
// allocate, throw or call back into the host: everything it reads is either the
// table image (written once per snapshot) or the request area (written by the
// host right before the call), and everything it answers is an integer.
//
// The semantics are those of host/core/reference-matcher.ts; the property tests
// in test/property require the two to agree on random tables and requests.

import {
  IMAGE_MAGIC, H_MAGIC, H_VHOSTS, H_DOMAIN_TABLE, H_DOMAIN_MASK, H_WILDCARD_COUNT, H_WILDCARDS,
  H_ENTRIES, H_ROUTES, H_DESTS, H_CLUSTERS, H_ACTIVE, H_ELIGIBLE,
  DS_HASH, DS_STR, DS_LEN, DS_VHOST, DS_SIZE, EMPTY_SLOT, WC_STR, WC_LEN, WC_VHOST, WC_SIZE,
  VH_UNINDEXED, VH_UNINDEXED_COUNT, VH_PATH_TABLE, VH_PATH_MASK, VH_PREFIX_LENS, VH_FLAGS, VH_SIZE,
  VHF_CASE_INSENSITIVE, VHF_EXACT, VHF_EXACT_CI, VH_MAX_PREFIX,
  PS_HASH, PS_KIND, PS_STR, PS_LEN, PS_LIST, PS_COUNT, PS_SIZE, PK_EXACT, PK_PREFIX, PK_EXACT_CI, PK_PREFIX_CI,
  E_ROUTE, E_URI_KIND, E_URI_CI, E_URI_STR, E_URI_LEN, E_METHOD_KIND, E_METHOD_STR, E_METHOD_LEN,
  E_AUTH_KIND, E_AUTH_STR, E_AUTH_LEN, E_SCHEME_KIND, E_SCHEME_STR, E_SCHEME_LEN, E_COND_COUNT, E_CONDS, E_SIZE,
  SM_NONE, SM_EXACT, SM_PRESENT, SM_REGEX,
  C_SOURCE, C_KEY, C_KEY_STR, C_KEY_LEN, C_KIND, C_INVERT, C_VALUE_STR, C_VALUE_LEN, C_SIZE, CS_HEADER,
  R_DEST_START, R_DEST_COUNT, R_TOTAL_WEIGHT, R_SIZE, D_CLUSTER, D_SIZE, CLUSTER_MISSING,
  CL_EP_START, CL_EP_COUNT, CL_FLAGS, CL_SIZE, CLF_PASSTHROUGH, CLF_WEIGHTED,
  CL_LB, CL_ELIGIBLE_COUNT, CL_CURSOR, CL_TABLE, CL_TABLE_COUNT, CL_HASH_SOURCE, CL_HASH_SLOT, CL_HASH_NAME_STR, CL_HASH_NAME_LEN,
  LB_ROUND_ROBIN, LB_RANDOM, LB_RING_HASH, LB_MAGLEV, HS_COOKIE, HS_QUERY, HS_SOURCE_IP,
  SLOT_METHOD, SLOT_AUTHORITY, SLOT_PATH, SLOT_QUERY, SLOT_SCHEME, SLOT_SOURCE_IP, SLOT_FIRST_HEADER, SLOT_SIZE,
  OUT_VHOST, OUT_ENTRY, OUT_ROUTE, OUT_DEST, OUT_CLUSTER, OUT_ENDPOINT, OUT_HASH_MISSING,
  RC_NO_VHOST, RC_NO_ROUTE, RC_NO_CLUSTER, RC_NO_ENDPOINT,
} from "./layout";
import { fnvStart, fnvStep, lowerAscii, hashWords, hashWordsLower, bytesEqual, bytesEqualLower, stringMatches, pathKeySalt } from "./bytes";
import { pickWeighted, pickLeastRequest, pickRoundRobin, pickScheduled, pickWeightedLeastRequest, nthEligible, ringLookup, scale } from "./select";
import { xxhash64 } from "./xxhash";
import { runRegex } from "./regex";

let image: u32 = 0;
let request: u32 = 0;
let out: u32 = 0;
const noMatch: i32 = 0x7fffffff;

/** First free byte after the module's static data: the host places the image here. */
export function heapBase(): u32 {
  return <u32>__heap_base;
}

/** Binds the core to a table image and to the request/decision areas. Returns 0, or -1 for a bad image. */
export function init(imagePtr: u32, requestPtr: u32, outPtr: u32): i32 {
  if (load<i32>(imagePtr + H_MAGIC) != IMAGE_MAGIC) return -1;
  image = imagePtr;
  request = requestPtr;
  out = outPtr;
  return 0;
}

@inline function header(field: u32): u32 {
  return load<u32>(image + field);
}
@inline function slotOffset(slot: u32): u32 {
  return load<u32>(request + slot * SLOT_SIZE);
}
@inline function slotLength(slot: u32): i32 {
  return load<i32>(request + slot * SLOT_SIZE + 4);
}

/**
 * Decides one request from the fields in the request area. `random` drives the
 * weighted pick and the endpoint choice, so equal inputs give equal decisions.
 * Returns the route index (>= 0) or an RC_* code; details go to the decision area.
 */
export function route(random: u32): i32 {
  store<i32>(out + OUT_VHOST, -1);
  store<i32>(out + OUT_ENTRY, -1);
  store<i32>(out + OUT_ROUTE, -1);
  store<i32>(out + OUT_DEST, -1);
  store<i32>(out + OUT_CLUSTER, -1);
  store<i32>(out + OUT_ENDPOINT, -1);
  store<i32>(out + OUT_HASH_MISSING, 0);

  const vhost = findVirtualHost();
  if (vhost < 0) return RC_NO_VHOST;
  store<i32>(out + OUT_VHOST, vhost);

  const entry = findEntry(header(H_VHOSTS) + <u32>vhost * VH_SIZE);
  if (entry == noMatch) return RC_NO_ROUTE;
  store<i32>(out + OUT_ENTRY, entry);
  const routeIndex = load<i32>(header(H_ENTRIES) + <u32>entry * E_SIZE + E_ROUTE);
  store<i32>(out + OUT_ROUTE, routeIndex);

  const r = header(H_ROUTES) + <u32>routeIndex * R_SIZE;
  const destCount = load<u32>(r + R_DEST_COUNT);
  if (destCount == 0) return routeIndex; // redirect or direct response: answered by the host
  const dest = pickWeighted(header(H_DESTS), load<u32>(r + R_DEST_START), destCount, load<u32>(r + R_TOTAL_WEIGHT), random);
  store<i32>(out + OUT_DEST, dest);
  const cluster = load<i32>(header(H_DESTS) + <u32>dest * D_SIZE + D_CLUSTER);
  if (cluster == CLUSTER_MISSING) return RC_NO_CLUSTER;
  store<i32>(out + OUT_CLUSTER, cluster);

  const c = header(H_CLUSTERS) + <u32>cluster * CL_SIZE;
  if (load<u32>(c + CL_FLAGS) & CLF_PASSTHROUGH) return routeIndex;
  const endpoint = pickInCluster(c, random);
  if (endpoint < 0) return RC_NO_ENDPOINT;
  store<i32>(out + OUT_ENDPOINT, endpoint);
  return routeIndex;
}

// ── Endpoint: the cluster's load balancer over its eligible endpoints ────────

/** A global endpoint index, or RC_NO_ENDPOINT when no endpoint may be picked (503 UH). */
function pickInCluster(c: u32, random: u32): i32 {
  const start = load<u32>(c + CL_EP_START);
  const count = load<u32>(c + CL_EP_COUNT);
  const eligibleCount = load<u32>(c + CL_ELIGIBLE_COUNT);
  if (count == 0 || eligibleCount == 0) return RC_NO_ENDPOINT;
  const eligible = header(H_ELIGIBLE);
  const lb = load<u32>(c + CL_LB);
  if (lb == LB_RING_HASH || lb == LB_MAGLEV) {
    if (findHashKey(c)) {
      const hash = xxhash64(foundOffset, <u32>foundLength, 0);
      const table = load<u32>(c + CL_TABLE);
      const entries = load<u32>(c + CL_TABLE_COUNT);
      if (lb == LB_RING_HASH) return ringLookup(table, entries, hash);
      return load<i32>(table + <u32>(hash % <u64>entries) * 4);
    }
    // No key in the request: Envoy's hash policy yields no hash and the pick is random.
    return <i32>(start + nthEligible(eligible, start, count, scale(random, eligibleCount)));
  }
  if (lb == LB_RANDOM) {
    // Envoy's RANDOM ignores weights.
    const n = scale(random, eligibleCount);
    return <i32>(start + (eligibleCount == count ? n : nthEligible(eligible, start, count, n)));
  }
  if (load<u32>(c + CL_FLAGS) & CLF_WEIGHTED) {
    const schedule = load<u32>(c + CL_TABLE);
    const entries = load<u32>(c + CL_TABLE_COUNT);
    if (lb == LB_ROUND_ROBIN) return pickScheduled(c + CL_CURSOR, schedule, entries);
    return pickWeightedLeastRequest(header(H_ACTIVE), schedule, entries, random);
  }
  if (lb == LB_ROUND_ROBIN) return <i32>(start + pickRoundRobin(c + CL_CURSOR, eligible, start, count));
  return <i32>(start + pickLeastRequest(header(H_ACTIVE), eligible, start, count, eligibleCount, random));
}

/** Puts the cluster's hash key in foundOffset/foundLength; false when the request has none. */
function findHashKey(c: u32): bool {
  const source = load<u32>(c + CL_HASH_SOURCE);
  if (source == HS_QUERY) {
    findQueryParam(load<u32>(c + CL_HASH_NAME_STR), load<u32>(c + CL_HASH_NAME_LEN));
    return foundLength >= 0;
  }
  const slot = source == HS_SOURCE_IP ? SLOT_SOURCE_IP : SLOT_FIRST_HEADER + load<u32>(c + CL_HASH_SLOT);
  foundOffset = slotOffset(slot);
  foundLength = slotLength(slot);
  if (foundLength < 0) {
    if (source == HS_COOKIE) store<i32>(out + OUT_HASH_MISSING, 1);
    return false;
  }
  if (source != HS_COOKIE) return true;
  if (findCookie(load<u32>(c + CL_HASH_NAME_STR), load<u32>(c + CL_HASH_NAME_LEN))) return true;
  store<i32>(out + OUT_HASH_MISSING, 1);
  return false;
}

/** Narrows foundOffset/foundLength from a Cookie header to the value of cookie `name`. */
function findCookie(name: u32, nameLen: u32): bool {
  const end = foundOffset + <u32>foundLength;
  let p = foundOffset;
  while (p < end) {
    while (p < end && (load<u8>(p) == 0x20 || load<u8>(p) == 0x3b)) p++; // spaces and ';'
    let semi = p;
    while (semi < end && load<u8>(semi) != 0x3b) semi++;
    if (semi - p > nameLen && load<u8>(p + nameLen) == 0x3d && bytesEqual(p, name, nameLen)) {
      foundOffset = p + nameLen + 1;
      foundLength = <i32>(semi - foundOffset);
      return true;
    }
    p = semi + 1;
  }
  return false;
}

// ── Virtual host: exact domain by hash, then wildcard suffixes (longest first) ──

function findVirtualHost(): i32 {
  const len = slotLength(SLOT_AUTHORITY);
  if (len < 0) return -1;
  const at = slotOffset(SLOT_AUTHORITY);
  const n = <u32>len;
  const hash = hashWordsLower(at, n);
  const table = header(H_DOMAIN_TABLE);
  const mask = header(H_DOMAIN_MASK);
  let slot = hash & mask;
  while (true) {
    const s = table + slot * DS_SIZE;
    const slen = load<i32>(s + DS_LEN);
    if (slen == EMPTY_SLOT) break;
    if (load<u32>(s + DS_HASH) == hash && <u32>slen == n && bytesEqualLower(at, load<u32>(s + DS_STR), n)) {
      return load<i32>(s + DS_VHOST);
    }
    slot = (slot + 1) & mask;
  }
  const wildcards = header(H_WILDCARDS);
  const count = header(H_WILDCARD_COUNT);
  for (let i: u32 = 0; i < count; i++) {
    const w = wildcards + i * WC_SIZE;
    const wlen = load<u32>(w + WC_LEN);
    // "*.example.com" needs at least one character before ".example.com".
    if (wlen < n && bytesEqualLower(at + n - wlen, load<u32>(w + WC_STR), wlen)) return load<i32>(w + WC_VHOST);
  }
  return -1;
}

// ── Route entry: smallest entry index among the candidates that fully matches ──
// Candidates come from the unindexed list and from the path index (exact keys
// and every prefix key that is a prefix of the path). Each list is sorted, so a
// list is scanned only up to the best entry found so far: first-match-wins
// without scanning routes that cannot match the path.

function findEntry(vh: u32): i32 {
  let best = scanList(load<u32>(vh + VH_UNINDEXED), load<u32>(vh + VH_UNINDEXED_COUNT), noMatch);
  const mask = load<u32>(vh + VH_PATH_MASK);
  if (mask == 0) return best;
  const table = load<u32>(vh + VH_PATH_TABLE);
  const bitmap = load<u32>(vh + VH_PREFIX_LENS);
  const flags = load<u32>(vh + VH_FLAGS);
  const ci = (flags & VHF_CASE_INSENSITIVE) != 0;
  const plen = slotLength(SLOT_PATH);
  if (plen < 0) return best;
  const path = slotOffset(SLOT_PATH);
  const n = <u32>plen;
  // Prefix keys: extend the hash byte by byte, probing at every length some key has.
  const scan = min(n, load<u32>(vh + VH_MAX_PREFIX));
  let h = fnvStart();
  let hci = fnvStart();
  for (let i: u32 = 0; i < scan; i++) {
    const c = <u32>load<u8>(path + i);
    h = fnvStep(h, c);
    if (ci) hci = fnvStep(hci, lowerAscii(c));
    const len = i + 1;
    if (bitSet(bitmap, len)) best = probe(table, mask, PK_PREFIX, h, path, len, best);
    if (ci && bitSet(bitmap + 128, len)) best = probe(table, mask, PK_PREFIX_CI, hci, path, len, best);
  }
  // Exact keys: one hash of the whole path, skipped when the host has none of that kind.
  if (flags & VHF_EXACT) best = probe(table, mask, PK_EXACT, hashWords(path, n), path, n, best);
  if (flags & VHF_EXACT_CI) best = probe(table, mask, PK_EXACT_CI, hashWordsLower(path, n), path, n, best);
  return best;
}

@inline function bitSet(bitmap: u32, n: u32): bool {
  return (load<u8>(bitmap + (n >> 3)) & (1 << (n & 7))) != 0;
}

function probe(table: u32, mask: u32, kind: u32, hash: u32, key: u32, n: u32, best: i32): i32 {
  const salted = hash ^ pathKeySalt(kind);
  let slot = salted & mask;
  const lower = kind == PK_EXACT_CI || kind == PK_PREFIX_CI;
  while (true) {
    const s = table + slot * PS_SIZE;
    const slen = load<i32>(s + PS_LEN);
    if (slen == EMPTY_SLOT) return best;
    if (load<u32>(s + PS_HASH) == salted && load<u32>(s + PS_KIND) == kind && <u32>slen == n) {
      const str = load<u32>(s + PS_STR);
      if (lower ? bytesEqualLower(key, str, n) : bytesEqual(key, str, n)) {
        return scanList(load<u32>(s + PS_LIST), load<u32>(s + PS_COUNT), best);
      }
    }
    slot = (slot + 1) & mask;
  }
}

function scanList(list: u32, count: u32, best: i32): i32 {
  for (let i: u32 = 0; i < count; i++) {
    const entry = load<i32>(list + i * 4);
    if (entry >= best) return best;
    if (entryMatches(header(H_ENTRIES) + <u32>entry * E_SIZE)) return entry;
  }
  return best;
}

function entryMatches(e: u32): bool {
  const uriKind = load<u32>(e + E_URI_KIND);
  if (uriKind != SM_NONE) {
    const len = slotLength(SLOT_PATH);
    if (len < 0) return false;
    const at = slotOffset(SLOT_PATH);
    const want = load<u32>(e + E_URI_STR);
    const wantLen = load<u32>(e + E_URI_LEN);
    const n = <u32>len;
    if (uriKind == SM_REGEX) {
      if (!runRegex(image, want, at, n, 0)) return false;
    } else if (uriKind == SM_EXACT ? n != wantLen : n < wantLen) {
      return false;
    } else if (load<u32>(e + E_URI_CI) != 0 ? !bytesEqualLower(at, want, wantLen) : !bytesEqual(at, want, wantLen)) {
      return false;
    }
  }
  if (!slotMatches(SLOT_METHOD, load<u32>(e + E_METHOD_KIND), load<u32>(e + E_METHOD_STR), load<u32>(e + E_METHOD_LEN))) return false;
  if (!slotMatches(SLOT_AUTHORITY, load<u32>(e + E_AUTH_KIND), load<u32>(e + E_AUTH_STR), load<u32>(e + E_AUTH_LEN))) return false;
  if (!slotMatches(SLOT_SCHEME, load<u32>(e + E_SCHEME_KIND), load<u32>(e + E_SCHEME_STR), load<u32>(e + E_SCHEME_LEN))) return false;
  const conds = load<u32>(e + E_CONDS);
  const count = load<u32>(e + E_COND_COUNT);
  for (let i: u32 = 0; i < count; i++) {
    if (!conditionMatches(conds + i * C_SIZE)) return false;
  }
  return true;
}

@inline function slotMatches(slot: u32, kind: u32, want: u32, wantLen: u32): bool {
  if (kind == SM_NONE) return true;
  const len = slotLength(slot);
  if (len < 0) return false;
  return valueMatches(kind, slotOffset(slot), <u32>len, want, wantLen);
}

/** A StringMatch on a present value; a regex's `want` is its program address. */
@inline function valueMatches(kind: u32, at: u32, n: u32, want: u32, wantLen: u32): bool {
  if (kind == SM_REGEX) return runRegex(image, want, at, n, 0);
  return stringMatches(kind, at, n, want, wantLen);
}

// Query value found by findQueryParam(); module globals instead of a returned pair
// keep the hot path free of allocation.
let foundOffset: u32 = 0;
let foundLength: i32 = -1;

function conditionMatches(c: u32): bool {
  if (load<u32>(c + C_SOURCE) == CS_HEADER) {
    const slot = SLOT_FIRST_HEADER + load<u32>(c + C_KEY);
    foundOffset = slotOffset(slot);
    foundLength = slotLength(slot);
  } else {
    findQueryParam(load<u32>(c + C_KEY_STR), load<u32>(c + C_KEY_LEN));
  }
  const kind = load<u32>(c + C_KIND);
  const invert = load<u32>(c + C_INVERT) != 0;
  let matched: bool;
  if (kind == SM_PRESENT) {
    matched = foundLength >= 0;
  } else if (foundLength < 0) {
    // withoutHeaders treats a missing header as empty (Istio sets treat_missing_header_as_empty).
    matched = invert ? valueMatches(kind, 0, 0, load<u32>(c + C_VALUE_STR), load<u32>(c + C_VALUE_LEN)) : false;
  } else {
    matched = valueMatches(kind, foundOffset, <u32>foundLength, load<u32>(c + C_VALUE_STR), load<u32>(c + C_VALUE_LEN));
  }
  return invert ? !matched : matched;
}

/** Finds the first `key` or `key=value` in the query string, as Envoy's matcher does (no decoding). */
function findQueryParam(key: u32, keyLen: u32): void {
  foundLength = -1;
  const qlen = slotLength(SLOT_QUERY);
  if (qlen < 0) return;
  const q = slotOffset(SLOT_QUERY);
  const end = q + <u32>qlen;
  let start = q;
  while (start <= end) {
    let amp = start;
    while (amp < end && load<u8>(amp) != 0x26) amp++; // '&'
    let eq = start;
    while (eq < amp && load<u8>(eq) != 0x3d) eq++; // '='
    if (eq - start == keyLen && bytesEqual(start, key, keyLen)) {
      foundOffset = eq < amp ? eq + 1 : amp;
      foundLength = eq < amp ? <i32>(amp - eq - 1) : 0;
      return;
    }
    start = amp + 1;
  }
}

/**
 * Picks an endpoint of `cluster` again (a retry, a shadow, a generated
 * cookie): the cluster's load balancer with a fresh random value.
 * Returns a global endpoint index, or RC_NO_ENDPOINT.
 */
export function pickEndpoint(cluster: i32, random: u32): i32 {
  store<i32>(out + OUT_HASH_MISSING, 0);
  return pickInCluster(header(H_CLUSTERS) + <u32>cluster * CL_SIZE, random);
}

/** xxHash64 of `len` bytes at `at` (the host builds ring and maglev tables with it). */
export function hash64(at: u32, len: u32, seed: u64): u64 {
  return xxhash64(at, len, seed);
}

/**
 * Runs a regex program of the image over `len` bytes at `at` from byte `from`
 * (host-side uses: regex rewrites, CORS origins). Returns 1 on a match; the
 * capture slots of a search program are left in the scratch CAPS area.
 */
export function regex(program: u32, at: u32, len: u32, from: u32): i32 {
  return runRegex(image, program, at, len, from) ? 1 : 0;
}
