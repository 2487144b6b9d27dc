// Consistent-hash tables for the route core, built off the hot path from the
// eligible endpoints of a cluster: Envoy's ring hash (points per host so the
// ring holds at least minimumRingSize) and maglev (the permutation fill of the
// Maglev paper). The core only looks them up.

export interface HashHost {
  /** Global endpoint index. */
  endpoint: number;
  /** "address:port": what the table hashes. */
  name: string;
}

/**
 * Ring points sorted by hash: each host gets ceil(minimumRingSize / clusterSize)
 * points, hashes of "name_i". The count per host follows the cluster's size,
 * not the eligible hosts', so an ejection only removes points: just the keys of
 * the ejected host move.
 */
export function buildRing(hosts: readonly HashHost[], clusterSize: number, minimumRingSize: number, hash: (s: string) => bigint): { point: bigint; endpoint: number }[] {
  if (hosts.length === 0) return [];
  const perHost = Math.ceil(minimumRingSize / clusterSize);
  const ring: { point: bigint; endpoint: number }[] = [];
  for (const h of hosts) for (let i = 0; i < perHost; i++) ring.push({ point: hash(`${h.name}_${i}`), endpoint: h.endpoint });
  ring.sort((a, b) => (a.point < b.point ? -1 : a.point > b.point ? 1 : a.endpoint - b.endpoint));
  return ring;
}

/** A maglev lookup table of `size` (prime) slots, each a global endpoint index. */
export function buildMaglev(hosts: readonly HashHost[], size: number, hash: (s: string, seed: bigint) => bigint): Int32Array {
  const table = new Int32Array(size).fill(-1);
  if (hosts.length === 0) return table;
  const m = BigInt(size);
  const offset = hosts.map((h) => Number(hash(h.name, 0n) % m));
  const skip = hosts.map((h) => Number(hash(h.name, 1n) % (m - 1n)) + 1);
  const next = new Array<number>(hosts.length).fill(0);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < hosts.length; i++) {
      let c = (offset[i]! + next[i]! * skip[i]!) % size;
      while (table[c] !== -1) {
        next[i]!++;
        c = (offset[i]! + next[i]! * skip[i]!) % size;
      }
      table[c] = hosts[i]!.endpoint;
      next[i]!++;
      if (++filled === size) return table;
    }
  }
}
