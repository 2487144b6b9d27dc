// xxHash64 in plain TypeScript (BigInt), for the reference matcher: written for
// clarity against the specification, not speed. The core's own is
// assembly/xxhash.ts; both are checked against xxhash-wasm in test/property.

const MASK = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

const mul = (a: bigint, b: bigint): bigint => (a * b) & MASK;
const add = (a: bigint, b: bigint): bigint => (a + b) & MASK;
const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & MASK;
const round = (acc: bigint, input: bigint): bigint => mul(rotl(add(acc, mul(input, P2)), 31n), P1);
const mergeRound = (acc: bigint, val: bigint): bigint => add(mul(acc ^ round(0n, val), P1), P4);

export function xxhash64(bytes: Uint8Array, seed = 0n): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = add(add(seed, P1), P2);
    let v2 = add(seed, P2);
    let v3 = seed;
    let v4 = (seed - P1) & MASK;
    while (p <= len - 32) {
      v1 = round(v1, view.getBigUint64(p, true));
      v2 = round(v2, view.getBigUint64(p + 8, true));
      v3 = round(v3, view.getBigUint64(p + 16, true));
      v4 = round(v4, view.getBigUint64(p + 24, true));
      p += 32;
    }
    h = add(add(add(rotl(v1, 1n), rotl(v2, 7n)), rotl(v3, 12n)), rotl(v4, 18n));
    for (const v of [v1, v2, v3, v4]) h = mergeRound(h, v);
  } else {
    h = add(seed, P5);
  }
  h = add(h, BigInt(len));
  for (; p + 8 <= len; p += 8) h = add(mul(rotl(h ^ round(0n, view.getBigUint64(p, true)), 27n), P1), P4);
  if (p + 4 <= len) {
    h = add(mul(rotl(h ^ mul(BigInt(view.getUint32(p, true)), P1), 23n), P2), P3);
    p += 4;
  }
  for (; p < len; p++) h = mul(rotl(h ^ mul(BigInt(bytes[p]!), P5), 11n), P1);
  h ^= h >> 33n;
  h = mul(h, P2);
  h ^= h >> 29n;
  h = mul(h, P3);
  h ^= h >> 32n;
  return h;
}
