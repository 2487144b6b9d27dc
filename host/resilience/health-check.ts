// Active HTTP health checks (instio settings healthChecks; Istio leaves this to
// Kubernetes probes): every interval each endpoint gets GET <path>; a 200
// passes, anything else or no answer within the timeout fails, as Envoy's
// HTTP health checker with its default expected status. unhealthyThreshold
// failures in a row make an endpoint unhealthy, healthyThreshold passes bring
// it back. Endpoints start healthy. Checks use their own connections.

import { request, type Dispatcher } from "undici";
import type { HealthCheckSettings } from "../config/model.js";

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
    /** undici origins ("http://10.0.0.1:9080"), one per endpoint of the cluster. */
    private readonly origins: readonly string[],
    private readonly changed: () => void,
    /** The cluster's pool, so that checks use its TLS settings (undefined: a plain connection). */
    private readonly dispatcher?: Dispatcher,
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

  private async check(origin: string): Promise<boolean> {
    try {
      const res = await request(`${origin}${this.settings.path}`, { method: "GET", headers: { "user-agent": "instio-health-check" }, signal: AbortSignal.timeout(this.settings.timeoutMs), ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}) });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
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
