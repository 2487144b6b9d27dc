// One upstream endpoint as the cluster manager keeps it: its address, its
// outlier-detection and health-check state, and where the serving route core
// counts its requests in flight. The object lives as long as the endpoint stays
// in its cluster, across route, cluster and endpoint updates (as an Envoy host
// does), so an ejected endpoint stays ejected and an unhealthy one unhealthy.
// Requests hold the object, not an index: an update that moves or removes the
// endpoint cannot make a request in flight release the wrong counter.

import type { ClusterEndpoint } from "../config/compile.js";
import { hashName } from "../core/hash-tables.js";

/** Bound to nothing: writes go to a scratch cell nobody reads. */
const UNBOUND = new Int32Array(1);

export class UpstreamEndpoint {
  /** "address:port", as Envoy prints an upstream host (hashName()): what ring hash and maglev hash for it. */
  readonly hostPort: string;
  /** The pool's origin, "http://10.0.0.1:9080" (https when the cluster originates TLS). */
  readonly origin: string;
  labels: Record<string, string>;
  /** Envoy's load_balancing_weight (1 unless the config gives one); an endpoint update may change it. */
  weight: number;
  /** Upstream attempts sent here (admin /clusters rq_total), kept across updates. */
  requests = 0;

  // Outlier detection (OutlierDetector reads and writes these).
  consecutive5xx = 0;
  consecutiveGateway = 0;
  consecutiveLocal = 0;
  ejected = false;
  ejectedAt = 0;
  /** Times ejected: multiplies the ejection time, and decays while the endpoint stays healthy. */
  ejections = 0;
  failedSinceTick = false;

  // Active health checking (HealthChecker): endpoints start healthy, as in Envoy with no prior state.
  healthy = true;
  /** Check results in a row that disagree with `healthy`. */
  healthStreak = 0;
  /** A check is running (a slow endpoint is not checked again meanwhile). */
  checking = false;

  /** The serving core's in-flight counters and this endpoint's cell in them. */
  private counters: Int32Array = UNBOUND;
  private slot = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    labels: Record<string, string>,
    weight: number,
    /** The cluster originates TLS to it (an https origin): with the address and port, what identifies it across updates. */
    readonly tls: boolean,
  ) {
    this.hostPort = hashName(address, port);
    this.origin = `${tls ? "https" : "http"}://${this.hostPort}`;
    this.labels = labels;
    this.weight = weight;
  }

  static from(ep: ClusterEndpoint, tls: boolean): UpstreamEndpoint {
    return new UpstreamEndpoint(ep.address, ep.port, ep.labels, ep.weight ?? 1, tls);
  }

  // HOT PATH — change with care: once per upstream attempt.
  acquire(): void {
    this.counters[this.slot]!++;
  }
  release(): void {
    this.counters[this.slot]!--;
  }

  /** Requests in flight to this endpoint. */
  get inFlight(): number {
    return this.counters === UNBOUND ? 0 : this.counters[this.slot]!;
  }

  /** Counts in `counters[slot]` from now on, carrying `inFlight` there (the core's LEAST_REQUEST reads it). */
  bindCounter(counters: Int32Array, slot: number, inFlight: number): void {
    this.counters = counters;
    this.slot = slot;
    counters[slot] = inFlight;
  }

  /** The core moved this endpoint's cell (its count moved with it). */
  moveCounter(counters: Int32Array, slot: number): void {
    this.counters = counters;
    this.slot = slot;
  }

  /** Removed from its cluster: requests still in flight finish without counting anywhere. */
  unbind(): void {
    this.counters = UNBOUND;
    this.slot = 0;
  }
}
