// Phase 4's entry, after the filters (Envoy's router): a passthrough cluster
// goes to the requested address; any other to the endpoint the core picked
// (or, for a consistent-hash cookie the request lacks, to the endpoint of a
// cookie generated here); then the route's mirrors get their copies.

import { randomBytes } from "node:crypto";
import * as L from "../../assembly/layout.js";
import type { ClusterInfo } from "../config/compile.js";
import type { Exchange } from "./exchange.js";
import { mirror } from "./mirror.js";
import { forwardPassthrough } from "./passthrough.js";
import { random32 } from "./random.js";

export function toUpstream(ex: Exchange): void {
  const snapshot = ex.snapshot;
  const cluster = snapshot.config.clusters[ex.cluster]!; // its name is the exchange's since routing
  if (cluster.passthrough) forwardPassthrough(ex, ex.ds.authority!, cluster.port);
  else ex.forward(snapshot.core.hashCookieMissing ? withGeneratedCookie(ex, cluster) : snapshot.core.endpoint, "");
  for (const m of ex.route.mirrors) if (Math.random() * 100 < m.percent) mirror(ex, m.cluster);
}

/**
 * consistentHash.httpCookie with a ttl and no such cookie on the request: as
 * Envoy, a cookie is generated, the endpoint is picked by its hash, and the
 * response sets it so that the client's next requests stick. Without a ttl the
 * request keeps its random pick. Returns the endpoint to use.
 */
function withGeneratedCookie(ex: Exchange, cluster: ClusterInfo): number {
  const lb = cluster.policy.loadBalancer;
  const snapshot = ex.snapshot;
  const core = snapshot.core;
  if ((lb.kind !== "RING_HASH" && lb.kind !== "MAGLEV") || lb.key.kind !== "cookie" || lb.key.ttlMs === undefined) return core.endpoint;
  const { name, path, ttlMs } = lb.key;
  const value = randomBytes(8).toString("hex");
  const existing = ex.ds.header("cookie");
  if (!core.set(L.SLOT_FIRST_HEADER + snapshot.headerNames.indexOf("cookie"), existing ? `${existing}; ${name}=${value}` : `${name}=${value}`)) return core.endpoint;
  const endpoint = core.pickEndpoint(ex.cluster, random32());
  if (endpoint < 0) return core.endpoint;
  ex.setCookie = `${name}="${value}"${ttlMs > 0 ? `; Max-Age=${Math.floor(ttlMs / 1000)}` : ""}${path ? `; Path=${path}` : ""}; HttpOnly`;
  return endpoint;
}
