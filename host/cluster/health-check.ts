// Active HTTP health checks (instio settings healthChecks; Istio leaves this to
// Kubernetes probes): every interval each endpoint gets GET <path>; a 200
// passes, anything else or no answer within the timeout fails, as Envoy's
// HTTP health checker with its default expected status. unhealthyThreshold
// failures in a row make an endpoint unhealthy, healthyThreshold passes bring
// it back. Endpoints start healthy. Checks go through the cluster's HTTP/1.1
// pool, with its TLS settings and connection limits.

import type { Dispatcher } from "undici";
import type { HealthCheckSettings } from "../config/model.js";
import type { H1Upstream } from "../upstream/h1-upstream.js";
import type { UpstreamEndpoint } from "./endpoint.js";

export class HealthChecker {
  private timer: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private settings: HealthCheckSettings,
    /** The cluster's current endpoints (the array is replaced on an endpoint update, so read through this). */
    private readonly members: () => readonly UpstreamEndpoint[],
    private readonly changed: () => void,
    /** An HTTP/1.1 client with the cluster's connection and TLS settings (it may change with them). */
    private readonly client: () => H1Upstream,
  ) {
    this.timer = this.startTimer();
  }

  /** A cluster update changed the check's settings: the endpoints' health stays, the new settings apply. */
  configure(settings: HealthCheckSettings): void {
    const interval = settings.intervalMs !== this.settings.intervalMs;
    this.settings = settings;
    if (interval) {
      clearInterval(this.timer);
      this.timer = this.startTimer();
    }
  }

  private startTimer(): NodeJS.Timeout {
    const t = setInterval(() => this.checkAll(), this.settings.intervalMs);
    t.unref();
    return t;
  }

  get unhealthyCount(): number {
    let n = 0;
    for (const m of this.members()) if (!m.healthy) n++;
    return n;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private checkAll(): void {
    for (const ep of this.members()) {
      if (ep.checking) continue;
      ep.checking = true;
      void this.check(ep.origin).then((passed) => {
        ep.checking = false;
        this.record(ep, passed);
      });
    }
  }

  private check(origin: string): Promise<boolean> {
    return new Promise((resolve) => {
      const probe = new Probe(resolve, this.settings.timeoutMs);
      try {
        this.client().dispatch({ origin, method: "GET", path: this.settings.path, headers: ["host", new URL(origin).host, "user-agent", "instio-health-check"] }, probe);
      } catch {
        probe.settle(false);
      }
    });
  }

  private record(ep: UpstreamEndpoint, passed: boolean): void {
    if (this.stopped || passed === ep.healthy) {
      ep.healthStreak = 0;
      return;
    }
    const needed = passed ? this.settings.healthyThreshold : this.settings.unhealthyThreshold;
    if (++ep.healthStreak < needed) return;
    ep.healthy = passed;
    ep.healthStreak = 0;
    if (this.members().includes(ep)) this.changed();
  }
}

/** One check's handler: passes on a 200 that completes within the timeout; the body is discarded. */
class Probe implements Dispatcher.DispatchHandler {
  private status = 0;
  private done = false;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly resolve: (passed: boolean) => void,
    timeoutMs: number,
  ) {
    this.timer = setTimeout(() => {
      this.controller?.abort(new Error("health check timeout"));
      this.settle(false);
    }, timeoutMs);
  }

  settle(passed: boolean): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.resolve(passed);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }
  onResponseStart(_c: Dispatcher.DispatchController, status: number): void {
    this.status = status;
  }
  onResponseData(): void {}
  onResponseEnd(): void {
    this.settle(this.status === 200);
  }
  onResponseError(): void {
    this.settle(false);
  }
}
