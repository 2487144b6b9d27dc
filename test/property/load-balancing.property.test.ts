// Consistent hashing in the route core: xxHash64 against the reference
// implementation, stickiness, balance, and how few keys move when an endpoint
// leaves (ring hash and maglev).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import xxhash from "xxhash-wasm";
import { writeRequest } from "../../host/core/request-fields.js";
import { RouteCore } from "../../host/core/route-core.js";
import { xxhash64 } from "../../host/core/xxhash64.js";
import type { RouteTable, TableLoadBalancer } from "../../host/core/route-table.js";

const ENDPOINTS = 5;

function hashTable(loadBalancer: TableLoadBalancer): RouteTable {
  return {
    virtualHosts: [{ name: "v", domains: ["svc"], entryStart: 0, entryCount: 1 }],
    entries: [{ route: 0, conditions: [] }],
    routes: [{ destinations: [{ cluster: 0, weight: 1 }] }],
    clusters: [{ endpointCount: ENDPOINTS, passthrough: false, loadBalancer, endpointNames: Array.from({ length: ENDPOINTS }, (_, i) => `10.0.0.${i + 1}:8080`) }],
    headerNames: ["x-user"],
  };
}

function endpointFor(core: RouteCore, user: string | undefined, random = 0): number {
  writeRequest(core, ["x-user"], { method: "GET", authority: "svc", path: "/", query: undefined, scheme: "http", header: (n) => (n === "x-user" ? user : undefined) });
  return core.route(random) >= 0 ? core.endpoint : -1;
}

const keys = Array.from({ length: 5000 }, (_, i) => `user-${i}`);

describe.each([
  ["ring hash", { kind: "ringHash", key: { source: "header", name: "x-user" }, minimumRingSize: 1024 }],
  ["maglev", { kind: "maglev", key: { source: "header", name: "x-user" }, tableSize: 65537 }],
] as [string, TableLoadBalancer][])("%s", (_name, lb) => {
  it("sends a key to the same endpoint every time, whatever the random value", () => {
    const core = new RouteCore(hashTable(lb));
    for (const k of keys.slice(0, 200)) {
      const first = endpointFor(core, k, 1);
      for (let r = 0; r < 5; r++) expect(endpointFor(core, k, r * 0x9e3779b9)).toBe(first);
    }
  });

  it("spreads keys over every endpoint, and moves only about 1/N of them when one endpoint leaves", () => {
    const core = new RouteCore(hashTable(lb));
    const before = keys.map((k) => endpointFor(core, k));
    for (let e = 0; e < ENDPOINTS; e++) {
      const share = before.filter((x) => x === e).length / keys.length;
      expect(share).toBeGreaterThan(0.5 / ENDPOINTS);
      expect(share).toBeLessThan(1.5 / ENDPOINTS);
    }
    core.setEligible(0, [true, true, false, true, true]); // endpoint 2 ejected
    const after = keys.map((k) => endpointFor(core, k));
    expect(after).not.toContain(2);
    const moved = before.filter((e, i) => e !== after[i]).length / keys.length;
    const onRemoved = before.filter((e) => e === 2).length / keys.length;
    // Every key of the removed endpoint moves; others stay (ring) or nearly all stay (maglev).
    expect(before.every((e, i) => e !== 2 || after[i] !== 2)).toBe(true);
    expect(moved).toBeLessThan(onRemoved + 0.05);
    core.setEligible(0, [true, true, true, true, true]);
    expect(keys.map((k) => endpointFor(core, k))).toEqual(before); // back as it was
  });

  it("picks at random among eligible endpoints when the request has no key", () => {
    const core = new RouteCore(hashTable(lb));
    const seen = new Set(Array.from({ length: 200 }, (_, i) => endpointFor(core, undefined, Math.imul(i, 0x9e3779b9) >>> 0)));
    expect(seen.size).toBe(ENDPOINTS);
  });
});

describe("xxHash64", () => {
  it("matches the reference implementation on random bytes and seeds, in the core and in the reference matcher", async () => {
    const { h64Raw } = await xxhash();
    const core = new RouteCore(hashTable({ kind: "leastRequest" }));
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 80 }), fc.constantFrom(0n, 1n, 0x9e3779b97f4a7c15n), (s, seed) => {
        const want = h64Raw(Buffer.from(s, "utf8"), seed);
        expect(core.hash64(s, seed)).toBe(want); // the core's (assembly/xxhash.ts)
        expect(xxhash64(Buffer.from(s, "utf8"), seed)).toBe(want); // the reference matcher's (host/core/xxhash64.ts)
      }),
      { numRuns: 500 },
    );
  });
});
