// Destination and endpoint selection. Deterministic in `random`, so the
// reference matcher can reproduce every choice.

import { D_CUMULATIVE, D_SIZE } from "./layout";

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

/**
 * Istio's default LEAST_REQUEST: power of two choices over the requests in flight
 * per endpoint, which the host keeps in the image's ACTIVE array.
 */
export function pickLeastRequest(active: u32, start: u32, count: u32, random: u32): i32 {
  if (count == 1) return <i32>start;
  const r1 = remix(random);
  const a = scale(r1, count);
  let b = scale(remix(r1), count - 1);
  if (b >= a) b++;
  const activeA = load<i32>(active + (start + a) * 4);
  const activeB = load<i32>(active + (start + b) * 4);
  return <i32>(start + (activeB < activeA ? b : a));
}
