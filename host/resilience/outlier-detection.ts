// Envoy's outlier detection as Istio configures it from a DestinationRule:
// consecutive 5xx, consecutive gateway errors (502/503/504) and, with
// splitExternalLocalOriginErrors, consecutive local-origin failures (connect
// failures, resets, timeouts) eject an endpoint for baseEjectionTime x the
// times it has been ejected (capped at 300 s or the base, as Envoy), checked
// every interval. At most maxEjectionPercent of the endpoints are ejected, but
// always at least one may be. (Panic below minHealthPercent: ClusterRuntime.)

import type { OutlierDetectionModel } from "../config/traffic-policy.js";

/** Envoy's default max_ejection_time. */
const MAX_EJECTION_MS = 300_000;

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  ejected: boolean;
  ejectedAt: number;
  /** Times ejected; multiplies the ejection time, and decays while the endpoint stays healthy. */
  ejections: number;
  failedSinceTick: boolean;
}

export class OutlierDetector {
  private readonly hosts: HostState[];
  ejectedCount = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly policy: Required<OutlierDetectionModel>,
    endpointCount: number,
    /** Told whenever an endpoint is ejected or comes back. */
    private readonly changed: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.hosts = Array.from({ length: endpointCount }, () => ({ consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, ejected: false, ejectedAt: 0, ejections: 0, failedSinceTick: false }));
    this.timer = setInterval(() => this.tick(), policy.intervalMs);
    this.timer.unref();
  }

  /** The upstream answered `host` (offset in the cluster) with `status`. */
  reportStatus(host: number, status: number): void {
    const h = this.hosts[host];
    if (!h) return;
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
      this.eject(host);
    }
  }

  /** A connect failure, reset or timeout on `host` before any response. */
  reportLocalFailure(host: number): void {
    const h = this.hosts[host];
    if (!h) return;
    if (!this.policy.splitExternalLocalOriginErrors) {
      this.reportStatus(host, 503); // unsplit, Envoy counts local failures as gateway errors
      return;
    }
    h.failedSinceTick = true;
    h.consecutiveLocal++;
    if (this.policy.consecutiveLocalOriginFailures > 0 && h.consecutiveLocal >= this.policy.consecutiveLocalOriginFailures) this.eject(host);
  }

  isEjected(host: number): boolean {
    return this.hosts[host]?.ejected ?? false;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private eject(host: number): void {
    const h = this.hosts[host]!;
    if (h.ejected) return;
    const total = this.hosts.length;
    if (this.ejectedCount > 0 && (this.ejectedCount + 1) * 100 > this.policy.maxEjectionPercent * total) return;
    h.ejected = true;
    h.ejectedAt = this.now();
    h.ejections++;
    h.consecutive5xx = h.consecutiveGateway = h.consecutiveLocal = 0;
    this.ejectedCount++;
    this.changed();
  }

  /** Every interval: endpoints whose ejection time has passed come back. */
  tick(): void {
    const now = this.now();
    let changed = false;
    for (const h of this.hosts) {
      if (h.ejected) {
        const duration = Math.min(this.policy.baseEjectionTimeMs * h.ejections, Math.max(MAX_EJECTION_MS, this.policy.baseEjectionTimeMs));
        if (now - h.ejectedAt >= duration) {
          h.ejected = false;
          this.ejectedCount--;
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
