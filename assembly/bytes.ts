// Byte helpers for the route core: hashing, comparison and string matching over
// raw linear memory. No allocation; everything inlines into route().

import { SM_EXACT, SM_PREFIX } from "./layout";

const FNV_OFFSET: u32 = 0x811c9dc5;
const FNV_PRIME: u32 = 0x01000193;

@inline export function fnvStart(): u32 {
  return FNV_OFFSET;
}
@inline export function fnvStep(h: u32, c: u32): u32 {
  return (h ^ c) * FNV_PRIME;
}
@inline export function lowerAscii(c: u32): u32 {
  return c - 65 < 26 ? c | 32 : c;
}

const M1: u32 = 0xcc9e2d51;
const M2: u32 = 0x1b873593;

@inline function murmurMix(h: u32, k: u32): u32 {
  k *= M1;
  k = rotl<u32>(k, 15);
  k *= M2;
  h ^= k;
  h = rotl<u32>(h, 13);
  return h * 5 + 0xe6546b64;
}

@inline function murmurFinish(h: u32, k: u32, n: u32): u32 {
  k *= M1;
  k = rotl<u32>(k, 15);
  k *= M2;
  h ^= k ^ n;
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

/** ASCII lower-casing of four bytes at once (SWAR); bytes >= 0x80 must be absent. */
@inline function lowerWord(w: u32): u32 {
  const upper = (w + 0x3f3f3f3f) & ~(w + 0x25252525) & 0x80808080;
  return w | (upper >> 2);
}

@inline function lowerBytes(w: u32): u32 {
  if ((w & 0x80808080) == 0) return lowerWord(w);
  return lowerAscii(w & 0xff) | (lowerAscii((w >> 8) & 0xff) << 8) | (lowerAscii((w >> 16) & 0xff) << 16) | (lowerAscii(w >> 24) << 24);
}

/** murmur3_32 (seed 0) of n bytes, four at a time: the whole-string hash for exact keys. */
export function hashWords(at: u32, n: u32): u32 {
  let h: u32 = 0;
  const words = n & ~3;
  for (let i: u32 = 0; i < words; i += 4) h = murmurMix(h, load<u32>(at + i));
  let k: u32 = 0;
  for (let i = n - 1; i >= words && i != 0xffffffff; i--) k = (k << 8) | <u32>load<u8>(at + i);
  return murmurFinish(h, k, n);
}

/** hashWords of the ASCII-lower-cased bytes: domains and ignoreUriCase exact paths. */
export function hashWordsLower(at: u32, n: u32): u32 {
  let h: u32 = 0;
  const words = n & ~3;
  for (let i: u32 = 0; i < words; i += 4) h = murmurMix(h, lowerBytes(load<u32>(at + i)));
  let k: u32 = 0;
  for (let i = n - 1; i >= words && i != 0xffffffff; i--) k = (k << 8) | lowerAscii(<u32>load<u8>(at + i));
  return murmurFinish(h, k, n);
}

/** Distinguishes path-index keys of different kinds that share bytes. */
@inline export function pathKeySalt(kind: u32): u32 {
  return kind * 0x9e3779b1;
}

@inline export function bytesEqual(a: u32, b: u32, n: u32): bool {
  return memory.compare(a, b, n) == 0;
}

/** Compares `a` lower-cased against `b`, which the compiler stored lower-cased. */
export function bytesEqualLower(a: u32, b: u32, n: u32): bool {
  for (let i: u32 = 0; i < n; i++) {
    if (lowerAscii(<u32>load<u8>(a + i)) != <u32>load<u8>(b + i)) return false;
  }
  return true;
}

/** Istio StringMatch exact/prefix, case-sensitive. */
@inline export function stringMatches(kind: u32, at: u32, n: u32, want: u32, wantLen: u32): bool {
  if (kind == SM_EXACT) return n == wantLen && bytesEqual(at, want, n);
  if (kind == SM_PREFIX) return n >= wantLen && bytesEqual(at, want, wantLen);
  return false;
}
