// One Snapshot per config version: the compiled config, the Wasm route core it
// serves with and its clusters, bound to that core. Requests keep the Snapshot
// they started with. A config update is applied at the granularity it has, as
// Envoy applies RDS, CDS and EDS:
//   - routes changed (or a cluster's place in the route image): a new core,
//     and the cluster manager's clusters, old and new, attach to it;
//   - only cluster settings or endpoints changed: the serving core stays; the
//     clusters are reconfigured, or their endpoint ranges rewritten, in place.
// Either way cluster state (breakers, ejections, health, in-flight counts)
// stays with the clusters and endpoints that remain.

import type { CompiledConfig } from "../config/compile.js";
import { updateDigests } from "../config/update-digests.js";
import { RouteCore } from "../core/route-core.js";
import type { EndpointSlots, ManagedCluster } from "../cluster/cluster.js";
import { ClusterManager, type ClusterBinding } from "../cluster/cluster-manager.js";
import type { SharedBreakerTable } from "../cluster/shared-breakers.js";
import type { SnapshotStats } from "../telemetry/snapshot-stats.js";
import { Authorizer } from "../security/authorization.js";
import type { PluginRegistry, WasmPlugin } from "../proxy-wasm/plugin.js";

/** How a snapshot came from the one before it. */
export type UpdateKind = "initial" | "routes" | "clusters" | "endpoints" | "unchanged";

export class Snapshot {
  readonly headerNames: readonly string[];
  /** Per cluster of the config (by index): breaker, pools, outlier detector, endpoints. */
  readonly clusters: readonly ManagedCluster[];
  /** Global endpoint index (the core's decision) → endpoint. */
  readonly endpoints: EndpointSlots;
  readonly createdAt = new Date();
  /** This version's AuthorizationPolicies for inbound requests. */
  readonly authorizer: Authorizer;
  /** This version's Proxy-Wasm plugins, in istiod's order (the running ones are kept across versions). */
  readonly wasmPlugins: readonly WasmPlugin[];

  constructor(
    readonly version: number,
    readonly config: CompiledConfig,
    readonly core: RouteCore,
    binding: ClusterBinding,
    /** The metric children this version's requests record into. */
    readonly stats: SnapshotStats,
    readonly update: UpdateKind,
    /** Which clusters (by index) an in-place update touched. */
    readonly touched: readonly number[] = [],
    wasmPlugins: readonly WasmPlugin[] = [],
  ) {
    this.wasmPlugins = wasmPlugins;
    this.headerNames = config.table.headerNames;
    this.clusters = binding.clusters;
    this.endpoints = binding.slots;
    this.authorizer = new Authorizer(config.inboundSecurity.authorization);
  }
}

/** The current snapshot, swapped atomically by config updates. */
export class SnapshotHolder {
  private nextVersion = 1;
  /** The clusters (and their pools), kept across snapshots. */
  readonly clusters: ClusterManager;
  private binding: ClusterBinding;
  current: Snapshot;

  /** `statsFor` binds each new version's metric children before it serves (Telemetry.statsFor). */
  constructor(
    config: CompiledConfig,
    private readonly statsFor: (config: CompiledConfig) => SnapshotStats,
    /** Runs the configs' WasmPlugins (their modules prepared beforehand: plugin.ts prepareModules); none without. */
    private readonly plugins?: PluginRegistry,
    /** Circuit-breaker counts shared with the other serving threads (concurrency above 1). */
    breakers?: SharedBreakerTable,
  ) {
    this.clusters = new ClusterManager(breakers);
    const core = this.newCore(config);
    this.binding = this.clusters.attach(config, core);
    this.current = new Snapshot(this.nextVersion++, config, core, this.binding, statsFor(config), "initial", [], this.bindPlugins(config));
  }

  private bindPlugins(config: CompiledConfig): WasmPlugin[] {
    if (config.wasmPlugins.length === 0) {
      this.plugins?.bind([]);
      return [];
    }
    if (!this.plugins) throw new Error("this proxy cannot run WasmPlugins (no plugin registry)");
    return this.plugins.bind(config.wasmPlugins);
  }

  get pools(): ClusterManager["pools"] {
    return this.clusters.pools;
  }

  /** Installs `config` at the granularity of its change; the old snapshot serves until this returns. */
  swap(config: CompiledConfig): Snapshot {
    const previous = this.current;
    // First: a plugin that cannot be bound rejects the update before any cluster changed.
    const plugins = this.bindPlugins(config);
    // Compiled with digests (the default); computed here only for a config compiled without.
    const before = previous.config.digests ?? updateDigests(previous.config);
    const after = config.digests ?? updateDigests(config);
    let next: Snapshot;
    if (before.routes !== after.routes) {
      const core = this.newCore(config);
      this.binding = this.clusters.attach(config, core);
      next = new Snapshot(this.nextVersion++, config, core, this.binding, this.statsFor(config), "routes", [], plugins);
    } else {
      // Same route table: the serving core stays, with its image. Only clusters change.
      config.image = undefined;
      const reconfigured: number[] = [];
      const moved: number[] = [];
      config.clusters.forEach((info, i) => {
        if (before.clusters[i] !== after.clusters[i]) {
          this.clusters.reconfigure(this.binding, i, info);
          reconfigured.push(i);
        }
        if (before.endpoints[i] !== after.endpoints[i]) {
          this.clusters.updateEndpoints(this.binding, i, info.endpoints);
          moved.push(i);
        }
      });
      const kind: UpdateKind = reconfigured.length > 0 ? "clusters" : moved.length > 0 ? "endpoints" : "unchanged";
      next = new Snapshot(this.nextVersion++, config, previous.core, this.binding, this.statsFor(config), kind, [...new Set([...reconfigured, ...moved])], plugins);
    }
    this.current = next;
    return next;
  }

  private newCore(config: CompiledConfig): RouteCore {
    const core = new RouteCore(config.table, config.image);
    config.image = undefined; // copied into the core's memory; not kept twice
    return core;
  }

  async close(): Promise<void> {
    this.plugins?.dispose();
    await this.clusters.close();
  }
}
