// Lays a RouteTable out as the byte image the Wasm core reads (assembly/layout.ts).
// Runs once per snapshot, off the hot path: clarity over cleverness here.

import * as L from "../../assembly/layout.js";
import { compilePattern, type RegexMode, type RegexProgram } from "./regex/program.js";
import { clusterEndpointStarts, lowerAscii, type ConditionKind, type RouteTable, type StringMatch, type TableCluster, type TableHashKey, type TableLoadBalancer } from "./route-table.js";
import { ringSize } from "./hash-tables.js";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function fnv1a(bytes: Uint8Array): number {
  let h = FNV_OFFSET;
  for (const b of bytes) h = Math.imul(h ^ b, FNV_PRIME) >>> 0;
  return h;
}

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

/** murmur3_32 with seed 0, as assembly/bytes.ts hashWords computes it. */
export function murmur3(bytes: Uint8Array): number {
  const n = bytes.length;
  const words = n & ~3;
  let h = 0;
  const mixK = (k: number): number => Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593) >>> 0;
  for (let i = 0; i < words; i += 4) {
    const k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    h = (Math.imul(rotl((h ^ mixK(k)) >>> 0, 13), 5) + 0xe6546b64) >>> 0;
  }
  let k = 0;
  for (let i = n - 1; i >= words; i--) k = ((k << 8) | bytes[i]!) >>> 0;
  h = (h ^ mixK(k) ^ n) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

function pathKeySalt(kind: number): number {
  return Math.imul(kind, 0x9e3779b1) >>> 0;
}

function matchKind(kind: ConditionKind | undefined): number {
  if (kind === "exact") return L.SM_EXACT;
  if (kind === "prefix") return L.SM_PREFIX;
  if (kind === "present") return L.SM_PRESENT;
  if (kind === "regex") return L.SM_REGEX;
  return L.SM_NONE;
}

function tableSlots(keys: number): number {
  let n = 4;
  while (n < keys * 2) n *= 2;
  return n;
}

interface PathKey {
  kind: number;
  key: string;
  entries: number[];
}

/** Which path-index key (if any) an entry is found under; unindexed entries return undefined. */
function pathKeyOf(uri: { kind: string; value: string; ignoreCase: boolean } | undefined): { kind: number; key: string } | undefined {
  if (!uri || uri.kind === "regex") return undefined;
  const key = uri.ignoreCase ? lowerAscii(uri.value) : uri.value;
  if (uri.kind === "exact") return { kind: uri.ignoreCase ? L.PK_EXACT_CI : L.PK_EXACT, key };
  const len = Buffer.byteLength(key);
  if (len === 0 || len > L.MAX_INDEXED_PREFIX) return undefined;
  return { kind: uri.ignoreCase ? L.PK_PREFIX_CI : L.PK_PREFIX, key };
}

/** Appends bytes to a region that is placed after the fixed sections. */
class StringPool {
  private readonly offsets = new Map<string, number>();
  private readonly chunks: Buffer[] = [];
  size = 0;
  add(s: string): { at: number; len: number } {
    const bytes = Buffer.from(s, "utf8");
    let at = this.offsets.get(s);
    if (at === undefined) {
      at = this.size;
      this.offsets.set(s, at);
      this.chunks.push(bytes);
      this.size += bytes.length;
    }
    return { at, len: bytes.length };
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const LB_KINDS: Record<TableLoadBalancer["kind"], number> = {
  leastRequest: L.LB_LEAST_REQUEST,
  roundRobin: L.LB_ROUND_ROBIN,
  random: L.LB_RANDOM,
  ringHash: L.LB_RING_HASH,
  maglev: L.LB_MAGLEV,
};
const HASH_SOURCES: Record<TableHashKey["source"], number> = { header: L.HS_HEADER, cookie: L.HS_COOKIE, query: L.HS_QUERY, sourceIp: L.HS_SOURCE_IP };

/**
 * Entries a cluster's ring or maglev table can hold as compiled. A weighted schedule, and a table
 * that outgrows this after an endpoint update, get fresh memory from the core.
 */
export function hashTableCapacity(c: TableCluster): number {
  const lb = c.loadBalancer;
  if (lb?.kind === "ringHash") return ringSize(c.endpointWeights ?? new Array<number>(c.endpointCount).fill(1), lb.minimumRingSize);
  if (lb?.kind === "maglev") return lb.tableSize;
  return 0;
}

function hashEntryBytes(c: TableCluster): number {
  return c.loadBalancer?.kind === "ringHash" ? L.RING_SIZE : 4;
}

/** Every regex the image carries: the core's matches (full match) and the host's patterns. */
function regexPatterns(table: RouteTable): { pattern: string; mode: RegexMode }[] {
  const out: { pattern: string; mode: RegexMode }[] = [];
  for (const e of table.entries) {
    for (const m of [e.uri, e.method, e.authority, e.scheme, ...e.conditions]) {
      if (m?.kind === "regex") out.push({ pattern: m.value, mode: "fullMatch" });
    }
  }
  return [...out, ...(table.hostRegexes ?? [])];
}

function programKey(pattern: string, mode: RegexMode): string {
  return `${mode}\u0000${pattern}`;
}

function programBytes(p: RegexProgram): number {
  return L.RXP_SIZE + p.instructions.length * 4 + p.bitmaps.length * 32;
}

/**
 * Encodes `table` for placement at absolute address `base` in linear memory.
 * Returns the image bytes; the ACTIVE counters are inside it, zeroed.
 */
export function encodeImage(table: RouteTable, base: number): { bytes: Uint8Array; activeOffset: number; eligibleOffset: number; hostRegexes: number[] } {
  // Pass 1: sizes of the fixed sections, so that every offset is known before writing.
  let size = L.H_SIZE;
  const reserve = (bytes: number): number => {
    const at = size;
    size += (bytes + 3) & ~3;
    return at;
  };
  const exactDomains: { domain: string; vhost: number }[] = [];
  const seenDomains = new Set<string>();
  const wildcards: { suffix: string; vhost: number; len: number }[] = [];
  table.virtualHosts.forEach((vh, vhost) => {
    for (const d of vh.domains) {
      const domain = lowerAscii(d);
      if (domain.startsWith("*")) wildcards.push({ suffix: domain.slice(1), vhost, len: Buffer.byteLength(domain) - 1 });
      else if (!seenDomains.has(domain)) {
        seenDomains.add(domain);
        exactDomains.push({ domain, vhost });
      }
    }
  });
  wildcards.sort((a, b) => b.len - a.len);

  const vhostsAt = reserve(table.virtualHosts.length * L.VH_SIZE);
  const domainSlots = tableSlots(exactDomains.length);
  const domainTableAt = reserve(domainSlots * L.DS_SIZE);
  const wildcardsAt = reserve(wildcards.length * L.WC_SIZE);
  const entriesAt = reserve(table.entries.length * L.E_SIZE);
  const condCount = table.entries.reduce((n, e) => n + e.conditions.length, 0);
  const condsAt = reserve(condCount * L.C_SIZE);
  const routesAt = reserve(table.routes.length * L.R_SIZE);
  const destCount = table.routes.reduce((n, r) => n + r.destinations.length, 0);
  const destsAt = reserve(destCount * L.D_SIZE);
  const clustersAt = reserve(table.clusters.length * L.CL_SIZE);
  const starts = clusterEndpointStarts(table);
  const endpointCount = starts[starts.length - 1]!;
  const activeAt = reserve(endpointCount * 4);
  const eligibleAt = reserve(endpointCount * 4);
  // Ring and maglev tables, sized for every endpoint eligible; the host fills them (RouteCore).
  const tableAt = table.clusters.map((c) => reserve(hashTableCapacity(c) * hashEntryBytes(c)));

  // Regex programs (validated when the config was loaded), then the VM's scratch memory.
  const programs = new Map<string, { program: RegexProgram; at: number }>();
  for (const { pattern, mode } of regexPatterns(table)) {
    const key = programKey(pattern, mode);
    if (programs.has(key)) continue;
    const program = compilePattern(pattern, mode);
    programs.set(key, { program, at: reserve(programBytes(program)) });
  }
  const maxInst = Math.max(0, ...[...programs.values()].map((p) => p.program.instructions.length / 4));
  const maxSlots = Math.max(0, ...[...programs.values()].map((p) => p.program.slots));
  const scratchAt = reserve(L.RXS_SIZE);
  const capsAt = reserve(maxSlots * 4);
  const listBytes = maxInst * 8 + maxInst * maxSlots * 4;
  const listAAt = reserve(listBytes);
  const listBAt = reserve(listBytes);
  const stackAt = reserve((2 * maxInst + 2) * 8);
  const workAt = reserve(maxSlots * 4);

  // Per virtual host: the unindexed list, the path index and its entry lists.
  const vhostPlans = table.virtualHosts.map((vh) => {
    const keys = new Map<string, PathKey>();
    const unindexed: number[] = [];
    for (let i = vh.entryStart; i < vh.entryStart + vh.entryCount; i++) {
      const k = pathKeyOf(table.entries[i]!.uri);
      if (!k) {
        unindexed.push(i);
        continue;
      }
      const id = `${k.kind}\u0000${k.key}`;
      let pk = keys.get(id);
      if (!pk) keys.set(id, (pk = { kind: k.kind, key: k.key, entries: [] }));
      pk.entries.push(i);
    }
    const slots = keys.size === 0 ? 0 : tableSlots(keys.size);
    return {
      unindexed,
      keys: [...keys.values()],
      slots,
      unindexedAt: reserve(unindexed.length * 4),
      tableAt: reserve(slots * L.PS_SIZE),
      bitmapAt: slots === 0 ? 0 : reserve(L.PREFIX_BITMAP_BYTES),
      listsAt: [...keys.values()].map((k) => reserve(k.entries.length * 4)),
    };
  });

  const pool = new StringPool();
  const poolBase = size;
  // Strings are referenced by absolute address: base + poolBase + offset in the pool.
  const str = (s: string): [number, number] => {
    const { at, len } = pool.add(s);
    return [base + poolBase + at, len];
  };

  const records: [number, number][] = []; // (relative offset, u32/i32 value), written after the pool is known
  const rawBytes: { at: number; bits: Uint8Array }[] = []; // byte blocks (bitmaps) at relative offsets
  const put = (at: number, value: number): void => {
    records.push([at, value]);
  };
  const putStr = (at: number, s: string): void => {
    const [a, n] = str(s);
    put(at, a);
    put(at + 4, n);
  };

  /** A match value: the string, or for a regex its program's address and length 0. */
  const putMatchValue = (at: number, kind: ConditionKind, value: string): void => {
    if (kind !== "regex") return putStr(at, value);
    put(at, programAt(value, "fullMatch"));
    put(at + 4, 0);
  };

  put(L.H_MAGIC, L.IMAGE_MAGIC);
  put(L.H_VHOST_COUNT, table.virtualHosts.length);
  put(L.H_VHOSTS, base + vhostsAt);
  put(L.H_DOMAIN_TABLE, base + domainTableAt);
  put(L.H_DOMAIN_MASK, domainSlots - 1);
  put(L.H_WILDCARD_COUNT, wildcards.length);
  put(L.H_WILDCARDS, base + wildcardsAt);
  put(L.H_ENTRIES, base + entriesAt);
  put(L.H_ROUTES, base + routesAt);
  put(L.H_DESTS, base + destsAt);
  put(L.H_CLUSTERS, base + clustersAt);
  put(L.H_ACTIVE, base + activeAt);
  put(L.H_ENDPOINT_COUNT, endpointCount);
  put(L.H_ELIGIBLE, base + eligibleAt);
  put(L.H_RX_SCRATCH, base + scratchAt);
  put(L.H_RX_MAX_INST, maxInst);
  put(L.H_RX_MAX_SLOTS, maxSlots);
  put(scratchAt + L.RXS_CAPS, base + capsAt);
  put(scratchAt + L.RXS_LIST_A, base + listAAt);
  put(scratchAt + L.RXS_LIST_B, base + listBAt);
  put(scratchAt + L.RXS_STACK, base + stackAt);
  put(scratchAt + L.RXS_WORK, base + workAt);
  for (const { program, at } of programs.values()) {
    const count = program.instructions.length / 4;
    const bitmapsAt = at + L.RXP_SIZE + count * L.RXI_SIZE;
    put(at + L.RXP_INST_COUNT, count);
    put(at + L.RXP_SLOTS, program.slots);
    put(at + L.RXP_ANCHORED, program.anchored ? 1 : 0);
    for (let i = 0; i < count; i++) {
      const inst = at + L.RXP_SIZE + i * L.RXI_SIZE;
      const op = program.instructions[i * 4]!;
      const a = program.instructions[i * 4 + 1]!;
      put(inst + L.RXI_OP, op);
      put(inst + L.RXI_A, op === L.RX_BYTE_CLASS ? base + bitmapsAt + a * 32 : a);
      put(inst + L.RXI_B, program.instructions[i * 4 + 2]!);
      put(inst + L.RXI_NEXT, program.instructions[i * 4 + 3]!);
    }
    program.bitmaps.forEach((bits, i) => rawBytes.push({ at: bitmapsAt + i * 32, bits }));
  }
  /** Absolute address of a pattern's program. */
  const programAt = (pattern: string, mode: RegexMode): number => base + programs.get(programKey(pattern, mode))!.at;

  for (let s = 0; s < domainSlots; s++) put(domainTableAt + s * L.DS_SIZE + L.DS_LEN, L.EMPTY_SLOT);
  const domainTaken = new Uint8Array(domainSlots);
  for (const { domain, vhost } of exactDomains) {
    const hash = murmur3(Buffer.from(domain));
    let slot = hash & (domainSlots - 1);
    while (domainTaken[slot]) slot = (slot + 1) & (domainSlots - 1);
    domainTaken[slot] = 1;
    const at = domainTableAt + slot * L.DS_SIZE;
    put(at + L.DS_HASH, hash);
    putStr(at + L.DS_STR, domain);
    put(at + L.DS_VHOST, vhost);
  }
  wildcards.forEach((w, i) => {
    const at = wildcardsAt + i * L.WC_SIZE;
    putStr(at + L.WC_STR, w.suffix);
    put(at + L.WC_VHOST, w.vhost);
  });

  vhostPlans.forEach((plan, v) => {
    const at = vhostsAt + v * L.VH_SIZE;
    put(at + L.VH_UNINDEXED, base + plan.unindexedAt);
    put(at + L.VH_UNINDEXED_COUNT, plan.unindexed.length);
    plan.unindexed.forEach((e, i) => put(plan.unindexedAt + i * 4, e));
    put(at + L.VH_PATH_TABLE, base + plan.tableAt);
    put(at + L.VH_PATH_MASK, plan.slots === 0 ? 0 : plan.slots - 1);
    put(at + L.VH_PREFIX_LENS, plan.slots === 0 ? 0 : base + plan.bitmapAt);
    if (plan.slots === 0) return;
    const bits = new Uint8Array(L.PREFIX_BITMAP_BYTES);
    let flags = 0;
    let maxPrefix = 0;
    for (let s = 0; s < plan.slots; s++) put(plan.tableAt + s * L.PS_SIZE + L.PS_LEN, L.EMPTY_SLOT);
    const taken = new Uint8Array(plan.slots);
    plan.keys.forEach((k, i) => {
      const bytes = Buffer.from(k.key);
      const exact = k.kind === L.PK_EXACT || k.kind === L.PK_EXACT_CI;
      const hash = ((exact ? murmur3(bytes) : fnv1a(bytes)) ^ pathKeySalt(k.kind)) >>> 0;
      let slot = hash & (plan.slots - 1);
      while (taken[slot]) slot = (slot + 1) & (plan.slots - 1);
      taken[slot] = 1;
      const s = plan.tableAt + slot * L.PS_SIZE;
      put(s + L.PS_HASH, hash);
      put(s + L.PS_KIND, k.kind);
      putStr(s + L.PS_STR, k.key);
      put(s + L.PS_LIST, base + plan.listsAt[i]!);
      put(s + L.PS_COUNT, k.entries.length);
      k.entries.forEach((e, j) => put(plan.listsAt[i]! + j * 4, e));
      if (k.kind === L.PK_EXACT_CI || k.kind === L.PK_PREFIX_CI) flags |= L.VHF_CASE_INSENSITIVE;
      if (k.kind === L.PK_EXACT) flags |= L.VHF_EXACT;
      if (k.kind === L.PK_EXACT_CI) flags |= L.VHF_EXACT_CI;
      if (k.kind === L.PK_PREFIX || k.kind === L.PK_PREFIX_CI) {
        const n = bytes.length + (k.kind === L.PK_PREFIX_CI ? 1024 : 0);
        bits[n >> 3]! |= 1 << (n & 7);
        maxPrefix = Math.max(maxPrefix, bytes.length);
      }
    });
    put(at + L.VH_FLAGS, flags);
    put(at + L.VH_MAX_PREFIX, maxPrefix);
    rawBytes.push({ at: plan.bitmapAt, bits });
  });

  let condAt = condsAt;
  table.entries.forEach((e, i) => {
    const at = entriesAt + i * L.E_SIZE;
    put(at + L.E_ROUTE, e.route);
    if (e.uri) {
      put(at + L.E_URI_KIND, matchKind(e.uri.kind));
      put(at + L.E_URI_CI, e.uri.ignoreCase ? 1 : 0);
      putMatchValue(at + L.E_URI_STR, e.uri.kind, e.uri.ignoreCase ? lowerAscii(e.uri.value) : e.uri.value);
    }
    const field = (kindAt: number, m: StringMatch | undefined): void => {
      if (!m) return;
      put(kindAt, matchKind(m.kind));
      putMatchValue(kindAt + 4, m.kind, m.value);
    };
    field(at + L.E_METHOD_KIND, e.method);
    field(at + L.E_AUTH_KIND, e.authority);
    field(at + L.E_SCHEME_KIND, e.scheme);
    put(at + L.E_COND_COUNT, e.conditions.length);
    put(at + L.E_CONDS, base + condAt);
    for (const c of e.conditions) {
      if (c.source === "header") {
        const slot = table.headerNames.indexOf(c.name);
        if (slot < 0) throw new Error(`internal: header ${c.name} has no request slot`);
        put(condAt + L.C_SOURCE, L.CS_HEADER);
        put(condAt + L.C_KEY, slot);
      } else {
        put(condAt + L.C_SOURCE, L.CS_QUERY);
        putStr(condAt + L.C_KEY_STR, c.name);
      }
      put(condAt + L.C_KIND, matchKind(c.kind));
      put(condAt + L.C_INVERT, c.invert ? 1 : 0);
      putMatchValue(condAt + L.C_VALUE_STR, c.kind, c.value);
      condAt += L.C_SIZE;
    }
  });

  let destAt = destsAt;
  table.routes.forEach((r, i) => {
    const at = routesAt + i * L.R_SIZE;
    put(at + L.R_DEST_START, (destAt - destsAt) / L.D_SIZE);
    put(at + L.R_DEST_COUNT, r.destinations.length);
    let cumulative = 0;
    for (const d of r.destinations) {
      cumulative += d.weight;
      put(destAt + L.D_CLUSTER, d.cluster);
      put(destAt + L.D_CUMULATIVE, cumulative);
      destAt += L.D_SIZE;
    }
    put(at + L.R_TOTAL_WEIGHT, cumulative);
  });

  for (let e = 0; e < endpointCount; e++) put(eligibleAt + e * 4, 1);
  table.clusters.forEach((c, i) => {
    const at = clustersAt + i * L.CL_SIZE;
    put(at + L.CL_EP_START, starts[i]!);
    put(at + L.CL_EP_COUNT, c.endpointCount);
    put(at + L.CL_FLAGS, c.passthrough ? L.CLF_PASSTHROUGH : 0);
    put(at + L.CL_ELIGIBLE_COUNT, c.endpointCount);
    put(at + L.CL_TABLE, base + tableAt[i]!);
    const lb = c.loadBalancer ?? { kind: "leastRequest" };
    put(at + L.CL_LB, LB_KINDS[lb.kind]);
    if (lb.kind !== "ringHash" && lb.kind !== "maglev") return;
    const key = lb.key;
    put(at + L.CL_HASH_SOURCE, HASH_SOURCES[key.source]);
    if (key.source === "header" || key.source === "cookie") {
      const slot = table.headerNames.indexOf(key.source === "cookie" ? "cookie" : key.name);
      if (slot < 0) throw new Error(`internal: hash header ${key.source === "cookie" ? "cookie" : key.name} has no request slot`);
      put(at + L.CL_HASH_SLOT, slot);
    }
    if (key.source === "cookie" || key.source === "query") putStr(at + L.CL_HASH_NAME_STR, key.name);
  });

  const poolBytes = pool.bytes();
  const bytes = new Uint8Array(poolBase + poolBytes.length);
  const view = new DataView(bytes.buffer);
  for (const [at, value] of records) view.setUint32(at, value >>> 0, true);
  for (const { at, bits } of rawBytes) bytes.set(bits, at);
  bytes.set(poolBytes, poolBase);
  return { bytes, activeOffset: activeAt, eligibleOffset: eligibleAt, hostRegexes: (table.hostRegexes ?? []).map((r) => programAt(r.pattern, r.mode)) };
}
