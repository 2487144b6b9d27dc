// The Wasm route core and the pure-TypeScript reference matcher must make the
// same decision for every table and request.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as L from "../../assembly/layout.js";
import { emptyDecision } from "../../host/core/decision.js";
import { ReferenceMatcher } from "../../host/core/reference-matcher.js";
import { RouteCore } from "../../host/core/route-core.js";
import { writeRequest } from "../../host/core/request-fields.js";
import { clusterEndpointStarts, type RouteTable } from "../../host/core/route-table.js";
import { consistentHashTable, routeRequest, routeTable, weightedTable, type GeneratedRequest } from "../support/tables.js";

/** Builds the core and the reference for `table` with some endpoints ejected and some load, and compares their decisions. */
function agree(table: RouteTable, requests: readonly GeneratedRequest[], load: readonly number[], ejected: readonly boolean[], random: number): void {
  const core = new RouteCore(table);
  load.forEach((n, i) => {
    if (i < core.active.length) core.active[i] = n;
  });
  // Some endpoints ejected (outlier detection): both sides pick among the rest.
  const eligible = Array.from(core.active, (_, i) => (ejected[i] ? 0 : 1));
  const starts = clusterEndpointStarts(table);
  table.clusters.forEach((c, i) => core.setEligible(i, eligible.slice(starts[i], starts[i]! + c.endpointCount).map((e) => e === 1)));
  const reference = new ReferenceMatcher(table, core.active, eligible);
  requests.forEach((req, i) => {
    const r = (random + i * 0x9e3779b9) >>> 0;
    expect(writeRequest(core, table.headerNames, req)).toBe(true);
    const fromCore = core.readDecision(core.route(r), emptyDecision());
    const fromReference = emptyDecision();
    reference.decide(req, r, fromReference);
    expect(fromCore).toEqual(fromReference);
  });
}

const requests = fc.array(routeRequest, { minLength: 1, maxLength: 24 });
const loads = fc.array(fc.nat(5), { maxLength: 16 });
const ejections = fc.array(fc.boolean(), { maxLength: 16 });

describe("route core vs reference matcher", () => {
  it("agrees on random tables, requests and in-flight counts", () => {
    fc.assert(fc.property(routeTable, requests, loads, ejections, fc.nat(), agree), { numRuns: 400 });
  });

  it("agrees on consistent-hash clusters: ring hash and maglev on headers, cookies, query parameters and the source IP", () => {
    fc.assert(fc.property(consistentHashTable, requests, loads, ejections, fc.nat(), agree), { numRuns: 300 });
  });

  it("agrees on weighted clusters: round robin's schedule, least request's weighted choices, random ignoring weights", () => {
    const hitting = fc.array(routeRequest.map((r) => ({ ...r, authority: "a" })), { minLength: 8, maxLength: 40 });
    fc.assert(fc.property(weightedTable, hitting, loads, ejections, fc.nat(), agree), { numRuns: 300 });
  });

  it("rotates round robin over the eligible endpoints and picks only eligible ones", () => {
    const table = {
      virtualHosts: [{ name: "v", domains: ["svc"], entryStart: 0, entryCount: 1 }],
      entries: [{ route: 0, conditions: [] }],
      routes: [{ destinations: [{ cluster: 0, weight: 1 }] }],
      clusters: [{ endpointCount: 4, passthrough: false, loadBalancer: { kind: "roundRobin" as const } }],
      headerNames: [],
    };
    const core = new RouteCore(table);
    const picks = (n: number): number[] =>
      Array.from({ length: n }, (_, i) => {
        writeRequest(core, [], { method: "GET", authority: "svc", path: "/", query: undefined, scheme: "http", header: () => undefined });
        return core.route(i) >= 0 ? core.endpoint : -1;
      });
    expect(picks(6)).toEqual([0, 1, 2, 3, 0, 1]);
    core.setEligible(0, [true, false, true, false]);
    expect(picks(4)).toEqual([2, 0, 2, 0]);
    core.setEligible(0, [false, false, false, false]);
    expect(picks(1)).toEqual([-1]);
  });

  it("finds exact paths, case-sensitive or not, on hosts with and without other kinds of keys", () => {
    const host = (name: string, entryStart: number, entryCount: number) => ({ name, domains: [name], entryStart, entryCount });
    const exact = (route: number, value: string, ignoreCase: boolean) => ({ route, uri: { kind: "exact" as const, value, ignoreCase }, conditions: [] });
    const table = {
      virtualHosts: [host("cs", 0, 1), host("ci", 1, 1), host("mixed", 2, 3), host("prefixes", 5, 1)],
      entries: [exact(0, "/a/b", false), exact(1, "/a/b", true), exact(2, "/x", true), exact(3, "/y", false), { route: 4, uri: { kind: "prefix" as const, value: "/p", ignoreCase: false }, conditions: [] }, { route: 5, uri: { kind: "prefix" as const, value: "/a", ignoreCase: false }, conditions: [] }],
      routes: Array.from({ length: 6 }, () => ({ destinations: [{ cluster: 0, weight: 1 }] })),
      clusters: [{ endpointCount: 1, passthrough: false }],
      headerNames: [],
    };
    const core = new RouteCore(table);
    const decide = (authority: string, path: string): number => {
      writeRequest(core, [], { method: "GET", authority, path, query: undefined, scheme: "http", header: () => undefined });
      return core.route(7);
    };
    expect([decide("cs", "/a/b"), decide("cs", "/A/B")]).toEqual([0, L.RC_NO_ROUTE]);
    expect([decide("ci", "/a/b"), decide("ci", "/A/b")]).toEqual([1, 1]);
    expect([decide("mixed", "/X"), decide("mixed", "/y"), decide("mixed", "/Y"), decide("mixed", "/p/q")]).toEqual([2, 3, L.RC_NO_ROUTE, 4]);
    expect([decide("prefixes", "/a/b"), decide("prefixes", "/b")]).toEqual([5, L.RC_NO_ROUTE]);
  });

  it("reports no virtual host, no route, missing cluster and no endpoint with distinct codes", () => {
    const table = {
      virtualHosts: [{ name: "v", domains: ["svc"], entryStart: 0, entryCount: 3 }],
      entries: [
        { route: 0, uri: { kind: "exact" as const, value: "/missing", ignoreCase: false }, conditions: [] },
        { route: 1, uri: { kind: "exact" as const, value: "/empty", ignoreCase: false }, conditions: [] },
        { route: 2, uri: { kind: "prefix" as const, value: "/ok", ignoreCase: false }, conditions: [] },
      ],
      routes: [{ destinations: [{ cluster: -1, weight: 1 }] }, { destinations: [{ cluster: 0, weight: 1 }] }, { destinations: [{ cluster: 1, weight: 1 }] }],
      clusters: [{ endpointCount: 0, passthrough: false }, { endpointCount: 2, passthrough: false }],
      headerNames: [],
    };
    const core = new RouteCore(table);
    const decide = (authority: string, path: string): number => {
      writeRequest(core, [], { method: "GET", authority, path, query: undefined, scheme: "http", header: () => undefined });
      return core.route(7);
    };
    expect(decide("other", "/ok")).toBe(L.RC_NO_VHOST);
    expect(decide("svc", "/nope")).toBe(L.RC_NO_ROUTE);
    expect(decide("svc", "/missing")).toBe(L.RC_NO_CLUSTER);
    expect(decide("svc", "/empty")).toBe(L.RC_NO_ENDPOINT);
    expect(decide("SVC", "/ok/x")).toBe(2);
    expect([0, 1]).toContain(core.endpoint);
  });
});
