// Loads the Wasm route core and binds one instance to one route table.
//
// One instance per route table: the table image, the request area and the
// per-endpoint arrays (requests in flight, eligibility) live in that
// instance's linear memory. An endpoint update resizes a cluster's endpoint
// range in place (resizeCluster) instead of building a new image; when a
// cluster outgrows its range the endpoint arrays move to fresh memory at the
// end, the memory may grow, and every typed-array view here is bound again.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { instantiateSync } from "@assemblyscript/loader";
import { packageFile } from "../package-root.js";
import * as L from "../../assembly/layout.js";
import type { Decision } from "./decision.js";
import { buildMaglev, buildRing, buildSchedule, endpointWeights, type HashHost } from "./hash-tables.js";
import { encodeImage, hashTableCapacity } from "./image.js";
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
    const path = fileURLToPath(packageFile("build/route-core.wasm"));
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

/** Host functions that answer 0 for every function the module imports (it calls none while a table is laid out). */
function stubImports(module: WebAssembly.Module): WebAssembly.Imports {
  const imports: Record<string, Record<string, () => number>> = {};
  for (const imp of WebAssembly.Module.imports(module)) if (imp.kind === "function") (imports[imp.module] ??= {})[imp.name] = () => 0;
  return imports;
}

const PAGE = 65536;
const REQUEST_AREA_BYTES = L.SLOT_COUNT_MAX * L.SLOT_SIZE + L.REQUEST_BYTES;
/** Input bytes for host-side regex runs (rewrites, CORS origins); longer values do not match. */
const REGEX_INPUT_BYTES = L.REQUEST_BYTES;

export class RouteCore {
  private readonly exports: CoreExports;
  /** Slot table of the request area: [offset, length] pairs as i32. */
  private slots!: Int32Array;
  /** Bytes of the request area after the slot table (a Buffer: allocation-free utf8 writes for non-ASCII). */
  private bytes!: Buffer;
  private readonly requestAt: number;
  private readonly bytesAt: number;
  private readonly outAt: number;
  private out!: Int32Array;
  /**
   * Requests in flight per global endpoint index; the core reads it for LEAST_REQUEST. The host
   * counts through UpstreamEndpoint cells bound to it; rebound when layoutGeneration changes.
   */
  active!: Int32Array;
  /** 1 per global endpoint the load balancers may pick; change it through setEligible(). */
  private eligible!: Int32Array;
  private readonly table: RouteTable;
  // Endpoint ranges per cluster: [start, start + count) of the global endpoint arrays, with room up to capacity.
  private readonly epStart: number[];
  private readonly epCount: number[];
  private readonly epCapacity: number[];
  /** "address:port" per endpoint of consistent-hash clusters: what their tables hash. */
  private readonly epNames: (readonly string[] | undefined)[];
  /** Per endpoint when a cluster's weights differ (undefined: equal, the load balancers ignore them). */
  private readonly epWeights: (readonly number[] | undefined)[];
  /** Entries the cluster's table memory (CL_TABLE) holds: ring, maglev or weighted schedule. */
  private readonly tableCapacity: number[];
  /** ROUND_ROBIN / LEAST_REQUEST clusters picking from a weighted schedule now (CLF_WEIGHTED set). */
  private readonly scheduled = new Set<number>();
  private activeAt: number;
  private eligibleAt: number;
  /** Cells in the global endpoint arrays (every one in some cluster's range). */
  private globalCapacity: number;
  /** First free byte after everything placed in memory (endpoint arrays and tables moved by updates go here). */
  private tail: number;
  private readonly imageAt: number;
  /** Changes whenever endpoint cells move (or memory grows): whoever holds a cell looks it up again. */
  layoutGeneration = 0;
  private readonly clustersAt: number;
  private readonly memory: WebAssembly.Memory;
  private cursor = 0;
  private readonly headerSlots: number;
  /** Whether any route matches on these fields; the others are not copied per request. */
  readonly readsMethod: boolean;
  readonly readsScheme: boolean;
  readonly readsQuery: boolean;
  readonly readsSourceIp: boolean;
  /** Program addresses of the table's hostRegexes, by index. */
  private readonly hostRegexes: number[];
  private readonly regexInputAt: number;
  private regexInput!: Buffer;
  /** Capture slots of the last regexSearch(), as byte offsets into the input (-1: group did not take part). */
  private captures!: Int32Array;
  private readonly capturesAt: number;
  private readonly captureCount: number;

  /**
   * `module`: another build of the core to lay the table out for (the Proxy-Wasm filter, whose
   * host functions are not called while a table is laid out: they get stubs).
   */
  constructor(table: RouteTable, prebuilt?: EncodedImage, module?: WebAssembly.Module) {
    // The loader's demangled exports wrap every function in a rest-args closure
    // (an allocation per call); the hot path calls the raw instance exports.
    const { instance } = instantiateSync(module ?? coreModule(), module ? stubImports(module) : {});
    this.exports = instance.exports as unknown as CoreExports;
    const memory = this.exports.memory;
    const imageAt = (this.exports.heapBase() + 15) & ~15;
    const { bytes: image, activeOffset, eligibleOffset, hostRegexes } = prebuilt?.at === imageAt ? prebuilt : encodeImage(table, imageAt);
    const requestAt = (imageAt + image.length + 15) & ~15;
    const outAt = requestAt + REQUEST_AREA_BYTES;
    const regexInputAt = outAt + L.OUT_SIZE;
    const end = regexInputAt + REGEX_INPUT_BYTES;
    growTo(memory, end);
    new Uint8Array(memory.buffer, imageAt, image.length).set(image);
    if (this.exports.init(imageAt, requestAt, outAt) !== 0) throw new Error("internal: route core rejected the table image");
    this.memory = memory;
    this.imageAt = imageAt;
    this.requestAt = requestAt;
    this.bytesAt = requestAt + L.SLOT_COUNT_MAX * L.SLOT_SIZE;
    this.outAt = outAt;
    this.regexInputAt = regexInputAt;
    this.tail = end;
    this.table = table;
    this.headerSlots = table.headerNames.length;
    this.hostRegexes = hostRegexes;
    const view = new DataView(memory.buffer);
    this.capturesAt = view.getUint32(view.getUint32(imageAt + L.H_RX_SCRATCH, true) + L.RXS_CAPS, true);
    this.captureCount = view.getUint32(imageAt + L.H_RX_MAX_SLOTS, true);
    this.clustersAt = view.getUint32(imageAt + L.H_CLUSTERS, true);
    this.epStart = clusterEndpointStarts(table).slice(0, -1);
    this.epCount = table.clusters.map((c) => c.endpointCount);
    this.epCapacity = [...this.epCount];
    this.epNames = table.clusters.map((c) => c.endpointNames);
    this.epWeights = table.clusters.map((c) => c.endpointWeights);
    this.tableCapacity = table.clusters.map((c) => hashTableCapacity(c));
    this.globalCapacity = this.epCount.reduce((n, c) => n + c, 0);
    this.activeAt = imageAt + activeOffset;
    this.eligibleAt = imageAt + eligibleOffset;
    this.bindViews();
    this.readsSourceIp = table.clusters.some((c) => c.loadBalancer && "key" in c.loadBalancer && c.loadBalancer.key.source === "sourceIp");
    table.clusters.forEach((_, i) => this.rebuildTable(i));
    this.readsMethod = table.entries.some((e) => e.method !== undefined);
    this.readsScheme = table.entries.some((e) => e.scheme !== undefined);
    this.readsQuery = table.entries.some((e) => e.conditions.some((c) => c.source === "query")) || table.clusters.some((c) => c.loadBalancer && "key" in c.loadBalancer && c.loadBalancer.key.source === "query");
  }

  // ── HOT PATH — change with care: called for every request, no allocation. ──

  /**
   * The core's memory from the image to the end of what it laid out (image, request and decision
   * areas, hash tables), and where those areas are: what a build of the same module needs to decide
   * as this instance does (`instio compile-table`).
   */
  memorySnapshot(): { base: number; bytes: Uint8Array; requestAt: number; outAt: number } {
    return { base: this.imageAt, bytes: new Uint8Array(this.memory.buffer, this.imageAt, this.tail - this.imageAt).slice(), requestAt: this.requestAt, outAt: this.outAt };
  }

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

  // ── Endpoints: eligibility (outlier ejection, health, panic), consistent-hash tables and
  // endpoint updates. Off the hot path. ──

  /** Global index of cluster `cluster`'s first endpoint (its endpoints are contiguous). */
  clusterStart(cluster: number): number {
    return this.epStart[cluster]!;
  }

  clusterSize(cluster: number): number {
    return this.epCount[cluster]!;
  }

  /** ROUND_ROBIN's position in `cluster` (the core moves it), to carry over to a new core. */
  roundRobinCursor(cluster: number): number {
    return this.memoryView().getUint32(this.clustersAt + cluster * L.CL_SIZE + L.CL_CURSOR, true);
  }

  setRoundRobinCursor(cluster: number, cursor: number): void {
    this.memoryView().setUint32(this.clustersAt + cluster * L.CL_SIZE + L.CL_CURSOR, cursor, true);
  }

  /** Whether the load balancers may pick global endpoint `endpoint`. */
  isEligible(endpoint: number): boolean {
    return this.eligible[endpoint] === 1;
  }

  /**
   * Sets which endpoints of `cluster` the load balancers may pick (offsets in
   * the cluster) and rebuilds its ring, maglev or weighted schedule from them,
   * as Envoy rebuilds its load balancer when the healthy host set changes.
   */
  setEligible(cluster: number, eligible: readonly boolean[]): void {
    const start = this.epStart[cluster]!;
    const n = Math.min(eligible.length, this.epCount[cluster]!);
    let count = 0;
    for (let i = 0; i < n; i++) {
      this.eligible[start + i] = eligible[i] ? 1 : 0;
      if (eligible[i]) count++;
    }
    this.memoryView().setUint32(this.clustersAt + cluster * L.CL_SIZE + L.CL_ELIGIBLE_COUNT, count, true);
    this.rebuildTable(cluster);
  }

  /**
   * An endpoint update (Envoy's EDS): cluster `cluster` now has `names.length`
   * endpoints, all eligible, none with requests counted; `names` (hashName())
   * are what consistent-hash tables hash, `weights` the endpoints' weights when
   * they differ (endpointWeights()). The route image is not rebuilt. A
   * cluster that outgrows its range has the endpoint arrays laid out again in
   * fresh memory, every range with room to grow (every cluster's cells move,
   * their counts and eligibility with them); layoutGeneration then changes and
   * holders of cells look them up again.
   */
  resizeCluster(cluster: number, names: readonly string[], weights: readonly number[] | undefined): void {
    const n = names.length;
    if (n > this.epCapacity[cluster]!) {
      this.relayoutEndpoints(cluster, n);
      this.layoutGeneration++;
    }
    const start = this.epStart[cluster]!;
    this.epCount[cluster] = n;
    if (this.epNames[cluster] !== undefined) this.epNames[cluster] = [...names];
    this.epWeights[cluster] = weights && [...weights];
    this.active.fill(0, start, start + n);
    this.eligible.fill(1, start, start + n);
    const record = this.clustersAt + cluster * L.CL_SIZE;
    const view = this.memoryView();
    view.setUint32(record + L.CL_EP_START, start, true);
    view.setUint32(record + L.CL_EP_COUNT, n, true);
    view.setUint32(record + L.CL_ELIGIBLE_COUNT, n, true);
    this.rebuildTable(cluster);
  }

  /** Whether `cluster` has the weights `weights` (undefined: equal): an update that changes only weights passes them to resizeCluster. */
  hasWeights(cluster: number, weights: readonly number[] | undefined): boolean {
    const now = this.epWeights[cluster];
    if (!now || !weights) return now === weights;
    return now.length === weights.length && now.every((w, i) => w === weights[i]);
  }

  /** Every cluster's range packed into new arrays with room to grow; `grown` gets `size` cells. */
  private relayoutEndpoints(grown: number, size: number): void {
    const clusters = this.epCount.length;
    const capacity = this.epCount.map((n, i) => {
      const k = i === grown ? size : n;
      return k + (k >> 1) + 4;
    });
    const total = capacity.reduce((n, c) => n + c, 0);
    const oldActive = this.activeAt;
    const oldEligible = this.eligibleAt;
    const activeAt = this.allocate(total * 4);
    const eligibleAt = this.allocate(total * 4);
    // Both allocations are done: the memory will not grow under these views.
    const mem = new Int32Array(this.memory.buffer);
    const view = this.memoryView();
    let next = 0;
    for (let i = 0; i < clusters; i++) {
      const from = this.epStart[i]!;
      const n = i === grown ? 0 : this.epCount[i]!;
      mem.copyWithin((activeAt >> 2) + next, (oldActive >> 2) + from, (oldActive >> 2) + from + n);
      mem.copyWithin((eligibleAt >> 2) + next, (oldEligible >> 2) + from, (oldEligible >> 2) + from + n);
      this.epStart[i] = next;
      this.epCapacity[i] = capacity[i]!;
      view.setUint32(this.clustersAt + i * L.CL_SIZE + L.CL_EP_START, next, true);
      next += capacity[i]!;
    }
    this.activeAt = activeAt;
    this.eligibleAt = eligibleAt;
    this.globalCapacity = total;
    view.setUint32(this.imageAt + L.H_ACTIVE, activeAt, true);
    view.setUint32(this.imageAt + L.H_ELIGIBLE, eligibleAt, true);
    view.setUint32(this.imageAt + L.H_ENDPOINT_COUNT, total, true);
    this.bindViews();
    // Ring, maglev and schedule entries name global endpoint indices, which just moved.
    for (let i = 0; i < clusters; i++) if (i !== grown) this.rebuildTable(i);
  }

  /** `bytes` of fresh memory after everything placed so far (16-byte aligned); grows the memory when needed. */
  private allocate(bytes: number): number {
    const at = (this.tail + 15) & ~15;
    this.tail = at + bytes;
    if (growTo(this.memory, this.tail)) {
      this.layoutGeneration++;
      this.bindViews();
    }
    return at;
  }

  /** (Re)creates every view of the memory: growing it detaches the old ones. */
  private bindViews(): void {
    const buffer = this.memory.buffer;
    this.slots = new Int32Array(buffer, this.requestAt, L.SLOT_COUNT_MAX * 2);
    this.bytes = Buffer.from(buffer, this.bytesAt, L.REQUEST_BYTES);
    this.out = new Int32Array(buffer, this.outAt, L.OUT_SIZE / 4);
    this.regexInput = Buffer.from(buffer, this.regexInputAt, REGEX_INPUT_BYTES);
    this.captures = new Int32Array(buffer, this.capturesAt, this.captureCount);
    this.active = new Int32Array(buffer, this.activeAt, this.globalCapacity);
    this.eligible = new Int32Array(buffer, this.eligibleAt, this.globalCapacity);
  }

  /** A view of the whole memory, for cluster records and the image header (made anew: growing detaches it). */
  private memoryView(): DataView {
    return new DataView(this.memory.buffer);
  }

  /** xxHash64 of a string, as the core hashes keys (tests, table building). */
  hash64(value: string, seed = 0n): bigint {
    const len = this.writeRegexInput(value);
    return BigInt.asUintN(64, this.exports.hash64(this.regexInputAt, len, seed));
  }

  /**
   * Rebuilds the cluster's table from its eligible endpoints: the ring or maglev table of a
   * consistent-hash cluster, or the weighted schedule of a ROUND_ROBIN / LEAST_REQUEST cluster whose
   * weights differ (CLF_WEIGHTED tells the core to use it). A table larger than its memory gets
   * fresh memory after everything placed so far.
   */
  private rebuildTable(cluster: number): void {
    const lb = this.table.clusters[cluster]!.loadBalancer ?? { kind: "leastRequest" };
    if (lb.kind === "random") return; // Envoy's RANDOM ignores weights and needs no table
    const record = this.clustersAt + cluster * L.CL_SIZE;
    const weights = this.epWeights[cluster];
    const hashes = lb.kind === "ringHash" || lb.kind === "maglev";
    if (!hashes && weights === undefined) {
      // Equal weights (nearly every cluster): the unweighted balancers, nothing to build.
      if (this.scheduled.delete(cluster)) this.setWeightedFlag(record, false);
      return;
    }
    const start = this.epStart[cluster]!;
    const count = this.epCount[cluster]!;
    const names = this.epNames[cluster] ?? [];
    const hosts: HashHost[] = [];
    for (let i = 0; i < count; i++) hosts.push({ endpoint: start + i, name: names[i] ?? String(i), weight: weights?.[i] ?? 1 });
    const eligible = hosts.filter((h) => this.eligible[h.endpoint] === 1);
    if (lb.kind === "ringHash") {
      const ring = buildRing(hosts, (endpoint) => this.eligible[endpoint] === 1, lb.minimumRingSize, (s) => this.hash64(s));
      const view = this.tableFor(record, cluster, ring.length, L.RING_SIZE);
      const tableAt = view.getUint32(record + L.CL_TABLE, true);
      ring.forEach((p, i) => {
        view.setBigUint64(tableAt + i * L.RING_SIZE + L.RING_POINT, p.point, true);
        view.setInt32(tableAt + i * L.RING_SIZE + L.RING_ENDPOINT, p.endpoint, true);
      });
      view.setUint32(record + L.CL_TABLE_COUNT, ring.length, true);
      return;
    }
    if (lb.kind === "maglev") {
      const slots = buildMaglev(eligible, lb.tableSize, (s, seed) => this.hash64(s, seed));
      const view = this.memoryView();
      const tableAt = view.getUint32(record + L.CL_TABLE, true);
      slots.forEach((endpoint, i) => view.setInt32(tableAt + i * 4, endpoint, true));
      view.setUint32(record + L.CL_TABLE_COUNT, eligible.length === 0 ? 0 : lb.tableSize, true);
      return;
    }
    // ROUND_ROBIN and LEAST_REQUEST: weighted only while the eligible endpoints' weights differ, as in Envoy.
    if (endpointWeights(eligible) === undefined) {
      if (this.scheduled.delete(cluster)) this.setWeightedFlag(record, false);
      return;
    }
    const schedule = buildSchedule(eligible);
    const view = this.tableFor(record, cluster, schedule.length, 4);
    const tableAt = view.getUint32(record + L.CL_TABLE, true);
    schedule.forEach((endpoint, i) => view.setInt32(tableAt + i * 4, endpoint, true));
    view.setUint32(record + L.CL_TABLE_COUNT, schedule.length, true);
    this.scheduled.add(cluster);
    this.setWeightedFlag(record, true);
  }

  /** Tells the core whether the cluster at `record` picks from its weighted schedule (CLF_WEIGHTED). */
  private setWeightedFlag(record: number, on: boolean): void {
    const view = this.memoryView();
    const flags = view.getUint32(record + L.CL_FLAGS, true);
    view.setUint32(record + L.CL_FLAGS, on ? flags | L.CLF_WEIGHTED : flags & ~L.CLF_WEIGHTED, true);
  }

  /** A view of the memory after making the cluster's table hold `entries` of `entryBytes` (growing it may move the table). */
  private tableFor(record: number, cluster: number, entries: number, entryBytes: number): DataView {
    if (entries > this.tableCapacity[cluster]!) {
      const capacity = entries + (entries >> 1); // room for growth
      const at = this.allocate(capacity * entryBytes);
      this.tableCapacity[cluster] = capacity;
      this.memoryView().setUint32(record + L.CL_TABLE, at, true);
    }
    return this.memoryView();
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

/** Grows `memory` to hold `end` bytes; true when it grew (its old views are detached). */
function growTo(memory: WebAssembly.Memory, end: number): boolean {
  const pages = Math.ceil(end / PAGE) - memory.buffer.byteLength / PAGE;
  if (pages <= 0) return false;
  memory.grow(pages);
  return true;
}

function utf8CharLength(lead: number): number {
  return lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}
