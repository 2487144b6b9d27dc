// Envoy's cluster circuit breakers as Istio configures them from
// connectionPool: requests beyond max_connections wait as pending, up to
// max_pending_requests; max_requests bounds requests in flight; max_retries
// bounds retries in flight. Over a limit the request is not sent: 503 UO with
// x-envoy-overloaded (or, for a retry, the response passes through with UO).
// Counting only: nothing is queued here, so memory stays bounded under overload.
// The counts belong to the cluster, not to a config version: they survive updates.
// They are Int32Array cells: the thread's own, or shared by every serving thread
// (shared-breakers.ts), as Envoy's limits hold across its workers. As in Envoy,
// a check and its count are two steps, so threads admitting at the same moment
// can overshoot a limit by the requests they admitted together.

import type { ClusterPolicy } from "../config/traffic-policy.js";
import { BREAKER_COUNTERS } from "./shared-breakers.js";

const ACTIVE = 0;
const RETRIES = 1;
const PENDING_TOTAL = 2;

export class CircuitBreaker {
  constructor(
    private limits: ClusterPolicy["limits"],
    /** active, retries, pendingTotal: this thread's, or a shared table's slot. */
    private readonly counts: Int32Array = new Int32Array(BREAKER_COUNTERS),
  ) {}

  /** Requests admitted and not yet finished (on a connection or pending for one). */
  get active(): number {
    return Atomics.load(this.counts, ACTIVE);
  }
  /** Retries admitted and not yet finished. */
  get retries(): number {
    return Atomics.load(this.counts, RETRIES);
  }
  /** Requests admitted while every allowed connection was busy: they waited as pending (Envoy's upstream_rq_pending_total). */
  get pendingTotal(): number {
    return Atomics.load(this.counts, PENDING_TOTAL);
  }

  /** A cluster update changed the thresholds: the counts stay (requests in flight are still in flight). */
  setLimits(limits: ClusterPolicy["limits"]): void {
    this.limits = limits;
  }

  /** Admits a request (counts it) or refuses it: the cluster is at its request or pending limit. */
  admit(): boolean {
    const l = this.limits;
    const active = Atomics.load(this.counts, ACTIVE);
    // HTTP/1.1: one request per connection, so requests beyond maxConnections are pending ones.
    if (active >= l.maxRequests || active >= l.maxConnections + l.maxPendingRequests) return false;
    if (active >= l.maxConnections) Atomics.add(this.counts, PENDING_TOTAL, 1);
    Atomics.add(this.counts, ACTIVE, 1);
    return true;
  }

  /** Requests waiting for a connection now (Envoy's upstream_rq_pending_active). */
  get pending(): number {
    return Math.max(0, this.active - this.limits.maxConnections);
  }

  /**
   * Envoy's circuit_breakers.default.* gauges, as Istio's thresholds (track_remaining) make it
   * report them: open flags and what remains under each limit.
   */
  gauges(): Record<string, number> {
    const l = this.limits;
    const active = this.active;
    const retries = this.retries;
    const pending = Math.max(0, active - l.maxConnections);
    return {
      rq_open: active >= l.maxRequests ? 1 : 0,
      rq_pending_open: pending >= l.maxPendingRequests ? 1 : 0,
      rq_retry_open: retries >= l.maxRetries ? 1 : 0,
      remaining_rq: Math.max(0, l.maxRequests - active),
      remaining_pending: Math.max(0, l.maxPendingRequests - pending),
      remaining_retries: Math.max(0, l.maxRetries - retries),
    };
  }

  finish(): void {
    Atomics.sub(this.counts, ACTIVE, 1);
  }

  admitRetry(): boolean {
    if (Atomics.load(this.counts, RETRIES) >= this.limits.maxRetries) return false;
    Atomics.add(this.counts, RETRIES, 1);
    return true;
  }

  finishRetry(): void {
    Atomics.sub(this.counts, RETRIES, 1);
  }
}
