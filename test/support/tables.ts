// fast-check generators of random route tables and requests, shaped to collide:
// small alphabets so that paths, prefixes, domains and header values overlap.

import fc from "fast-check";
import type { RouteRequest } from "../../host/core/decision.js";
import type { Condition, MatchEntry, RouteTable, StringMatch, TableLoadBalancer } from "../../host/core/route-table.js";

const pathChars = fc.constantFrom("/", "a", "b", "A", "é");
// Mostly short paths (collisions), sometimes long ones (word-at-a-time hashing, the bulk copy path).
const pathString = fc.oneof(
  { weight: 4, arbitrary: fc.array(pathChars, { maxLength: 6 }).map((cs) => cs.join("")) },
  { weight: 1, arbitrary: fc.array(pathChars, { minLength: 20, maxLength: 40 }).map((cs) => cs.join("")) },
  { weight: 1, arbitrary: fc.constantFrom("/api/v1/reviews/", "/api/v1/reviews/123", "/API/v1/Reviews/123?x", "/api/v1/reviews/123/comments/4567") },
);
const valueString = fc.constantFrom("", "v", "va", "vb", "V", "jason", "j");
const headerNames = ["x-a", "x-b", "end-user"];
const queryNames = ["q", "r"];
const domainPool = ["a", "a:80", "b.example.com", "b.example.com:9080", "*.example.com", "*.com", "*.example.com:9080", "c.ns", "ümlaut.de"];

// RE2 patterns (full match) over the same alphabets, including RE2-only syntax.
const regexValue = fc.constantFrom("", "v.*", "(?i)v", "[vj].?", "j(a|as)son", "\\w+", "/a.*", "/(a|b)+", ".*b", "/api/v\\d+/reviews/\\d+", "(?i)/api/.*", "\\A/a*\\z", "[^/]*", "(?:é|a)+/?");
const exactOrPrefix = fc.constantFrom<"exact" | "prefix">("exact", "prefix");
const stringMatch = (value: fc.Arbitrary<string>): fc.Arbitrary<StringMatch> =>
  fc.oneof({ weight: 4, arbitrary: fc.record({ kind: exactOrPrefix, value }) }, { weight: 1, arbitrary: fc.record({ kind: fc.constant<"regex">("regex"), value: regexValue }) });

const condition: fc.Arbitrary<Condition> = fc.oneof(
  fc.record({
    source: fc.constant<"header">("header"),
    name: fc.constantFrom(...headerNames),
    kind: fc.constantFrom<"exact" | "prefix" | "present">("exact", "prefix", "present"),
    value: valueString,
    invert: fc.boolean(),
  }),
  fc.record({
    source: fc.constant<"header">("header"),
    name: fc.constantFrom(...headerNames),
    kind: fc.constant<"regex">("regex"),
    value: regexValue,
    invert: fc.boolean(),
  }),
  fc.record({
    source: fc.constant<"query">("query"),
    name: fc.constantFrom(...queryNames),
    kind: fc.constantFrom<"exact" | "prefix" | "present" | "regex">("exact", "prefix", "present", "regex"),
    value: fc.oneof(valueString, regexValue),
    invert: fc.constant(false),
  }),
);

const entryShape = fc.record({
  uri: fc.option(
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: exactOrPrefix, value: pathString, ignoreCase: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant<"regex">("regex"), value: regexValue, ignoreCase: fc.constant(false) }) },
    ),
    { nil: undefined },
  ),
  method: fc.option(stringMatch(fc.constantFrom("GET", "POST", "G", "")), { nil: undefined, freq: 4 }),
  authority: fc.option(stringMatch(fc.constantFrom("a", "b.example.com", "b")), { nil: undefined, freq: 5 }),
  scheme: fc.option(stringMatch(fc.constantFrom("http", "https", "h")), { nil: undefined, freq: 6 }),
  conditions: fc.array(condition, { maxLength: 3 }),
});

// Every load balancer; consistent hashing on each key source, with small tables so that collisions happen.
const hashKey = fc.oneof(
  fc.record({ source: fc.constantFrom<"header">("header"), name: fc.constantFrom(...headerNames) }),
  fc.record({ source: fc.constant<"cookie">("cookie"), name: fc.constantFrom("c", "session") }),
  fc.record({ source: fc.constant<"query">("query"), name: fc.constantFrom(...queryNames) }),
  fc.constant({ source: "sourceIp" as const }),
);
const consistentHash: fc.Arbitrary<TableLoadBalancer> = fc.oneof(
  fc.record({ kind: fc.constant<"ringHash">("ringHash"), key: hashKey, minimumRingSize: fc.constantFrom(1, 7, 64) }),
  fc.record({ kind: fc.constant<"maglev">("maglev"), key: hashKey, tableSize: fc.constantFrom(7, 13, 251) }),
);
const anyLoadBalancer: fc.Arbitrary<TableLoadBalancer> = fc.oneof(fc.constantFrom<TableLoadBalancer>({ kind: "leastRequest" }, { kind: "roundRobin" }, { kind: "random" }), consistentHash);

/** Endpoint weights, or none (all equal) about half the time; small, or now and then a thousand to one. */
const endpointWeightsArb = fc.option(fc.array(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: fc.constant(1000) }), { minLength: 9, maxLength: 9 }), { nil: undefined });

/** A cluster's endpointWeights as the compiler writes them: only when they differ. */
function weighted(weights: number[] | undefined, endpointCount: number): { endpointWeights?: number[] } {
  const mine = weights?.slice(0, endpointCount);
  return mine && mine.some((w) => w !== mine[0]) ? { endpointWeights: mine } : {};
}

/** Random route tables whose clusters balance with `loadBalancer`. */
const tablesWith = (loadBalancer: fc.Arbitrary<TableLoadBalancer>): fc.Arbitrary<RouteTable> => fc
  .record({
    clusters: fc.array(
      fc.record({
        endpointCount: fc.integer({ min: 0, max: 4 }),
        passthrough: fc.boolean(),
        loadBalancer: loadBalancer,
        weights: endpointWeightsArb,
      }),
      { minLength: 1, maxLength: 4 },
    ),
    hosts: fc.array(
      fc.record({
        domains: fc.uniqueArray(fc.constantFrom(...domainPool), { maxLength: 3 }),
        routes: fc.array(fc.record({ entries: fc.array(entryShape, { minLength: 1, maxLength: 3 }), dests: fc.array(fc.record({ cluster: fc.integer({ min: -1, max: 3 }), weight: fc.integer({ min: 1, max: 7 }) }), { minLength: 0, maxLength: 3 }) }), { minLength: 1, maxLength: 6 }),
      }),
      { minLength: 1, maxLength: 4 },
    ),
  })
  .map(({ clusters, hosts }) => {
    const table: RouteTable = {
      virtualHosts: [],
      entries: [],
      routes: [],
      // Consistent-hash clusters name their endpoints ("address:port"), as the compiler does.
      clusters: clusters.map(({ weights, ...c }, i) => ({
        ...c,
        ...(c.loadBalancer.kind === "ringHash" || c.loadBalancer.kind === "maglev" ? { endpointNames: Array.from({ length: c.endpointCount }, (_, j) => `10.${i}.0.${j}:80`) } : {}),
        ...weighted(weights, c.endpointCount),
      })),
      headerNames: [],
    };
    for (const [h, host] of hosts.entries()) {
      const entryStart = table.entries.length;
      for (const r of host.routes) {
        const route = table.routes.length;
        table.routes.push({ destinations: r.dests.map((d) => ({ cluster: Math.min(d.cluster, clusters.length - 1), weight: d.weight })) });
        for (const e of r.entries) table.entries.push({ route, ...e } as MatchEntry);
      }
      table.virtualHosts.push({ name: `vh${h}`, domains: host.domains, entryStart, entryCount: table.entries.length - entryStart });
    }
    const hashHeaders = clusters.flatMap((c) => ("key" in c.loadBalancer && (c.loadBalancer.key.source === "header" || c.loadBalancer.key.source === "cookie") ? [c.loadBalancer.key.source === "cookie" ? "cookie" : c.loadBalancer.key.name] : []));
    table.headerNames = [...new Set([...table.entries.flatMap((e) => e.conditions.filter((c) => c.source === "header").map((c) => c.name)), ...hashHeaders])];
    return table;
  });

export const routeTable = tablesWith(anyLoadBalancer);


/**
 * One host "svc" whose catch-all route spreads over 1-3 clusters, each ring hash or maglev on
 * some key source: nearly every request reaches a consistent-hash pick.
 */
export const consistentHashTable: fc.Arbitrary<RouteTable> = fc
  .array(fc.record({ endpointCount: fc.integer({ min: 1, max: 9 }), loadBalancer: consistentHash, weight: fc.integer({ min: 1, max: 5 }), weights: endpointWeightsArb }), { minLength: 1, maxLength: 3 })
  .map((clusters) => ({
    virtualHosts: [{ name: "svc", domains: ["a", "b.example.com", "*.com"], entryStart: 0, entryCount: 1 }],
    entries: [{ route: 0, conditions: [] }],
    routes: [{ destinations: clusters.map((c, i) => ({ cluster: i, weight: c.weight })) }],
    clusters: clusters.map((c, i) => ({ endpointCount: c.endpointCount, passthrough: false, loadBalancer: c.loadBalancer, endpointNames: Array.from({ length: c.endpointCount }, (_, j) => `10.${i}.0.${j}:80`), ...weighted(c.weights, c.endpointCount) })),
    headerNames: [...new Set(clusters.flatMap((c) => ("key" in c.loadBalancer && c.loadBalancer.key.source !== "query" && c.loadBalancer.key.source !== "sourceIp" ? [c.loadBalancer.key.source === "cookie" ? "cookie" : c.loadBalancer.key.name] : [])))],
  }));

/**
 * One host "svc" whose catch-all route goes to one cluster of 2-9 endpoints with unequal weights,
 * under round robin, least request or random: every request reaches a weighted pick.
 */
export const weightedTable: fc.Arbitrary<RouteTable> = fc
  .record({
    kind: fc.constantFrom<"roundRobin" | "leastRequest" | "random">("roundRobin", "leastRequest", "random"),
    weights: fc.array(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(1000, 2 ** 32 - 1) }), { minLength: 2, maxLength: 9 }),
  })
  .map(({ kind, weights }) => ({
    virtualHosts: [{ name: "svc", domains: ["a", "b.example.com", "*.com"], entryStart: 0, entryCount: 1 }],
    entries: [{ route: 0, conditions: [] }],
    routes: [{ destinations: [{ cluster: 0, weight: 1 }] }],
    clusters: [{ endpointCount: weights.length, passthrough: false, loadBalancer: { kind }, ...weighted(weights, weights.length) }],
    headerNames: [],
  }));

export interface GeneratedRequest extends RouteRequest {
  headers: Record<string, string>;
}

export const routeRequest: fc.Arbitrary<GeneratedRequest> = fc
  .record({
    method: fc.constantFrom("GET", "POST", "GE"),
    authority: fc.option(fc.constantFrom("a", "A", "a:80", "b.example.com", "B.Example.com:9080", "x.b.example.com", "z.com", ".com", "c.ns", "ÜMLAUT.de", "ümlaut.de", "b"), { nil: undefined, freq: 8 }),
    path: pathString,
    query: fc.option(fc.constantFrom("q=v", "q=va&r", "r=v&q", "q", "x=1&q=jason", ""), { nil: undefined }),
    scheme: fc.constantFrom("http", "https"),
    headers: fc.record({ plain: fc.dictionary(fc.constantFrom(...headerNames), valueString, { maxKeys: 3 }), cookie: fc.option(fc.constantFrom("c=v", "c=jason; d=1", "d=2;c=va", " c=", "cc=1", "session=x=y", "c", "; ;c=j"), { nil: undefined }) }).map(({ plain, cookie }): Record<string, string> => (cookie === undefined ? plain : { ...plain, cookie })),
    remoteAddress: fc.constantFrom("10.0.0.1", "10.0.0.2", "::1"),
  })
  .map((r) => ({ ...r, header: (name: string) => r.headers[name] }));
