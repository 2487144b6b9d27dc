// What a snapshot keeps per cluster at run time: its connection pool, circuit
// breaker, outlier detector and health checker, and which endpoints the load
// balancers may therefore pick.

import type { H1Upstream } from "../proxy/h1-upstream.js";
import type { ClusterInfo } from "../config/compile.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { HealthChecker } from "./health-check.js";
import { OutlierDetector } from "./outlier-detection.js";
import type { H2Upstream } from "../proxy/h2-upstream.js";
import type { PoolRegistry } from "./pools.js";

/** Envoy's healthy_panic_threshold when nothing sets it (Istio sets it from outlierDetection.minHealthPercent). */
const ENVOY_PANIC_PERCENT = 50;

export class ClusterRuntime {
  /** HTTP/1.1 connections, or HTTP/2 sessions for HTTP2/GRPC ports; the same handler callbacks either way. */
  readonly dispatcher: H1Upstream | H2Upstream;
  readonly breaker: CircuitBreaker;
  /** Absent unless the DestinationRule sets outlierDetection (Istio configures none otherwise). */
  readonly outlier: OutlierDetector | undefined;
  /** Absent unless the settings' healthChecks name this cluster's host. */
  readonly health: HealthChecker | undefined;
  private readonly panicPercent: number;
  /** Every pool this cluster sends through (requests, health checks): kept across reloads while in use. */
  readonly pools: readonly (H1Upstream | H2Upstream)[];

  constructor(
    private readonly cluster: ClusterInfo,
    origins: readonly string[],
    pools: PoolRegistry,
    private readonly setEligible: (eligible: boolean[]) => void,
  ) {
    this.dispatcher = cluster.http2 ? pools.http2For(cluster.name, cluster.policy.limits) : pools.for(cluster.name, cluster.policy.limits, cluster.policy.tls);
    this.breaker = new CircuitBreaker(cluster.policy.limits);
    const od = cluster.policy.outlierDetection;
    const n = cluster.endpoints.length;
    this.outlier = od && n > 0 ? new OutlierDetector(od, n, () => this.updateEligibility()) : undefined;
    // Checks are HTTP/1.1 (an HTTP/2 cluster's checks get a plain HTTP/1.1 pool with its limits).
    const checkVia = cluster.http2 ? pools.for(cluster.name, cluster.policy.limits) : (this.dispatcher as H1Upstream);
    this.health = cluster.healthCheck && n > 0 ? new HealthChecker(cluster.healthCheck, origins, () => this.updateEligibility(), checkVia) : undefined;
    this.pools = this.health && checkVia !== this.dispatcher ? [this.dispatcher, checkVia] : [this.dispatcher];
    this.panicPercent = od ? od.minHealthPercent : ENVOY_PANIC_PERCENT;
  }

  /** Healthy: passing health checks (when checked) and not ejected. */
  isHealthy(endpoint: number): boolean {
    return (this.health?.isHealthy(endpoint) ?? true) && !(this.outlier?.isEjected(endpoint) ?? false);
  }

  get healthyCount(): number {
    let n = 0;
    for (let i = 0; i < this.cluster.endpoints.length; i++) if (this.isHealthy(i)) n++;
    return n;
  }

  /** The load balancers pick healthy endpoints; below the panic threshold, any endpoint (Envoy's panic mode). */
  private updateEligibility(): void {
    const n = this.cluster.endpoints.length;
    const healthy = Array.from({ length: n }, (_, i) => this.isHealthy(i));
    const panic = n > 0 && (100 * healthy.filter(Boolean).length) / n < this.panicPercent;
    this.setEligible(panic ? healthy.map(() => true) : healthy);
  }

  stop(): void {
    this.outlier?.stop();
    this.health?.stop();
  }
}
