// What a config update changes, in Envoy's three granularities: the route
// table (everything the route image and the request pipeline read: RDS, and the
// listeners), each cluster's settings (CDS), each cluster's endpoints (EDS).
// Digests are computed where the config is compiled (on the config worker for
// file reloads), so that the serving thread only compares strings.

import { createHash } from "node:crypto";
import type { RouteTable } from "../core/route-table.js";

/** The parts of a CompiledConfig that the digests cover (compile.ts calls this with its result). */
export interface DigestedConfig {
  table: RouteTable;
  clusters: readonly { name: string; endpoints: unknown }[];
  destinations: unknown;
  routes: unknown;
  entries: unknown;
  virtualHosts: unknown;
  tcpListeners: unknown;
  gatewayListeners: unknown;
  boundHttpListeners: unknown;
  gateway: unknown;
  settings: unknown;
}

export interface UpdateDigests {
  /** Routes, virtual hosts, listeners, settings, and the clusters' names and load balancers (the route image holds them). */
  routes: string;
  /** Per cluster (in the config's order): its settings without its endpoints. */
  clusters: string[];
  /** Per cluster: its endpoints. */
  endpoints: string[];
}

export function updateDigests(config: DigestedConfig): UpdateDigests {
  const table = { ...config.table, clusters: config.table.clusters.map((c) => ({ passthrough: c.passthrough, loadBalancer: c.loadBalancer })) };
  const routes = digest({
    table,
    clusterNames: config.clusters.map((c) => c.name),
    destinations: config.destinations,
    routes: config.routes,
    entries: config.entries,
    virtualHosts: config.virtualHosts,
    tcpListeners: config.tcpListeners,
    gatewayListeners: config.gatewayListeners,
    boundHttpListeners: config.boundHttpListeners,
    gateway: config.gateway,
    settings: config.settings,
  });
  return {
    routes,
    clusters: config.clusters.map((c) => digest({ ...c, endpoints: undefined })),
    endpoints: config.clusters.map((c) => endpointsDigest(c.endpoints)),
  };
}

/** One cluster's endpoints digest (UpdateDigests.endpoints[i]), for an update that patches endpoints only. */
export function endpointsDigest(endpoints: unknown): string {
  return digest(endpoints);
}

function digest(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value, withoutLocations)).digest("base64");
}

/**
 * Where a resource was defined (file:line, for diagnostics) is no part of what it does: an edit
 * that only moves a VirtualService down a file (more endpoints above it) is no route change.
 */
function withoutLocations(key: string, value: unknown): unknown {
  return key === "source" && typeof value === "object" && value !== null && "line" in value ? undefined : value;
}
