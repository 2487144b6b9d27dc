// Loads the Wasm route core and binds one instance to one route table.
//
// One instance per snapshot: the table image, the request area and the
// in-flight counters live in that instance's linear memory, sized once here and
// never grown afterwards, so the typed-array views below stay valid.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { instantiateSync } from "@assemblyscript/loader";
import * as L from "../../assembly/layout.js";
import type { Decision } from "./decision.js";
import { buildMaglev, buildRing } from "./hash-tables.js";
import { encodeImage } from "./image.js";
import { clusterEndpointStarts, type RouteTable } from "./route-table.js";

interface CoreExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  init(image: number, request: number, out: number): number;
  route(random: number): number;
  pickEndpoint(cluster: number, random: number): number;
  regex(program: number, at: number, len: number, from: number): number;
  hash64(at: number, len: number, seed: bigint): bigint;
}

let compiled: WebAssembly.Module | undefined;

/** The compiled module, built by `npm run build:wasm` (part of install and pretest). */
function coreModule(): WebAssembly.Module {
  if (!compiled) {
    const path = fileURLToPath(new URL("build/route-core.wasm", findPackageRoot()));
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (err) {
      throw new Error(`route core not built: ${path} is missing (run 'npm run build'): ${(err as Error).message}`);
    }
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

/** The package root, whether running from host/ (vitest) or dist/host/ (compiled). */
function findPackageRoot(): URL {
  const here = new URL(".", import.meta.url);
  return here.pathname.includes("/dist/") ? new URL("../../../", here) : new URL("../../", here);
}

/** A table image encoded ahead of time (off the serving thread) for a core whose image starts at `at`. */
export interface EncodedImage extends ReturnType<typeof encodeImage> {
  at: number;
}

/** Where every core instance places its table image: after the module's static data, 16-byte aligned. */
export function imageAddress(): number {
  const { instance } = instantiateSync(coreModule(), {});
  return ((instance.exports as unknown as CoreExports).heapBase() + 15) & ~15;
}

/** Encodes `table`'s image for a core, as RouteCore would; done on the config worker thread. */
export function encodeImageFor(table: RouteTable): EncodedImage {
  const at = imageAddress();
  return { ...encodeImage(table, at), at };
}

const PAGE = 65536;
const REQUEST_AREA_BYTES = L.SLOT_COUNT_MAX * L.SLOT_SIZE + L.REQUEST_BYTES;
/** Input bytes for host-side regex runs (rewrites, CORS origins); longer values do not match. */
const REGEX_INPUT_BYTES = L.REQUEST_BYTES;

export class RouteCore {
  private readonly exports: CoreExports;
  /** Slot table of the request area: [offset, length] pairs as i32. */
  private readonly slots: Int32Array;
  /** Bytes of the request area after the slot table (a Buffer: allocation-free utf8 writes for non-ASCII). */
  private readonly bytes: Buffer;
  private readonly bytesAt: number;
  private readonly out: Int32Array;
  /** Requests in flight per global endpoint index; the core reads it for LEAST_REQUEST. */
  readonly active: Int32Array;
  /** 1 per global endpoint the load balancers may pick; change it through setEligible(). */
  private readonly eligible: Int32Array;
  private readonly table: RouteTable;
  private readonly clustersAt: number;
  private readonly memory: WebAssembly.Memory;
  private cursor = 0;
  private readonly headerSlots: number;
  /** Whether any route matches on these fields; the others are not copied per request. */
  readonly readsMethod: boolean;
  readonly readsScheme: boolean;
  readonly readsQuery: boolean;
  readonly readsSourceIp: boolean;
  private readonly clusterStarts: number[];
  /** Program addresses of the table's hostRegexes, by index. */
  private readonly hostRegexes: number[];
  private readonly regexInputAt: number;
  private readonly regexInput: Buffer;
  /** Capture slots of the last regexSearch(), as byte offsets into the input (-1: group did not take part). */
  private readonly captures: Int32Array;

  constructor(table: RouteTable, prebuilt?: EncodedImage) {
    // The loader's demangled exports wrap every function in a rest-args closure
    // (an allocation per call); the hot path calls the raw instance exports.
    const { instance } = instantiateSync(coreModule(), {});
    this.exports = instance.exports as unknown as CoreExports;
    const memory = this.exports.memory;
    const imageAt = (this.exports.heapBase() + 15) & ~15;
    const { bytes: image, activeOffset, eligibleOffset, hostRegexes } = prebuilt?.at === imageAt ? prebuilt : encodeImage(table, imageAt);
    const requestAt = (imageAt + image.length + 15) & ~15;
    const outAt = requestAt + REQUEST_AREA_BYTES;
    const regexInputAt = outAt + L.OUT_SIZE;
    const end = regexInputAt + REGEX_INPUT_BYTES;
    const needPages = Math.ceil(end / PAGE) - memory.buffer.byteLength / PAGE;
    if (needPages > 0) memory.grow(needPages);
    const buffer = memory.buffer;
    new Uint8Array(buffer, imageAt, image.length).set(image);
    if (this.exports.init(imageAt, requestAt, outAt) !== 0) throw new Error("internal: route core rejected the table image");
    this.slots = new Int32Array(buffer, requestAt, L.SLOT_COUNT_MAX * 2);
    this.bytesAt = requestAt + L.SLOT_COUNT_MAX * L.SLOT_SIZE;
    this.bytes = Buffer.from(buffer, this.bytesAt, L.REQUEST_BYTES);
    this.out = new Int32Array(buffer, outAt, L.OUT_SIZE / 4);
    const endpointCount = table.clusters.reduce((n, c) => n + c.endpointCount, 0);
    this.active = new Int32Array(buffer, imageAt + activeOffset, endpointCount);
    this.eligible = new Int32Array(buffer, imageAt + eligibleOffset, endpointCount);
    this.table = table;
    this.memory = memory;
    this.headerSlots = table.headerNames.length;
    this.hostRegexes = hostRegexes;
    this.regexInputAt = regexInputAt;
    this.regexInput = Buffer.from(buffer, regexInputAt, REGEX_INPUT_BYTES);
    const view = new DataView(buffer);
    const capsAt = view.getUint32(view.getUint32(imageAt + L.H_RX_SCRATCH, true) + L.RXS_CAPS, true);
    this.captures = new Int32Array(buffer, capsAt, view.getUint32(imageAt + L.H_RX_MAX_SLOTS, true));
    this.clustersAt = view.getUint32(imageAt + L.H_CLUSTERS, true);
    this.readsSourceIp = table.clusters.some((c) => c.loadBalancer && "key" in c.loadBalancer && c.loadBalancer.key.source === "sourceIp");
    this.clusterStarts = clusterEndpointStarts(table);
    table.clusters.forEach((_, i) => this.rebuildHashTable(i));
    this.readsMethod = table.entries.some((e) => e.method !== undefined);
    this.readsScheme = table.entries.some((e) => e.scheme !== undefined);
    this.readsQuery = table.entries.some((e) => e.conditions.some((c) => c.source === "query")) || table.clusters.some((c) => c.loadBalancer && "key" in c.loadBalancer && c.loadBalancer.key.source === "query");
  }

  // ── HOT PATH — change with care: called for every request, no allocation. ──

  /** Starts a request: every slot absent, the byte area empty. */
  begin(): void {
    const slots = this.slots;
    const n = (L.SLOT_FIRST_HEADER + this.headerSlots) * 2;
    for (let i = 1; i < n; i += 2) slots[i] = -1;
    this.cursor = 0;
  }

  /**
   * Copies one field into the request area. Returns false when the area is full
   * (the caller answers 431). ASCII, which is nearly every method, authority,
   * path and header value, is copied by a JIT-compiled loop: a call into
   * Buffer's C++ encoder costs more than the copy itself.
   */
  set(slot: number, value: string): boolean {
    const n = value.length;
    // Past a couple of dozen characters one C++ encoder call beats the JS loop.
    if (n > 24) return this.setUtf8(slot, value);
    const at = this.cursor;
    if (at + n > L.REQUEST_BYTES) return false;
    const bytes = this.bytes;
    for (let i = 0; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) return this.setUtf8(slot, value);
      bytes[at + i] = c;
    }
    this.slots[slot * 2] = this.bytesAt + at;
    this.slots[slot * 2 + 1] = n;
    this.cursor = at + n;
    return true;
  }

  private setUtf8(slot: number, value: string): boolean {
    const room = L.REQUEST_BYTES - this.cursor;
    if (Buffer.byteLength(value) > room) return false;
    const written = this.bytes.write(value, this.cursor, room, "utf8");
    this.slots[slot * 2] = this.bytesAt + this.cursor;
    this.slots[slot * 2 + 1] = written;
    this.cursor += written;
    return true;
  }

  /** Runs the decision. Returns the route index (>= 0) or an RC_* code; details via the getters. */
  route(random: number): number {
    return this.exports.route(random >>> 0);
  }

  /** Another LEAST_REQUEST pick in `cluster` (retries); a global endpoint index or RC_NO_ENDPOINT. */
  pickEndpoint(cluster: number, random: number): number {
    return this.exports.pickEndpoint(cluster, random >>> 0);
  }

  /** Whether `value` matches host regex `index` as a whole (a fullMatch pattern). */
  regexMatches(index: number, value: string): boolean {
    const len = this.writeRegexInput(value);
    return len >= 0 && this.exports.regex(this.hostRegexes[index]!, this.regexInputAt, len, 0) === 1;
  }

  /**
   * Replaces every non-overlapping match of host regex `index` (a search
   * pattern) in `value` as RE2::GlobalReplace does, which is what Envoy's
   * regex_rewrite runs. `rewrite` alternates literal text and group numbers.
   * Returns undefined when nothing matched (or the value is too long to search).
   */
  regexReplaceAll(index: number, value: string, rewrite: readonly (string | number)[]): string | undefined {
    const len = this.writeRegexInput(value);
    if (len < 0) return undefined;
    const input = this.regexInput;
    const caps = this.captures;
    const program = this.hostRegexes[index]!;
    let out = "";
    let p = 0;
    let lastEnd = -1;
    let count = 0;
    while (p <= len) {
      if (this.exports.regex(program, this.regexInputAt, len, p) !== 1) break;
      const start = caps[0]!;
      const end = caps[1]!;
      if (p < start) out += input.toString("utf8", p, start);
      if (start === end && start === lastEnd) {
        // No empty match right where the previous match ended: copy one character and move on.
        const n = p < len ? utf8CharLength(input[p]!) : 1;
        if (p < len) out += input.toString("utf8", p, Math.min(p + n, len));
        p += n;
        continue;
      }
      for (const part of rewrite) {
        if (typeof part === "string") out += part;
        else if (caps[2 * part]! >= 0) out += input.toString("utf8", caps[2 * part]!, caps[2 * part + 1]!);
      }
      p = end;
      lastEnd = end;
      count++;
    }
    if (count === 0) return undefined;
    if (p < len) out += input.toString("utf8", p, len);
    return out;
  }

  private writeRegexInput(value: string): number {
    if (Buffer.byteLength(value) > REGEX_INPUT_BYTES) return -1;
    return this.regexInput.write(value, 0, "utf8");
  }

  // ── Endpoint eligibility (outlier ejection, panic) and consistent-hash tables: off the hot path. ──

  /** Whether the load balancers may pick global endpoint `endpoint`. */
  isEligible(endpoint: number): boolean {
    return this.eligible[endpoint] === 1;
  }

  /**
   * Sets which endpoints of `cluster` the load balancers may pick (offsets in
   * the cluster) and rebuilds its ring or maglev table from them, as Envoy
   * rebuilds its load balancer when the healthy host set changes.
   */
  setEligible(cluster: number, eligible: readonly boolean[]): void {
    const start = this.clusterStarts[cluster]!;
    let count = 0;
    eligible.forEach((e, i) => {
      this.eligible[start + i] = e ? 1 : 0;
      if (e) count++;
    });
    new DataView(this.memory.buffer).setUint32(this.clustersAt + cluster * L.CL_SIZE + L.CL_ELIGIBLE_COUNT, count, true);
    this.rebuildHashTable(cluster);
  }

  /** xxHash64 of a string, as the core hashes keys (tests, table building). */
  hash64(value: string, seed = 0n): bigint {
    const len = this.writeRegexInput(value);
    return BigInt.asUintN(64, this.exports.hash64(this.regexInputAt, len, seed));
  }

  private rebuildHashTable(cluster: number): void {
    const c = this.table.clusters[cluster]!;
    const lb = c.loadBalancer;
    if (lb?.kind !== "ringHash" && lb?.kind !== "maglev") return;
    const start = this.clusterStarts[cluster]!;
    const names = c.endpointNames ?? [];
    const hosts: { endpoint: number; name: string }[] = [];
    for (let i = 0; i < c.endpointCount; i++) if (this.eligible[start + i] === 1) hosts.push({ endpoint: start + i, name: names[i] ?? String(i) });
    const view = new DataView(this.memory.buffer);
    const record = this.clustersAt + cluster * L.CL_SIZE;
    const tableAt = view.getUint32(record + L.CL_TABLE, true);
    if (lb.kind === "ringHash") {
      const ring = buildRing(hosts, c.endpointCount, lb.minimumRingSize, (s) => this.hash64(s));
      ring.forEach((p, i) => {
        view.setBigUint64(tableAt + i * L.RING_SIZE + L.RING_POINT, p.point, true);
        view.setInt32(tableAt + i * L.RING_SIZE + L.RING_ENDPOINT, p.endpoint, true);
      });
      view.setUint32(record + L.CL_TABLE_COUNT, ring.length, true);
    } else {
      const slots = buildMaglev(hosts, lb.tableSize, (s, seed) => this.hash64(s, seed));
      slots.forEach((endpoint, i) => view.setInt32(tableAt + i * 4, endpoint, true));
      view.setUint32(record + L.CL_TABLE_COUNT, hosts.length === 0 ? 0 : lb.tableSize, true);
    }
  }

  get vhost(): number {
    return this.out[L.OUT_VHOST / 4]!;
  }
  get entry(): number {
    return this.out[L.OUT_ENTRY / 4]!;
  }
  get dest(): number {
    return this.out[L.OUT_DEST / 4]!;
  }
  get cluster(): number {
    return this.out[L.OUT_CLUSTER / 4]!;
  }
  get endpoint(): number {
    return this.out[L.OUT_ENDPOINT / 4]!;
  }
  /** The cluster hashes on a cookie the request did not carry (the host may generate one and pick again). */
  get hashCookieMissing(): boolean {
    return this.out[L.OUT_HASH_MISSING / 4] === 1;
  }

  /** Copies the last decision out (tests, explain; not the hot path). */
  readDecision(code: number, into: Decision): Decision {
    into.code = code;
    into.vhost = this.vhost;
    into.entry = this.entry;
    into.route = this.out[L.OUT_ROUTE / 4]!;
    into.dest = this.dest;
    into.cluster = this.cluster;
    into.endpoint = this.endpoint;
    return into;
  }
}

function utf8CharLength(lead: number): number {
  return lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}
