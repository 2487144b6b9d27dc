// The load balancers' weighted tables against what Envoy's algorithms give:
// EDF's round-robin order (ties to the turn queued first), the ring's share of
// points per weight, maglev's slots per weight, and the bounds instio adds.

import { describe, expect, it } from "vitest";
import { buildMaglev, buildRing, buildSchedule, endpointWeights, hashName, MAX_RING_SIZE, MAX_SCHEDULE, ringSize, type HashHost } from "../../host/core/hash-tables.js";
import { xxhash64 } from "../../host/core/xxhash64.js";

const hash = (s: string, seed = 0n): bigint => xxhash64(Buffer.from(s, "utf8"), seed);
const hosts = (weights: number[]): HashHost[] => weights.map((weight, i) => ({ endpoint: i, name: `10.0.0.${i}:80`, weight }));
const counts = (picks: ArrayLike<number>, n: number): number[] => {
  const out = new Array<number>(n).fill(0);
  for (let i = 0; i < picks.length; i++) out[picks[i]!]!++;
  return out;
};

describe("weighted round robin (Envoy's EDF scheduler)", () => {
  it("spreads one cycle in EDF order: host i's k-th turn due at k/w_i, ties to the turn queued first", () => {
    // a (3) is due at 1/3, 2/3, 1; b (1) at 1, queued at 0, before a's third turn (queued at 2/3).
    expect([...buildSchedule(hosts([3, 1]))]).toEqual([0, 0, 1, 0]);
    // Equal deadlines from the start go in list order; at 1, c's first turn (queued at 0) before a's and b's second.
    expect([...buildSchedule(hosts([2, 2, 1]))]).toEqual([0, 1, 2, 0, 1]);
    expect(counts(buildSchedule(hosts([5, 1, 3])), 3)).toEqual([5, 1, 3]);
  });

  it("divides the weights by their common divisor and scales a cycle longer than MAX_SCHEDULE down, every host keeping a turn", () => {
    expect(buildSchedule(hosts([300, 100])).length).toBe(4);
    const huge = buildSchedule(hosts([2 ** 32 - 1, 1, 7]));
    expect(huge.length).toBeLessThanOrEqual(MAX_SCHEDULE + 3);
    expect(counts(huge, 3).every((c) => c >= 1)).toBe(true);
  });

  it("weighs only unequal weights, as Envoy (equal weights of any value are plain round robin)", () => {
    expect(endpointWeights([{ weight: 5 }, { weight: 5 }])).toBeUndefined();
    expect(endpointWeights([{}, { weight: 1 }])).toBeUndefined();
    expect(endpointWeights([{}, { weight: 2 }])).toEqual([1, 2]);
  });
});

describe("weighted ring hash (Envoy's ring_hash_lb)", () => {
  it("gives each host points in proportion to its weight, the lightest ceil(minimumRingSize × its share)", () => {
    const ring = buildRing(hosts([1, 3]), () => true, 1024, hash);
    // min share 1/4: ceil(256)/(1/4) = 1024 points, 256 and 768.
    expect(counts(ring.map((p) => p.endpoint), 2)).toEqual([256, 768]);
    expect(ring.length).toBeLessThanOrEqual(ringSize([1, 3], 1024));
  });

  it("keeps equal weights at ceil(minimumRingSize / hosts) points each", () => {
    expect(counts(buildRing(hosts([1, 1, 1, 1]), () => true, 1024, hash).map((p) => p.endpoint), 4)).toEqual([256, 256, 256, 256]);
  });

  it("places only the eligible hosts' points, their counts unchanged (only the ejected host's keys move)", () => {
    const all = buildRing(hosts([1, 2, 1]), () => true, 64, hash);
    const without = buildRing(hosts([1, 2, 1]), (e) => e !== 1, 64, hash);
    expect(without).toEqual(all.filter((p) => p.endpoint !== 1));
  });

  it("holds at most MAX_RING_SIZE points, and every host at least one", () => {
    const ring = buildRing(hosts([2 ** 32 - 1, 1]), () => true, 1024, hash);
    expect(ring.length).toBeLessThanOrEqual(MAX_RING_SIZE + 2);
    expect(counts(ring.map((p) => p.endpoint), 2)[1]).toBeGreaterThanOrEqual(1);
  });
});

describe("weighted maglev (Envoy's maglev_lb)", () => {
  it("fills slots in proportion to weight (1:2:3 of 65537 slots)", () => {
    const table = buildMaglev(hosts([1, 2, 3]), 65537, hash);
    expect(counts(table, 3)).toEqual([10923, 21846, 32768]);
  });

  it("orders hosts by name, as Envoy sorts them: the list order does not change the table", () => {
    const forward = buildMaglev(hosts([1, 1, 1]), 251, hash);
    const reversed = buildMaglev(hosts([1, 1, 1]).reverse(), 251, hash);
    expect([...reversed]).toEqual([...forward]);
  });
});

it("hashes an IPv6 host as Envoy prints it, in brackets", () => {
  expect(hashName("10.0.0.1", 80)).toBe("10.0.0.1:80");
  expect(hashName("fd00::1", 80)).toBe("[fd00::1]:80");
});
