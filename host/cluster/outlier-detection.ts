// Envoy's outlier detection as Istio configures it from a DestinationRule:
// consecutive 5xx, consecutive gateway errors (502/503/504) and, with
// splitExternalLocalOriginErrors, consecutive local-origin failures (connect
// failures, resets, timeouts) eject an endpoint for baseEjectionTime x the
// times it has been ejected (capped at 300 s or the base, as Envoy), checked
// every interval. At most maxEjectionPercent of the endpoints are ejected, but
// always at least one may be. (Panic below minHealthPercent: ManagedCluster.)
// The per-endpoint state lives on the endpoints, so it survives config updates.

import type { OutlierDetectionModel } from "../config/traffic-policy.js";
import type { UpstreamEndpoint } from "./endpoint.js";

/** Envoy's default max_ejection_time. */
const MAX_EJECTION_MS = 300_000;

export class OutlierDetector {
  private timer: NodeJS.Timeout;

  constructor(
    private policy: Required<OutlierDetectionModel>,
    /** The cluster's current endpoints (the array is replaced on an endpoint update, so read through this). */
    private readonly members: () => readonly UpstreamEndpoint[],
    /** Told whenever an endpoint is ejected or comes back. */
    private readonly changed: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = this.startTimer();
  }

  /** A cluster update changed the DestinationRule's outlierDetection: ejections stay, the new thresholds apply. */
  configure(policy: Required<OutlierDetectionModel>): void {
    const interval = policy.intervalMs !== this.policy.intervalMs;
    this.policy = policy;
    if (interval) {
      clearInterval(this.timer);
      this.timer = this.startTimer();
    }
  }

  private startTimer(): NodeJS.Timeout {
    const t = setInterval(() => this.tick(), this.policy.intervalMs);
    t.unref();
    return t;
  }

  get ejectedCount(): number {
    let n = 0;
    for (const m of this.members()) if (m.ejected) n++;
    return n;
  }

  /** The upstream answered `h` with `status`. */
  reportStatus(h: UpstreamEndpoint, status: number): void {
    if (this.policy.splitExternalLocalOriginErrors) h.consecutiveLocal = 0; // the connection worked
    if (status < 500) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    h.failedSinceTick = true;
    h.consecutive5xx++;
    if (status >= 502 && status <= 504) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    const p = this.policy;
    if ((p.consecutive5xxErrors > 0 && h.consecutive5xx >= p.consecutive5xxErrors) || (p.consecutiveGatewayErrors > 0 && h.consecutiveGateway >= p.consecutiveGatewayErrors)) {
      this.eject(h);
    }
  }

  /** A connect failure, reset or timeout on `h` before any response. */
  reportLocalFailure(h: UpstreamEndpoint): void {
    if (!this.policy.splitExternalLocalOriginErrors) {
      this.reportStatus(h, 503); // unsplit, Envoy counts local failures as gateway errors
      return;
    }
    h.failedSinceTick = true;
    h.consecutiveLocal++;
    if (this.policy.consecutiveLocalOriginFailures > 0 && h.consecutiveLocal >= this.policy.consecutiveLocalOriginFailures) this.eject(h);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private eject(h: UpstreamEndpoint): void {
    if (h.ejected) return;
    const members = this.members();
    if (!members.includes(h)) return; // removed from the cluster while its request was in flight
    const ejected = this.ejectedCount;
    if (ejected > 0 && (ejected + 1) * 100 > this.policy.maxEjectionPercent * members.length) return;
    h.ejected = true;
    h.ejectedAt = this.now();
    h.ejections++;
    h.consecutive5xx = h.consecutiveGateway = h.consecutiveLocal = 0;
    this.changed();
  }

  /** Every interval: endpoints whose ejection time has passed come back. */
  tick(): void {
    const now = this.now();
    let changed = false;
    for (const h of this.members()) {
      if (h.ejected) {
        const duration = Math.min(this.policy.baseEjectionTimeMs * h.ejections, Math.max(MAX_EJECTION_MS, this.policy.baseEjectionTimeMs));
        if (now - h.ejectedAt >= duration) {
          h.ejected = false;
          changed = true;
        }
      } else if (h.ejections > 0 && !h.failedSinceTick) {
        h.ejections--;
      }
      h.failedSinceTick = false;
    }
    if (changed) this.changed();
  }
}

/** Outlier detection removed from a cluster: its endpoints are no longer ejected and start counting afresh. */
export function clearOutlierState(h: UpstreamEndpoint): void {
  h.consecutive5xx = h.consecutiveGateway = h.consecutiveLocal = 0;
  h.ejected = false;
  h.ejectedAt = 0;
  h.ejections = 0;
  h.failedSinceTick = false;
}
