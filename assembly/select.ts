// Destination and endpoint selection. Deterministic in `random`, so the
// reference matcher can reproduce every choice.

import { D_CUMULATIVE, D_SIZE, RING_POINT, RING_ENDPOINT, RING_SIZE } from "./layout";

/** Scales a 32-bit random value into [0, n) without modulo bias. */
@inline export function scale(random: u32, n: u32): u32 {
  return <u32>((<u64>random * <u64>n) >> 32);
}

/** murmur3's finaliser: a second independent-looking value from the same random. */
@inline export function remix(x: u32): u32 {
  x ^= x >> 16;
  x *= 0x85ebca6b;
  x ^= x >> 13;
  x *= 0xc2b2ae35;
  x ^= x >> 16;
  return x;
}

/** Relative weights: destination i is chosen with probability weight_i / total. */
export function pickWeighted(dests: u32, start: u32, count: u32, total: u32, random: u32): i32 {
  if (count == 1) return <i32>start;
  const point = scale(random, total);
  for (let i: u32 = 0; i < count; i++) {
    if (point < load<u32>(dests + (start + i) * D_SIZE + D_CUMULATIVE)) return <i32>(start + i);
  }
  return <i32>(start + count - 1);
}

/** The endpoint offset (in the cluster) of the n-th eligible endpoint. */
export function nthEligible(eligible: u32, start: u32, count: u32, n: u32): u32 {
  for (let i: u32 = 0; i < count; i++) {
    if (load<i32>(eligible + (start + i) * 4) != 0) {
      if (n == 0) return i;
      n--;
    }
  }
  return 0; // unreachable while CL_ELIGIBLE_COUNT is right
}

/**
 * Istio's default LEAST_REQUEST: power of two choices over the requests in
 * flight per endpoint (the host keeps them in the image's ACTIVE array),
 * among the eligible endpoints. Returns the endpoint's offset in the cluster.
 */
export function pickLeastRequest(active: u32, eligible: u32, start: u32, count: u32, eligibleCount: u32, random: u32): u32 {
  if (eligibleCount == 1) return count == 1 ? 0 : nthEligible(eligible, start, count, 0);
  const r1 = remix(random);
  let a = scale(r1, eligibleCount);
  let b = scale(remix(r1), eligibleCount - 1);
  if (b >= a) b++;
  if (eligibleCount != count) {
    a = nthEligible(eligible, start, count, a);
    b = nthEligible(eligible, start, count, b);
  }
  const activeA = load<i32>(active + (start + a) * 4);
  const activeB = load<i32>(active + (start + b) * 4);
  return activeB < activeA ? b : a;
}

/** ROUND_ROBIN: the next eligible endpoint after the cluster's cursor, which moves past it. */
export function pickRoundRobin(cursorAt: u32, eligible: u32, start: u32, count: u32): u32 {
  const cursor = load<u32>(cursorAt) % count;
  for (let i: u32 = 0; i < count; i++) {
    let at = cursor + i;
    if (at >= count) at -= count;
    if (load<i32>(eligible + (start + at) * 4) != 0) {
      store<u32>(cursorAt, at + 1);
      return at;
    }
  }
  return 0;
}

/** RING_HASH: the endpoint at the first ring point at or after `hash`, wrapping around. */
export function ringLookup(ring: u32, entries: u32, hash: u64): i32 {
  let lo: u32 = 0;
  let hi = entries;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (load<u64>(ring + mid * RING_SIZE + RING_POINT) < hash) lo = mid + 1;
    else hi = mid;
  }
  if (lo == entries) lo = 0;
  return load<i32>(ring + lo * RING_SIZE + RING_ENDPOINT);
}

/**
 * Weighted ROUND_ROBIN: the next entry of the cluster's schedule (one cycle of
 * Envoy's EDF order over its eligible endpoints, host-built), which the cursor
 * walks. Returns a global endpoint index.
 */
export function pickScheduled(cursorAt: u32, schedule: u32, entries: u32): i32 {
  const at = load<u32>(cursorAt) % entries;
  store<u32>(cursorAt, at + 1);
  return load<i32>(schedule + at * 4);
}

/**
 * Weighted LEAST_REQUEST: two choices drawn in proportion to weight (uniform
 * over the schedule, where each endpoint appears as often as its weight says),
 * the one with fewer requests in flight winning, the first on a tie. Without
 * load that is exactly the weights' proportion. Returns a global endpoint index.
 */
export function pickWeightedLeastRequest(active: u32, schedule: u32, entries: u32, random: u32): i32 {
  const r1 = remix(random);
  const a = load<i32>(schedule + scale(r1, entries) * 4);
  const b = load<i32>(schedule + scale(remix(r1), entries) * 4);
  return load<i32>(active + <u32>b * 4) < load<i32>(active + <u32>a * 4) ? b : a;
}
