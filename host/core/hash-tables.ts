// The load balancers' tables for the route core, built off the hot path from a
// cluster's endpoints and their weights: Envoy's ring hash and maglev (with
// Envoy's weighting), and the schedule of weighted round robin. The core only
// looks them up.

import { urlHost } from "../http/authority.js";

export interface HashHost {
  /** Global endpoint index. */
  endpoint: number;
  /** What the table hashes: hashName(address, port). */
  name: string;
  /** Envoy's load_balancing_weight (at least 1). */
  weight: number;
}

/** "address:port" as Envoy hashes a host (Address::asString(): an IPv6 address in brackets). */
export function hashName(address: string, port: number): string {
  return `${urlHost(address)}:${port}`;
}

/**
 * The endpoints' weights when the load balancers must use them, else undefined: Envoy weighs
 * only when the weights differ (equal weights, whatever their value, are plain round robin and
 * power of two choices). Istio sends 1 for an endpoint without a weight, and so does this.
 */
export function endpointWeights(endpoints: readonly { weight?: number }[]): number[] | undefined {
  const first = endpoints[0]?.weight ?? 1;
  if (endpoints.every((ep) => (ep.weight ?? 1) === first)) return undefined;
  return endpoints.map((ep) => ep.weight ?? 1);
}

/**
 * Envoy's ring never holds more points than maximum_ring_size (8 388 608 by default); instio's
 * holds at most this many, so that weights a million to one cannot make a ring rebuild (on every
 * ejection) stall the serving thread. Weight ratios below 1 : 128 at the default ring size are exact.
 */
export const MAX_RING_SIZE = 1 << 17;

/**
 * Envoy's weighted ring (ring_hash_lb.cc), in its arithmetic: the smallest normalized weight
 * gets ceil(minimumRingSize × it) points and every host its share of that scale, hashes of
 * "name_i", sorted by hash. The shares come from every host of the cluster (`hosts`), and only
 * the `eligible` ones place their points: an ejection removes just the ejected host's points and
 * moves just its keys (Envoy normalizes over the healthy hosts, moving a few more).
 */
export function buildRing(hosts: readonly HashHost[], eligible: (endpoint: number) => boolean, minimumRingSize: number, hash: (s: string) => bigint): { point: bigint; endpoint: number }[] {
  let total = 0;
  for (const h of hosts) total += h.weight;
  const scale = ringScale(hosts.map((h) => h.weight), minimumRingSize);
  const ring: { point: bigint; endpoint: number }[] = [];
  let target = 0;
  let current = 0;
  for (const h of hosts) {
    target += scale * (h.weight / total);
    const place = eligible(h.endpoint);
    // At least one point each: past MAX_RING_SIZE a host's share can round to none, and a ring
    // without points for the only eligible host would have nothing to pick.
    for (let i = 0; current < target || i === 0; i++, current++) if (place) ring.push({ point: hash(`${h.name}_${i}`), endpoint: h.endpoint });
  }
  ring.sort((a, b) => (a.point < b.point ? -1 : a.point > b.point ? 1 : a.endpoint - b.endpoint));
  return ring;
}

/** Points at most in a ring of hosts with `weights` (buildRing): the capacity its table needs. */
export function ringSize(weights: readonly number[], minimumRingSize: number): number {
  return Math.ceil(ringScale(weights, minimumRingSize)) + weights.length;
}

/** Envoy's ring scale: the lightest normalized weight times it is ceil(minimumRingSize × that weight), at most MAX_RING_SIZE. */
function ringScale(weights: readonly number[], minimumRingSize: number): number {
  let total = 0;
  for (const w of weights) total += w;
  let minNormalized = 1;
  for (const w of weights) minNormalized = Math.min(minNormalized, w / total);
  return Math.min(Math.ceil(minNormalized * minimumRingSize) / minNormalized, MAX_RING_SIZE);
}

/**
 * A maglev lookup table of `size` (prime) slots, each a global endpoint index: Envoy's
 * (maglev_lb.cc) over the eligible `hosts`, sorted by name as Envoy sorts them. Each host takes
 * its turn in proportion to its weight (a host of the largest weight fills a slot every round).
 */
export function buildMaglev(hosts: readonly HashHost[], size: number, hash: (s: string, seed: bigint) => bigint): Int32Array {
  const table = new Int32Array(size).fill(-1);
  if (hosts.length === 0) return table;
  const sorted = [...hosts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const m = BigInt(size);
  const offset = sorted.map((h) => Number(hash(h.name, 0n) % m));
  const skip = sorted.map((h) => Number(hash(h.name, 1n) % (m - 1n)) + 1);
  let total = 0;
  for (const h of sorted) total += h.weight;
  const normalized = sorted.map((h) => h.weight / total);
  const maxNormalized = Math.max(...normalized);
  const target = new Array<number>(sorted.length).fill(0);
  const next = new Array<number>(sorted.length).fill(0);
  let filled = 0;
  for (let iteration = 1; ; iteration++) {
    for (let i = 0; i < sorted.length; i++) {
      if (iteration * normalized[i]! < target[i]!) continue;
      target[i]! += maxNormalized;
      let c = (offset[i]! + next[i]! * skip[i]!) % size;
      while (table[c] !== -1) {
        next[i]!++;
        c = (offset[i]! + next[i]! * skip[i]!) % size;
      }
      table[c] = sorted[i]!.endpoint;
      next[i]!++;
      if (++filled === size) return table;
    }
  }
}

/** Entries of a weighted round-robin schedule at most: weights are scaled down to fit (ratios finer than this are rounded). */
export const MAX_SCHEDULE = 4096;

/**
 * One cycle of Envoy's weighted round robin (its EDF scheduler) over `hosts`, as global endpoint
 * indices: each host appears in proportion to its weight, spread as EDF spreads it. Host i's k-th
 * turn falls due at k / w_i; turns due together go in the order they were queued (the earlier
 * previous turn first, then the host's place in the list), as Envoy's scheduler breaks ties.
 * The weights are divided by their common divisor, and scaled to MAX_SCHEDULE if still larger.
 */
export function buildSchedule(hosts: readonly HashHost[]): Int32Array {
  let divisor = 0;
  for (const h of hosts) divisor = gcd(divisor, h.weight);
  let weights = hosts.map((h) => h.weight / divisor);
  const total = weights.reduce((a, b) => a + b, 0);
  if (total > MAX_SCHEDULE) weights = weights.map((w) => Math.max(1, Math.round((w * MAX_SCHEDULE) / total)));
  const turns: { host: number; k: number }[] = [];
  weights.forEach((w, host) => {
    for (let k = 1; k <= w; k++) turns.push({ host, k });
  });
  // Exact: k/w_a against j/w_b as cross products (both stay far below 2^53).
  turns.sort((a, b) => {
    const wa = weights[a.host]!;
    const wb = weights[b.host]!;
    return a.k * wb - b.k * wa || (a.k - 1) * wb - (b.k - 1) * wa || a.host - b.host;
  });
  return Int32Array.from(turns, (t) => hosts[t.host]!.endpoint);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
