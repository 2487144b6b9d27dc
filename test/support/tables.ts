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

export const routeTable: fc.Arbitrary<RouteTable> = fc
  .record({
    clusters: fc.array(
      fc.record({
        endpointCount: fc.integer({ min: 0, max: 4 }),
        passthrough: fc.boolean(),
        loadBalancer: fc.constantFrom<TableLoadBalancer>({ kind: "leastRequest" }, { kind: "roundRobin" }, { kind: "random" }),
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
    const table: RouteTable = { virtualHosts: [], entries: [], routes: [], clusters, headerNames: [] };
    for (const [h, host] of hosts.entries()) {
      const entryStart = table.entries.length;
      for (const r of host.routes) {
        const route = table.routes.length;
        table.routes.push({ destinations: r.dests.map((d) => ({ cluster: Math.min(d.cluster, clusters.length - 1), weight: d.weight })) });
        for (const e of r.entries) table.entries.push({ route, ...e } as MatchEntry);
      }
      table.virtualHosts.push({ name: `vh${h}`, domains: host.domains, entryStart, entryCount: table.entries.length - entryStart });
    }
    table.headerNames = [...new Set(table.entries.flatMap((e) => e.conditions.filter((c) => c.source === "header").map((c) => c.name)))];
    return table;
  });

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
    headers: fc.dictionary(fc.constantFrom(...headerNames), valueString, { maxKeys: 3 }),
  })
  .map((r) => ({ ...r, header: (name: string) => r.headers[name] }));
