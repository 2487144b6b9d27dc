// One immutable Snapshot per config version: the compiled config, its Wasm route
// core and the per-endpoint runtime objects. A reload builds a new Snapshot and
// swaps one reference; requests keep the Snapshot they started with.

import { urlHost } from "./authority.js";
import type { ClusterInfo, CompiledConfig } from "../config/compile.js";
import { RouteCore } from "../core/route-core.js";
import { clusterEndpointStarts } from "../core/route-table.js";
import { ClusterRuntime } from "../resilience/cluster-runtime.js";
import { PoolRegistry } from "../resilience/pools.js";
import type { SnapshotStats } from "../telemetry/telemetry.js";

export interface EndpointRuntime {
  /** undici origin, e.g. "http://10.0.0.1:9080". */
  origin: string;
  /** "address:port" as Envoy prints an upstream host. */
  hostPort: string;
  cluster: ClusterInfo;
}

export class Snapshot {
  readonly core: RouteCore;
  readonly endpoints: EndpointRuntime[];
  /** Global index of each cluster's first endpoint (the core numbers endpoints globally). */
  readonly clusterEndpointStart: readonly number[];
  readonly headerNames: readonly string[];
  /** Per cluster: connection pool, circuit breaker, outlier detector. */
  readonly clusters: ClusterRuntime[];
  readonly createdAt = new Date();
  /** Metric children bound for this snapshot (set by Telemetry.bind before it serves). */
  stats: SnapshotStats | undefined;

  constructor(
    readonly version: number,
    readonly config: CompiledConfig,
    pools: PoolRegistry,
  ) {
    this.core = new RouteCore(config.table, config.image);
    config.image = undefined; // copied into the core's memory; not kept twice

    this.headerNames = config.table.headerNames;
    this.clusterEndpointStart = clusterEndpointStarts(config.table);
    this.endpoints = config.clusters.flatMap((cluster) =>
      cluster.endpoints.map((ep) => {
        const host = urlHost(ep.address);
        // TLS origination (DestinationRule tls SIMPLE / MUTUAL) makes the pool connect with TLS.
        const scheme = cluster.policy.tls ? "https" : "http";
        return { origin: `${scheme}://${host}:${ep.port}`, hostPort: `${host}:${ep.port}`, cluster };
      }),
    );
    this.clusters = config.clusters.map((c, i) => {
      const origins = this.endpoints.slice(this.clusterEndpointStart[i], this.clusterEndpointStart[i + 1]).map((e) => e.origin);
      return new ClusterRuntime(c, origins, pools, (eligible) => this.core.setEligible(i, eligible));
    });
  }


  /** Stops the snapshot's timers (outlier detection) once a newer one serves; its requests still finish. */
  retire(): void {
    for (const c of this.clusters) c.stop();
  }
}

/** The current snapshot, swapped atomically by reloads. */
export class SnapshotHolder {
  private nextVersion = 1;
  /** Upstream connection pools, shared by snapshots so that a reload keeps connections. */
  readonly pools = new PoolRegistry();

  /** `prepare` runs on every new snapshot before it serves (binding its metric children). */
  constructor(
    config: CompiledConfig,
    private readonly prepare: (s: Snapshot) => void = () => {},
  ) {
    this.current = new Snapshot(this.nextVersion++, config, this.pools);
    prepare(this.current);
  }

  current: Snapshot;

  /** Builds and installs a snapshot for `config`; the old one serves until this returns. */
  swap(config: CompiledConfig): Snapshot {
    const next = new Snapshot(this.nextVersion++, config, this.pools);
    this.prepare(next);
    const previous = this.current;
    this.current = next;
    previous.retire();
    // Pools of clusters the new config dropped (or whose pool settings changed) drain and close.
    this.pools.retainOnly(new Set(next.clusters.flatMap((c) => c.pools)));
    return next;
  }
}
