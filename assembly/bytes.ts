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

/** FNV-1a over the ASCII-lower-cased bytes: domains match case-insensitively. */
export function hashLower(at: u32, n: u32): u32 {
  let h = FNV_OFFSET;
  for (let i: u32 = 0; i < n; i++) h = fnvStep(h, lowerAscii(<u32>load<u8>(at + i)));
  return h;
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
