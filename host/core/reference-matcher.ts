// The pure-TypeScript reference matcher: the same decisions as the Wasm core,
// written for clarity, not speed. It scans routes linearly as Envoy does. The
// property tests use it as the oracle for the core and the benchmark as the
// baseline the core must beat.

import { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST, type Decision, type RouteRequest } from "./decision.js";
import { buildMaglev, buildRing, buildSchedule, endpointWeights, type HashHost } from "./hash-tables.js";
import { fullMatchRegExp } from "./regex/js.js";
import { clusterEndpointStarts, lowerAscii, type Condition, type MatchEntry, type RouteTable, type StringMatch, type TableHashKey } from "./route-table.js";
import { xxhash64 } from "./xxhash64.js";

export class ReferenceMatcher {
  private readonly exactDomains = new Map<string, number>();
  private readonly wildcards: { suffix: string; vhost: number }[] = [];
  private readonly endpointStarts: number[];
  /** Global index of each route's first destination. */
  private readonly destinationStarts: number[] = [];

  constructor(
    private readonly table: RouteTable,
    /** Requests in flight per global endpoint index, as the host keeps them. */
    private readonly active: ArrayLike<number>,
    /** 1 per global endpoint the load balancers may pick (all when omitted). */
    private readonly eligible: ArrayLike<number> = new Array<number>(clusterEndpointStarts(table).at(-1)!).fill(1),
  ) {
    table.virtualHosts.forEach((vh, index) => {
      for (const domain of vh.domains) {
        if (domain.startsWith("*")) this.wildcards.push({ suffix: domain.slice(1), vhost: index });
        else if (!this.exactDomains.has(domain)) this.exactDomains.set(domain, index);
      }
    });
    // Longest suffix first; Array.prototype.sort is stable, so earlier hosts win ties.
    this.wildcards.sort((a, b) => utf8Length(b.suffix) - utf8Length(a.suffix));
    this.endpointStarts = clusterEndpointStarts(table);
    let next = 0;
    for (const r of table.routes) {
      this.destinationStarts.push(next);
      next += r.destinations.length;
    }
  }

  decide(req: RouteRequest, random: number, out: Decision): number {
    out.vhost = out.entry = out.route = out.dest = out.cluster = out.endpoint = -1;
    out.code = this.decideInto(req, random >>> 0, out);
    return out.code;
  }

  private decideInto(req: RouteRequest, random: number, out: Decision): number {
    const vhost = this.findVirtualHost(req.authority);
    if (vhost < 0) return RC_NO_VHOST;
    out.vhost = vhost;
    const vh = this.table.virtualHosts[vhost]!;
    let entry = -1;
    for (let i = vh.entryStart; i < vh.entryStart + vh.entryCount; i++) {
      if (entryMatches(this.table.entries[i]!, req)) {
        entry = i;
        break;
      }
    }
    if (entry < 0) return RC_NO_ROUTE;
    out.entry = entry;
    const routeIndex = this.table.entries[entry]!.route;
    out.route = routeIndex;

    const dests = this.table.routes[routeIndex]!.destinations;
    if (dests.length === 0) return routeIndex; // redirect or direct response: answered by the host
    let destOffset = 0;
    if (dests.length > 1) {
      let total = 0;
      for (const d of dests) total += d.weight;
      const point = scale(random, total);
      let cumulative = 0;
      destOffset = dests.length - 1;
      for (let i = 0; i < dests.length; i++) {
        cumulative += dests[i]!.weight;
        if (point < cumulative) {
          destOffset = i;
          break;
        }
      }
    }
    out.dest = this.destinationStarts[routeIndex]! + destOffset;
    const cluster = dests[destOffset]!.cluster;
    if (cluster < 0) return RC_NO_CLUSTER;
    out.cluster = cluster;
    const c = this.table.clusters[cluster]!;
    if (c.passthrough) return routeIndex;
    if (c.endpointCount === 0) return RC_NO_ENDPOINT;
    const endpoint = this.pick(cluster, random, req);
    if (endpoint < 0) return RC_NO_ENDPOINT;
    out.endpoint = endpoint;
    return routeIndex;
  }

  /** Round-robin position per cluster, as the core keeps it in the image. */
  private readonly cursors = new Map<number, number>();

  /** The cluster's load balancer among its eligible endpoints; a global endpoint index or -1. */
  private pick(cluster: number, random: number, req: RouteRequest): number {
    const c = this.table.clusters[cluster]!;
    const start = this.endpointStarts[cluster]!;
    const eligible: number[] = [];
    for (let i = 0; i < c.endpointCount; i++) if (this.eligible[start + i] === 1) eligible.push(i);
    if (eligible.length === 0) return -1;
    const lb = c.loadBalancer ?? { kind: "leastRequest" };
    const kind = lb.kind;
    // The endpoints as the tables see them: built only for the load balancers that read names or weights.
    const all = (): HashHost[] => Array.from({ length: c.endpointCount }, (_, i) => ({ endpoint: start + i, name: c.endpointNames?.[i] ?? String(i), weight: c.endpointWeights?.[i] ?? 1 }));
    if (lb.kind === "ringHash" || lb.kind === "maglev") {
      const key = hashKey(lb.key, req);
      // No key in the request: Envoy's hash policy yields no hash, and the pick is random.
      if (key === undefined) return start + eligible[scale(random, eligible.length)]!;
      const hash = xxhash64(Buffer.from(key, "utf8"));
      if (lb.kind === "maglev") {
        const hosts = all();
        const slots = buildMaglev(eligible.map((i) => hosts[i]!), lb.tableSize, (name, seed) => xxhash64(Buffer.from(name, "utf8"), seed));
        return slots[Number(hash % BigInt(lb.tableSize))]!;
      }
      const ring = buildRing(all(), (endpoint) => this.eligible[endpoint] === 1, lb.minimumRingSize, (name) => xxhash64(Buffer.from(name, "utf8")));
      return (ring.find((p) => p.point >= hash) ?? ring[0]!).endpoint;
    }
    if (kind === "random") return start + eligible[scale(random, eligible.length)]!;
    // Unequal weights among the eligible: Envoy's weighted round robin; least request draws its two choices by weight.
    const weights = c.endpointWeights;
    if (weights && endpointWeights(eligible.map((i) => ({ weight: weights[i] }))) !== undefined) {
      const hosts = all();
      const schedule = buildSchedule(eligible.map((i) => hosts[i]!));
      if (kind === "roundRobin") {
        const at = (this.cursors.get(cluster) ?? 0) % schedule.length;
        this.cursors.set(cluster, at + 1);
        return schedule[at]!;
      }
      const r1 = remix(random);
      const a = schedule[scale(r1, schedule.length)]!;
      const b = schedule[scale(remix(r1), schedule.length)]!;
      return this.active[b]! < this.active[a]! ? b : a;
    }
    if (kind === "roundRobin") {
      const cursor = (this.cursors.get(cluster) ?? 0) % c.endpointCount;
      const next = eligible.find((i) => i >= cursor) ?? eligible[0]!;
      this.cursors.set(cluster, next + 1);
      return start + next;
    }
    return start + pickLeastRequest(this.active, start, eligible, random);
  }

  private findVirtualHost(authority: string | undefined): number {
    if (authority === undefined) return -1;
    const lower = lowerAscii(authority);
    const exact = this.exactDomains.get(lower);
    if (exact !== undefined) return exact;
    for (const w of this.wildcards) {
      if (lower.length > w.suffix.length && lower.endsWith(w.suffix)) return w.vhost;
    }
    return -1;
  }
}

/** The consistent-hash key of the request, as the core finds it; undefined when the request has none. */
function hashKey(key: TableHashKey, req: RouteRequest): string | undefined {
  if (key.source === "sourceIp") return req.remoteAddress;
  if (key.source === "query") return queryParam(req.query, key.name);
  if (key.source === "header") return req.header(key.name);
  const cookies = req.header("cookie");
  if (cookies === undefined) return undefined;
  // Cookies split on ';' with leading spaces dropped; the first one named `key.name` (its value may contain '=').
  for (const part of cookies.split(";")) {
    const c = part.replace(/^ +/, "");
    if (c.length > key.name.length && c.startsWith(key.name) && c[key.name.length] === "=") return c.slice(key.name.length + 1);
  }
  return undefined;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

function entryMatches(e: MatchEntry, req: RouteRequest): boolean {
  if (e.uri) {
    const path = e.uri.ignoreCase ? lowerAscii(req.path) : req.path;
    const want = e.uri.ignoreCase ? lowerAscii(e.uri.value) : e.uri.value;
    if (!stringMatches(e.uri, path, want)) return false;
  }
  if (e.method && !stringMatches(e.method, req.method, e.method.value)) return false;
  if (e.authority && (req.authority === undefined || !stringMatches(e.authority, req.authority, e.authority.value))) return false;
  if (e.scheme && !stringMatches(e.scheme, req.scheme, e.scheme.value)) return false;
  return e.conditions.every((c) => conditionMatches(c, req));
}

function stringMatches(m: { kind: StringMatch["kind"] | "present" }, actual: string, want: string): boolean {
  return valueMatches(m.kind, want, actual);
}

const regexCache = new Map<string, RegExp>();

/** An exact, prefix or regex (RE2 syntax, whole value) match of `actual` against `want`. */
export function valueMatches(kind: StringMatch["kind"] | "present", want: string, actual: string): boolean {
  if (kind === "exact") return actual === want;
  if (kind === "prefix") return actual.startsWith(want);
  if (kind !== "regex") return false;
  let re = regexCache.get(want);
  if (!re) regexCache.set(want, (re = fullMatchRegExp(want)));
  return re.test(actual);
}

function conditionMatches(c: Condition, req: RouteRequest): boolean {
  const value = c.source === "header" ? req.header(c.name) : queryParam(req.query, c.name);
  let matched: boolean;
  if (c.kind === "present") matched = value !== undefined;
  else if (value === undefined) matched = c.invert ? stringMatches(c, "", c.value) : false;
  else matched = stringMatches(c, value, c.value);
  return c.invert ? !matched : matched;
}

/** The first `name` or `name=value` in the raw query string; no percent-decoding, as Envoy. */
export function queryParam(query: string | undefined, name: string): string | undefined {
  if (query === undefined) return undefined;
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key === name) return eq < 0 ? "" : part.slice(eq + 1);
  }
  return undefined;
}

// ── The core's arithmetic, reproduced exactly (assembly/select.ts) ─────────────

/** floor(random * n / 2^32) without losing precision past 2^53. */
export function scale(random: number, n: number): number {
  const hi = (random >>> 16) * n;
  const lo = (random & 0xffff) * n;
  return Math.floor((hi + Math.floor(lo / 65536)) / 65536);
}

export function remix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Offset within the cluster of the endpoint power-of-two-choices picks among the eligible offsets. */
export function pickLeastRequest(active: ArrayLike<number>, start: number, eligible: readonly number[], random: number): number {
  if (eligible.length === 1) return eligible[0]!;
  const r1 = remix(random);
  const a = eligible[scale(r1, eligible.length)]!;
  let rankB = scale(remix(r1), eligible.length - 1);
  if (rankB >= eligible.indexOf(a)) rankB++;
  const b = eligible[rankB]!;
  return active[start + b]! < active[start + a]! ? b : a;
}
