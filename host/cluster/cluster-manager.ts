// Envoy's cluster manager: the clusters, keyed by name, outlive config
// versions. A new route table (a route change, or a cluster change the route
// image depends on) attaches the same cluster objects to its new core; a
// cluster change reconfigures them in place; an endpoint change rewrites one
// cluster's endpoint range in the serving core. What stays keeps its state
// (breaker counts, ejections, health, in-flight counts, the round-robin
// position; ring and maglev tables are rebuilt from the same endpoints, so they
// hash as before); what the config dropped stops and its pools drain.

import type { ClusterEndpoint, ClusterInfo, CompiledConfig } from "../config/compile.js";
import type { RouteCore } from "../core/route-core.js";
import { ManagedCluster, type EndpointSlots } from "./cluster.js";
import type { SharedBreakerTable } from "./shared-breakers.js";
import { PoolRegistry } from "./pools.js";

/** A config's clusters bound to one core, in the config's order. */
export interface ClusterBinding {
  clusters: ManagedCluster[];
  /** Global endpoint index in the core → endpoint. */
  slots: EndpointSlots;
}

export class ClusterManager {
  private readonly byName = new Map<string, ManagedCluster>();
  /** Upstream connection pools, shared by every cluster and kept while some cluster uses them. */
  readonly pools = new PoolRegistry();

  /** `breakers`: circuit-breaker counts shared with the other serving threads (concurrency above 1). */
  constructor(private readonly breakers?: SharedBreakerTable) {}

  /** A new core for `config` (its first snapshot, or a route change): every cluster, old or new, serves through it. */
  attach(config: CompiledConfig, core: RouteCore): ClusterBinding {
    const slots: EndpointSlots = [];
    const clusters = config.clusters.map((info) => {
      let c = this.byName.get(info.name);
      // Eligibility is applied when it attaches to the new core, not to the core it leaves.
      if (c) c.configure(info, false);
      else this.byName.set(info.name, (c = new ManagedCluster(info, this.pools, this.breakers)));
      return c;
    });
    clusters.forEach((c, i) => c.attach(core, i, slots, config.clusters[i]!.endpoints));
    for (const c of clusters) c.followLayout();
    this.retainOnly(clusters);
    return { clusters, slots };
  }

  /** A cluster change on the serving core: the cluster's settings, not its place in the route image. */
  reconfigure(binding: ClusterBinding, index: number, info: ClusterInfo): void {
    binding.clusters[index]!.configure(info);
    this.pools.retainOnly(new Set(binding.clusters.flatMap((c) => c.pools)));
  }

  /** An endpoint change on the serving core: one cluster's range is rewritten; no route is compiled again. */
  updateEndpoints(binding: ClusterBinding, index: number, endpoints: readonly ClusterEndpoint[]): void {
    binding.clusters[index]!.setEndpoints(endpoints);
    for (const c of binding.clusters) c.followLayout();
  }

  get(name: string): ManagedCluster | undefined {
    return this.byName.get(name);
  }

  /** Clusters the serving config no longer has stop; their pools drain (requests in flight finish) and close. */
  private retainOnly(serving: readonly ManagedCluster[]): void {
    const keep = new Set(serving);
    for (const [name, c] of this.byName) {
      if (keep.has(c)) continue;
      c.stop();
      this.byName.delete(name);
    }
    this.pools.retainOnly(new Set(serving.flatMap((c) => c.pools)));
  }

  async close(): Promise<void> {
    for (const c of this.byName.values()) c.stop();
    this.byName.clear();
    await this.pools.close();
  }
}
