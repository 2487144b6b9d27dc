// One cluster as the cluster manager keeps it across config updates (Envoy's
// cluster): its settings, its endpoints with their outlier and health state, its
// circuit breaker's counts, its connection pools, and its binding to the serving
// route core: which cells of the core's endpoint arrays are its endpoints, and
// which of them the load balancers may pick.

import type { ClusterEndpoint, ClusterInfo } from "../config/compile.js";
import type { RouteCore } from "../core/route-core.js";
import { endpointWeights } from "../core/hash-tables.js";
import type { H1Upstream } from "../upstream/h1-upstream.js";
import type { H2Upstream } from "../upstream/h2-upstream.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import type { SharedBreakerTable } from "./shared-breakers.js";
import { UpstreamEndpoint } from "./endpoint.js";
import { HealthChecker } from "./health-check.js";
import { clearOutlierState, OutlierDetector } from "./outlier-detection.js";
import type { PoolRegistry } from "./pools.js";

/** Envoy's healthy_panic_threshold when nothing sets it (Istio sets it from outlierDetection.minHealthPercent). */
const ENVOY_PANIC_PERCENT = 50;

/** Global endpoint index → endpoint, for the core a snapshot serves with (shared by the snapshots of one core). */
export type EndpointSlots = (UpstreamEndpoint | undefined)[];

export class ManagedCluster {
  info: ClusterInfo;
  /** The endpoints in the order the core numbers them (offset i = global index clusterStart + i). Replaced, never mutated. */
  members: readonly UpstreamEndpoint[] = [];
  readonly breaker: CircuitBreaker;
  /** Absent unless the DestinationRule sets outlierDetection (Istio configures none otherwise). */
  outlier: OutlierDetector | undefined;
  /** Absent unless the settings' healthChecks name this cluster's host. */
  health: HealthChecker | undefined;
  /** HTTP/1.1 connections, or HTTP/2 sessions for HTTP2/GRPC ports; the same handler callbacks either way. */
  dispatcher!: H1Upstream | H2Upstream;
  /** Every pool this cluster sends through (requests, health checks): kept by the registry while in use. */
  pools!: readonly (H1Upstream | H2Upstream)[];
  private checkVia!: H1Upstream;
  private panicPercent = ENVOY_PANIC_PERCENT;
  private byAddress: EndpointsByAddress = new Map();
  private core: RouteCore | undefined;
  private index = -1;
  private slots: EndpointSlots = [];
  private generation = -1;

  constructor(
    info: ClusterInfo,
    private readonly registry: PoolRegistry,
    /** Circuit-breaker counts shared with the other serving threads; a full table leaves this cluster counting on its own. */
    breakers?: SharedBreakerTable,
  ) {
    this.info = info;
    this.breaker = new CircuitBreaker(info.policy.limits, breakers?.countersFor(info.name));
    this.configure(info);
  }

  /**
   * A cluster update (Envoy's CDS): new settings for the same cluster. The breaker keeps its
   * counts under the new limits, outlier detection keeps its ejections, health checks keep
   * each endpoint's health; pools follow the settings (a pool no cluster uses drains).
   */
  configure(info: ClusterInfo, applyEligibility = true): void {
    this.info = info;
    const policy = info.policy;
    this.breaker.setLimits(policy.limits);
    this.dispatcher = info.http2 ? this.registry.http2For(info.name, policy.limits, policy.tls) : this.registry.for(info.name, policy.limits, policy.tls);
    // Checks are HTTP/1.1 (an HTTP/2 cluster's checks get a plain HTTP/1.1 pool with its limits).
    this.checkVia = info.http2 ? this.registry.for(info.name, policy.limits) : (this.dispatcher as H1Upstream);
    const od = policy.outlierDetection;
    if (od && this.outlier) this.outlier.configure(od);
    else if (od) this.outlier = new OutlierDetector(od, () => this.members, () => this.updateEligibility());
    else if (this.outlier) {
      this.outlier.stop();
      this.outlier = undefined;
      for (const m of this.members) clearOutlierState(m);
    }
    const hc = info.healthCheck;
    if (hc && this.health) this.health.configure(hc);
    else if (hc) this.health = new HealthChecker(hc, () => this.members, () => this.updateEligibility(), () => this.checkVia);
    else if (this.health) {
      this.health.stop();
      this.health = undefined;
      for (const m of this.members) m.healthy = true;
    }
    this.pools = this.health && this.checkVia !== this.dispatcher ? [this.dispatcher, this.checkVia] : [this.dispatcher];
    this.panicPercent = od ? od.minHealthPercent : ENVOY_PANIC_PERCENT;
    if (applyEligibility) this.updateEligibility();
  }

  /**
   * An endpoint update (Envoy's EDS): the endpoints that stay keep their state (ejection,
   * health, requests in flight, totals); new ones start fresh; removed ones are let go (their
   * requests in flight finish). On the serving core only this cluster's range is rewritten.
   */
  setEndpoints(endpoints: readonly ClusterEndpoint[]): void {
    const inFlight = this.replaceMembers(endpoints);
    if (this.core) {
      this.core.resizeCluster(this.index, this.members.map((m) => m.hostPort), endpointWeights(this.members));
      this.bindCells(inFlight);
    }
    this.updateEligibility();
  }

  /**
   * Serves through `core`, where this cluster is number `index`, with `endpoints` (a new route
   * table: a route change, or the first config). The core served before is left as it is: its
   * snapshot's requests in flight finish on it.
   */
  attach(core: RouteCore, index: number, slots: EndpointSlots, endpoints: readonly ClusterEndpoint[]): void {
    const inFlight = this.replaceMembers(endpoints);
    // Round robin goes on where it was, as an Envoy cluster's load balancer does across a route update.
    const cursor = this.core?.roundRobinCursor(this.index) ?? 0;
    core.setRoundRobinCursor(index, cursor);
    this.core = core;
    this.index = index;
    this.slots = slots;
    const names = this.members.map((m) => m.hostPort);
    const weights = endpointWeights(this.members);
    // The core was built from this config's table: its ranges already have these endpoints, unless duplicates collapsed.
    if (core.clusterSize(index) !== names.length || !core.hasWeights(index, weights)) core.resizeCluster(index, names, weights);
    this.bindCells(inFlight);
    this.updateEligibility();
  }

  /** The new member list for `endpoints`; returns each member's requests in flight, read before any cell moves. */
  private replaceMembers(endpoints: readonly ClusterEndpoint[]): number[] {
    const tls = this.info.policy.tls !== undefined;
    const byAddress: EndpointsByAddress = new Map();
    const members: UpstreamEndpoint[] = [];
    for (const ep of endpoints) {
      if (find(byAddress, ep, tls)) continue; // the same address twice is one host, as in Envoy
      let m = find(this.byAddress, ep, tls);
      if (m) {
        m.labels = ep.labels;
        m.weight = ep.weight ?? 1;
      } else m = UpstreamEndpoint.from(ep, tls);
      add(byAddress, m);
      members.push(m);
    }
    const inFlight = members.map((m) => m.inFlight);
    for (const m of this.members) if (find(byAddress, m, tls) !== m) m.unbind();
    this.byAddress = byAddress;
    this.members = members;
    return inFlight;
  }

  /** After another cluster's update moved the core's endpoint cells: follow them (counts moved with them). */
  followLayout(): void {
    const core = this.core;
    if (!core || this.generation === core.layoutGeneration) return;
    const start = core.clusterStart(this.index);
    this.members.forEach((m, i) => {
      m.moveCounter(core.active, start + i);
      this.slots[start + i] = m;
    });
    this.generation = core.layoutGeneration;
  }

  private bindCells(inFlight: readonly number[]): void {
    const core = this.core!;
    const start = core.clusterStart(this.index);
    this.members.forEach((m, i) => {
      m.bindCounter(core.active, start + i, inFlight[i]!);
      this.slots[start + i] = m;
    });
    this.generation = core.layoutGeneration;
  }

  /** Healthy: passing health checks (when checked) and not ejected. */
  get healthyCount(): number {
    let n = 0;
    for (const m of this.members) if (isHealthy(m)) n++;
    return n;
  }

  /** Requests in flight to the cluster's endpoints. */
  get inFlight(): number {
    let n = 0;
    for (const m of this.members) n += m.inFlight;
    return n;
  }

  /** The load balancers pick healthy endpoints; below the panic threshold, any endpoint (Envoy's panic mode). */
  private updateEligibility(): void {
    if (!this.core) return;
    const healthy = this.members.map(isHealthy);
    const n = healthy.length;
    const panic = n > 0 && (100 * healthy.filter(Boolean).length) / n < this.panicPercent;
    this.core.setEligible(this.index, panic ? healthy.map(() => true) : healthy);
  }

  /** The cluster left the config: timers stop; its pools drain once the registry lets them go. */
  stop(): void {
    this.outlier?.stop();
    this.health?.stop();
    for (const m of this.members) m.unbind();
    this.core = undefined;
  }
}

/**
 * Endpoints by address (a pod's IP is usually unique in its cluster); the port and scheme tell
 * apart the few that share one. Keyed by the config's own address strings, whose hashes V8 keeps:
 * an "address:port" key built per endpoint cost five times as much on a 1 000-endpoint update.
 */
type EndpointsByAddress = Map<string, UpstreamEndpoint | UpstreamEndpoint[]>;

function find(map: EndpointsByAddress, ep: { address: string; port: number }, tls: boolean): UpstreamEndpoint | undefined {
  const hit = map.get(ep.address);
  if (hit === undefined) return undefined;
  if (!Array.isArray(hit)) return hit.port === ep.port && hit.tls === tls ? hit : undefined;
  return hit.find((m) => m.port === ep.port && m.tls === tls);
}

function add(map: EndpointsByAddress, m: UpstreamEndpoint): void {
  const hit = map.get(m.address);
  if (hit === undefined) map.set(m.address, m);
  else if (Array.isArray(hit)) hit.push(m);
  else map.set(m.address, [hit, m]);
}

function isHealthy(m: UpstreamEndpoint): boolean {
  return m.healthy && !m.ejected;
}
