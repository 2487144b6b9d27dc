// Server state, draining and shutdown, as Envoy and Istio's agent do them.
//
// SIGTERM (Istio's agent sequence): readiness fails at once; the inbound
// listener answers with Connection: close; outbound keeps serving normally so
// the application can finish its own calls; after the drain duration (Istio's
// terminationDrainDuration, 5 s) every listener stops accepting and the
// process exits as soon as no request is in flight, or one more drain duration
// later with whatever is still in flight cut off. With
// exitOnZeroActiveConnections the proxy instead keeps serving after the drain
// duration until nothing is in flight, then exits.

import type { Settings } from "../config/model.js";
import type { Logger } from "../log.js";
import type { Listener } from "../listeners/listener.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";

export type ServerState = "PRE_INITIALIZING" | "LIVE" | "DRAINING";

export interface ManagedListener {
  runtime: ListenerRuntime;
  listener: Listener;
}

const POLL_MS = 50;

export class Lifecycle {
  private initializing = true;
  private terminating = false;
  private healthCheckFailed = false;
  private draining = false;
  /** Why the workload certificate cannot be used (none yet, or expired); readiness fails while set. */
  private certificateProblem: string | undefined;
  readonly startedAt = Date.now();

  constructor(
    private readonly listeners: ManagedListener[],
    private readonly settings: Settings,
    private readonly log: Logger,
    /** Closes everything and ends the process (tests pass their own). */
    private readonly exit: (code: number) => Promise<void>,
  ) {}

  /** Envoy's server state: PRE_INITIALIZING until every listener is up; DRAINING after /healthcheck/fail, /drain or SIGTERM. */
  get state(): ServerState {
    if (this.healthCheckFailed || this.draining || this.terminating) return "DRAINING";
    return this.initializing ? "PRE_INITIALIZING" : "LIVE";
  }

  /** A listener is up; it drains with the others. */
  add(listener: ManagedListener): void {
    this.listeners.push(listener);
  }

  /** A listener that went away (its LDS resource was removed): it no longer drains with the others. */
  remove(listener: Listener): void {
    const i = this.listeners.findIndex((l) => l.listener === listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  /** Every listener is up: readiness may pass. */
  markLive(): void {
    this.initializing = false;
  }

  get ready(): boolean {
    return this.state === "LIVE" && this.certificateProblem === undefined;
  }

  /** The workload certificate is missing or expired (a message), or fine again (undefined). */
  setCertificateProblem(problem: string | undefined): void {
    this.certificateProblem = problem;
  }

  get inFlight(): number {
    return this.listeners.reduce((n, l) => n + l.runtime.inFlight, 0);
  }

  failHealthCheck(failed: boolean): void {
    this.healthCheckFailed = failed;
  }

  /**
   * Envoy's /drain_listeners: graceful answers with Connection: close for the
   * drain duration and then stops accepting; otherwise accepting stops now.
   */
  drainListeners(options: { graceful: boolean; inboundOnly: boolean }): void {
    const targets = this.listeners.filter((l) => !options.inboundOnly || l.runtime.direction === "inbound");
    for (const t of targets) t.runtime.draining = true;
    if (!options.graceful) for (const t of targets) t.listener.stopAccepting();
    else setTimeout(() => targets.forEach((t) => t.listener.stopAccepting()), this.settings.drain.durationMs).unref();
    this.log.info(`drain: ${options.inboundOnly ? "inbound" : "all"} listeners ${options.graceful ? "draining gracefully" : "stopped accepting"}`);
  }

  /** Istio agent /drain (native-sidecar preStop): fail readiness and drain inbound, without exiting. */
  startDrain(): void {
    this.draining = true;
    this.drainListeners({ graceful: true, inboundOnly: true });
  }

  /** The SIGTERM sequence. A second call (another signal) exits at once. */
  async terminate(): Promise<void> {
    if (this.terminating) {
      this.log.warn("shutdown: second signal, exiting now");
      await this.exit(0);
      return;
    }
    this.terminating = true;
    const { durationMs, exitOnZeroActiveConnections } = this.settings.drain;
    this.log.info(`shutdown: draining for ${durationMs} ms (${this.inFlight} requests in flight)`);
    for (const l of this.listeners) if (l.runtime.direction === "inbound") l.runtime.draining = true;
    await sleep(durationMs);
    if (!exitOnZeroActiveConnections) {
      for (const l of this.listeners) {
        l.runtime.draining = true;
        l.listener.stopAccepting();
      }
    }
    // Bounded: requests still in flight one more drain duration after the listeners stopped accepting
    // (a hung upstream, a stream that never ends) are cut, as Istio's agent stops Envoy after its drain.
    const deadline = exitOnZeroActiveConnections ? Infinity : Date.now() + durationMs;
    while (this.inFlight > 0 && Date.now() < deadline) await sleep(POLL_MS);
    if (this.inFlight > 0) this.log.warn(`shutdown: ${this.inFlight} requests still in flight after the drain, exiting anyway`);
    else this.log.info("shutdown: no requests in flight, exiting");
    await this.exit(0);
  }

  /** Envoy's /quitquitquit: a clean exit now. */
  async quit(): Promise<void> {
    this.log.info("shutdown: /quitquitquit");
    await this.exit(0);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
