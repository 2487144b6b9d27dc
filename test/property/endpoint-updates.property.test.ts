// Endpoint updates patched into a serving route core (resizeCluster, Envoy's
// EDS) against a core built from scratch for the same endpoints: for every
// load balancer the patched core picks what a fresh one would, ranges never
// overlap, and the requests-in-flight counts of clusters the update did not
// touch survive the endpoint arrays being laid out again (and the memory
// growing under them).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { writeRequest } from "../../host/core/request-fields.js";
import { RouteCore } from "../../host/core/route-core.js";
import type { RouteTable, TableLoadBalancer } from "../../host/core/route-table.js";

const LOAD_BALANCERS: TableLoadBalancer[] = [
  { kind: "leastRequest" },
  { kind: "roundRobin" },
  { kind: "random" },
  { kind: "ringHash", key: { source: "header", name: "x-user" }, minimumRingSize: 64 },
  { kind: "maglev", key: { source: "header", name: "x-user" }, tableSize: 251 },
];

function table(lbs: readonly TableLoadBalancer[], names: readonly (readonly string[])[], weights: readonly (readonly number[] | undefined)[] = []): RouteTable {
  return {
    virtualHosts: lbs.map((_, i) => ({ name: `c${i}`, domains: [`c${i}`], entryStart: i, entryCount: 1 })),
    entries: lbs.map((_, i) => ({ route: i, conditions: [] })),
    routes: lbs.map((_, i) => ({ destinations: [{ cluster: i, weight: 1 }] })),
    clusters: lbs.map((lb, i) => ({
      endpointCount: names[i]!.length,
      passthrough: false,
      loadBalancer: lb,
      ...(lb.kind === "ringHash" || lb.kind === "maglev" ? { endpointNames: [...names[i]!] } : {}),
      ...(weights[i] ? { endpointWeights: [...weights[i]!] } : {}),
    })),
    headerNames: ["x-user"],
  };
}

/** The endpoint's offset in its cluster, or -1 when none was picked. */
function pick(core: RouteCore, cluster: number, user: string | undefined, random: number): number {
  writeRequest(core, ["x-user"], { method: "GET", authority: `c${cluster}`, path: "/", query: undefined, scheme: "http", header: (n) => (n === "x-user" ? user : undefined) });
  const code = core.route(random);
  return code >= 0 && core.endpoint >= 0 ? core.endpoint - core.clusterStart(cluster) : -1;
}

const names = (cluster: number, size: number, salt: number): string[] => Array.from({ length: size }, (_, j) => `10.${cluster}.${(j * 7 + salt) % 256}.${j >> 8}:80`);

/** Unequal weights (every load balancer but RANDOM uses them), now and then far apart. */
const weightsOf = (size: number, salt: number): number[] | undefined =>
  size < 2 ? undefined : Array.from({ length: size }, (_, j) => 1 + ((j * 31 + salt) % 7) * (salt % 3 === 0 ? 100 : 1));

const update = fc.record({
  cluster: fc.nat(),
  weighted: fc.boolean(),
  // Mostly small clusters; now and then a big one, which lays out the arrays again and grows the memory.
  size: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 200, max: 6000 }) }),
  salt: fc.nat({ max: 255 }),
});

describe("endpoint updates patched into the serving core", () => {
  it("pick what a freshly built core picks, keep ranges apart and keep untouched clusters' counts", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...LOAD_BALANCERS.keys()), { minLength: 1, maxLength: 5 }), fc.array(update, { minLength: 1, maxLength: 8 }), (lbIndex, updates) => {
        const lbs = lbIndex.map((i) => LOAD_BALANCERS[i]!);
        const current = lbs.map((_, i) => names(i, 3, 0));
        const weights: (number[] | undefined)[] = lbs.map(() => undefined);
        const core = new RouteCore(table(lbs, current));
        for (const u of updates) {
          const c = u.cluster % lbs.length;
          // Requests in flight elsewhere: a distinct count per endpoint of every other cluster.
          const counts = lbs.map((_, i) => (i === c ? [] : current[i]!.map((_, j) => (j % 5) + 1)));
          counts.forEach((cs, i) => cs.forEach((n, j) => (core.active[core.clusterStart(i) + j] = n)));
          const generation = core.layoutGeneration;

          current[c] = names(c, u.size, u.salt);
          weights[c] = u.weighted ? weightsOf(u.size, u.salt) : undefined;
          core.resizeCluster(c, current[c]!, weights[c]);

          // Untouched clusters keep their counts, wherever their cells went.
          counts.forEach((cs, i) => cs.forEach((n, j) => expect(core.active[core.clusterStart(i) + j]).toBe(n)));
          expect(core.layoutGeneration >= generation).toBe(true);
          for (let i = 0; i < lbs.length; i++) core.active.fill(0, core.clusterStart(i), core.clusterStart(i) + core.clusterSize(i));

          // Ranges: the sizes asked for, inside the arrays, never overlapping.
          const ranges = lbs.map((_, i) => [core.clusterStart(i), core.clusterStart(i) + core.clusterSize(i)] as const).sort((a, b) => a[0] - b[0]);
          ranges.forEach(([s, e], k) => {
            expect(e).toBeLessThanOrEqual(core.active.length);
            if (k > 0) expect(s).toBeGreaterThanOrEqual(ranges[k - 1]![1]);
          });
          lbs.forEach((_, i) => expect(core.clusterSize(i)).toBe(current[i]!.length));

          // Every decision as a fresh core for these endpoints would make it (round robin: in range).
          const fresh = new RouteCore(table(lbs, current, weights));
          for (let i = 0; i < lbs.length; i++) {
            for (const [k, random] of [[0, 0], [1, 0x9e3779b9], [2, 12345], [3, 0xffffffff]] as const) {
              const user = k === 3 ? undefined : `user-${k}-${u.salt}`;
              const got = pick(core, i, user, random);
              const want = pick(fresh, i, user, random);
              if (lbs[i]!.kind === "roundRobin") expect(got < current[i]!.length && (got >= 0) === (want >= 0)).toBe(true);
              else expect(got).toBe(want);
            }
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it("takes eligibility after a resize as a fresh core does (ejections re-applied by the cluster)", () => {
    const lbs = [LOAD_BALANCERS[3]!, LOAD_BALANCERS[4]!];
    const current = [names(0, 4, 1), names(1, 4, 2)];
    const core = new RouteCore(table(lbs, current));
    current[0] = names(0, 9, 3);
    core.resizeCluster(0, current[0], undefined);
    const eligible = current[0].map((_, j) => j % 3 !== 0);
    core.setEligible(0, eligible);
    const fresh = new RouteCore(table(lbs, current));
    fresh.setEligible(0, eligible);
    for (let k = 0; k < 200; k++) {
      const got = pick(core, 0, `u${k}`, k);
      expect(got).toBe(pick(fresh, 0, `u${k}`, k));
      expect(eligible[got]).toBe(true);
    }
  });
});
