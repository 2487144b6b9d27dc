// Active HTTP health checks (instio settings healthChecks; Istio leaves this to
// Kubernetes probes): every interval each endpoint gets GET <path>; a 200
// passes, anything else or no answer within the timeout fails, as Envoy's
// HTTP health checker with its default expected status. unhealthyThreshold
// failures in a row make an endpoint unhealthy, healthyThreshold passes bring
// it back. Endpoints start healthy. Checks go through the cluster's HTTP/1.1
// pool, with its TLS settings and connection limits.

import type { Dispatcher } from "undici";
import type { HealthCheckSettings } from "../config/model.js";
import type { H1Upstream } from "../proxy/h1-upstream.js";

export class HealthChecker {
  private readonly healthy: boolean[];
  /** Results in a row that disagree with the current state. */
  private readonly streak: number[];
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  /** A check still running is not started again (a slow endpoint is not flooded). */
  private readonly inFlight: boolean[];

  constructor(
    private readonly settings: HealthCheckSettings,
    /** Origins ("http://10.0.0.1:9080"), one per endpoint of the cluster. */
    private readonly origins: readonly string[],
    private readonly changed: () => void,
    /** An HTTP/1.1 client with the cluster's connection and TLS settings. */
    private readonly client: H1Upstream,
  ) {
    this.healthy = origins.map(() => true);
    this.streak = origins.map(() => 0);
    this.inFlight = origins.map(() => false);
    this.timer = setInterval(() => this.checkAll(), settings.intervalMs);
    this.timer.unref();
  }

  isHealthy(endpoint: number): boolean {
    return this.healthy[endpoint] ?? true;
  }

  get unhealthyCount(): number {
    return this.healthy.filter((h) => !h).length;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private checkAll(): void {
    this.origins.forEach((origin, i) => {
      if (this.inFlight[i]) return;
      this.inFlight[i] = true;
      void this.check(origin).then((passed) => {
        this.inFlight[i] = false;
        this.record(i, passed);
      });
    });
  }

  private check(origin: string): Promise<boolean> {
    return new Promise((resolve) => {
      const probe = new Probe(resolve, this.settings.timeoutMs);
      try {
        this.client.dispatch({ origin, method: "GET", path: this.settings.path, headers: ["host", new URL(origin).host, "user-agent", "instio-health-check"] }, probe);
      } catch {
        probe.settle(false);
      }
    });
  }

  private record(endpoint: number, passed: boolean): void {
    if (this.stopped || passed === this.healthy[endpoint]) {
      this.streak[endpoint] = 0;
      return;
    }
    const needed = passed ? this.settings.healthyThreshold : this.settings.unhealthyThreshold;
    if (++this.streak[endpoint]! < needed) return;
    this.healthy[endpoint] = passed;
    this.streak[endpoint] = 0;
    this.changed();
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
