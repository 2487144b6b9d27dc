// The compiled routing table in its semantic form: what the route core decides on.
//
// host/config/compile.ts produces it from the Istio model; host/core/image.ts
// lays it out as bytes for the Wasm core; host/core/reference-matcher.ts reads it
// directly. Indices everywhere, so decisions are integers on both sides.

import type { RegexMode } from "./regex/program.js";
import { endpointWeights, hashName } from "./hash-tables.js";

/** "regex": RE2 syntax, whole-value match (Envoy's safe_regex). */
export type StringMatchKind = "exact" | "prefix" | "regex";
export type ConditionKind = StringMatchKind | "present";

export interface StringMatch {
  kind: StringMatchKind;
  value: string;
}

export interface UriMatch extends StringMatch {
  ignoreCase: boolean;
}

/** A header (`headers`, `withoutHeaders`) or query-parameter condition of one match block. */
export interface Condition {
  source: "header" | "query";
  /** Lower-case header name, or the query parameter name as written. */
  name: string;
  kind: ConditionKind;
  value: string;
  /** withoutHeaders: the result is inverted and a missing header counts as empty. */
  invert: boolean;
}

/** One HTTPMatchRequest of a route (a route without `match` has one entry matching all). */
export interface MatchEntry {
  route: number;
  uri?: UriMatch;
  method?: StringMatch;
  authority?: StringMatch;
  scheme?: StringMatch;
  conditions: Condition[];
}

export interface VirtualHostTable {
  name: string;
  /** Lower-case domains; "*.example.com" is a wildcard, anything else exact (may carry ":port"). */
  domains: string[];
  /** This host's entries are entries[entryStart .. entryStart + entryCount), in match order. */
  entryStart: number;
  entryCount: number;
}

export interface WeightedDestination {
  /** Index into clusters, or -1 when the destination names a cluster that does not exist (503 NC). */
  cluster: number;
  weight: number;
}

/** Where a consistent-hash key comes from; header and cookie names must be in headerNames ("cookie" for a cookie). */
export type TableHashKey = { source: "header" | "cookie" | "query"; name: string } | { source: "sourceIp" };

export type TableLoadBalancer =
  | { kind: "leastRequest" | "roundRobin" | "random" }
  | { kind: "ringHash"; key: TableHashKey; minimumRingSize: number }
  | { kind: "maglev"; key: TableHashKey; tableSize: number };

export interface TableCluster {
  endpointCount: number;
  passthrough: boolean;
  /** LEAST_REQUEST when unset (Istio's default). */
  loadBalancer?: TableLoadBalancer;
  /** "address:port" per endpoint: what ring and maglev tables hash (consistent-hash clusters). */
  endpointNames?: string[];
  /** Per endpoint, when the weights differ (hash-tables.ts endpointWeights); absent: all weigh the same. */
  endpointWeights?: number[];
}

export interface RouteTable {
  virtualHosts: VirtualHostTable[];
  entries: MatchEntry[];
  routes: { destinations: WeightedDestination[] }[];
  /** Endpoints of cluster i are the global endpoints [start_i, start_i + endpointCount). */
  clusters: TableCluster[];
  /** Header names referenced by conditions; name i is written to request slot SLOT_FIRST_HEADER + i. */
  headerNames: string[];
  /** Patterns the host runs through the core after routing (regex rewrites, CORS origins), by index. */
  hostRegexes?: { pattern: string; mode: RegexMode }[];
}

/** ASCII-only lower-casing, the same as the core's (String.toLowerCase also folds non-ASCII). */
export function lowerAscii(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

export function clusterEndpointStarts(table: RouteTable): number[] {
  const starts: number[] = [];
  let next = 0;
  for (const c of table.clusters) {
    starts.push(next);
    next += c.endpointCount;
  }
  starts.push(next);
  return starts;
}

/** A cluster of the route table: what its load balancer reads of its endpoints (names to hash, weights when they differ). */
export function tableCluster(endpoints: readonly { address: string; port: number; weight?: number }[], passthrough: boolean, loadBalancer: TableLoadBalancer): TableCluster {
  const hashes = loadBalancer.kind === "ringHash" || loadBalancer.kind === "maglev";
  return {
    endpointCount: endpoints.length,
    passthrough,
    loadBalancer,
    endpointNames: hashes ? endpoints.map((ep) => hashName(ep.address, ep.port)) : undefined,
    endpointWeights: endpointWeights(endpoints),
  };
}
