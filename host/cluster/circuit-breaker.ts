// Envoy's cluster circuit breakers as Istio configures them from
// connectionPool: requests beyond max_connections wait as pending, up to
// max_pending_requests; max_requests bounds requests in flight; max_retries
// bounds retries in flight. Over a limit the request is not sent: 503 UO with
// x-envoy-overloaded (or, for a retry, the response passes through with UO).
// Counting only: nothing is queued here, so memory stays bounded under overload.
// The counts belong to the cluster, not to a config version: they survive updates.

import type { ClusterPolicy } from "../config/traffic-policy.js";

export class CircuitBreaker {
  /** Requests admitted and not yet finished (on a connection or pending for one). */
  active = 0;
  /** Retries admitted and not yet finished. */
  retries = 0;
  /** Requests admitted while every allowed connection was busy: they waited as pending (Envoy's upstream_rq_pending_total). */
  pendingTotal = 0;

  constructor(private limits: ClusterPolicy["limits"]) {}

  /** A cluster update changed the thresholds: the counts stay (requests in flight are still in flight). */
  setLimits(limits: ClusterPolicy["limits"]): void {
    this.limits = limits;
  }

  /** Admits a request (counts it) or refuses it: the cluster is at its request or pending limit. */
  admit(): boolean {
    const l = this.limits;
    // HTTP/1.1: one request per connection, so requests beyond maxConnections are pending ones.
    if (this.active >= l.maxRequests || this.active >= l.maxConnections + l.maxPendingRequests) return false;
    if (this.active >= l.maxConnections) this.pendingTotal++;
    this.active++;
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
    const pending = this.pending;
    return {
      rq_open: this.active >= l.maxRequests ? 1 : 0,
      rq_pending_open: pending >= l.maxPendingRequests ? 1 : 0,
      rq_retry_open: this.retries >= l.maxRetries ? 1 : 0,
      remaining_rq: Math.max(0, l.maxRequests - this.active),
      remaining_pending: Math.max(0, l.maxPendingRequests - pending),
      remaining_retries: Math.max(0, l.maxRetries - this.retries),
    };
  }

  finish(): void {
    this.active--;
  }

  admitRetry(): boolean {
    if (this.retries >= this.limits.maxRetries) return false;
    this.retries++;
    return true;
  }

  finishRetry(): void {
    this.retries--;
  }
}
