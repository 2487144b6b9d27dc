// What a request holds upstream across its attempts, in one object the Exchange
// owns: the current attempt's number and undici controller, its per-try timer,
// what it holds until it ends (the endpoint's in-flight count, which
// LEAST_REQUEST reads, and the circuit breaker's admission: max_connections,
// max_pending_requests, max_requests), the endpoints tried so far, and the
// retries counted against the cluster's max_retries until the request ends.

import type { Dispatcher } from "undici";
import type { ManagedCluster } from "../cluster/cluster.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";

export class UpstreamAttempts {
  /** Attempts sent so far (x-envoy-attempt-count). */
  count = 0;
  /** The current attempt's number; callbacks from superseded attempts are ignored (attempt.ts). */
  id = 0;
  /** The current attempt went to an endpoint the core chose, not passthrough: it may be retried. */
  balanced = false;
  /** Where the current attempt went: "http://address:port". */
  origin = "";
  /** The current attempt's controller, once undici started its request. */
  controller: Dispatcher.DispatchController | undefined = undefined;
  private tryTimer: NodeJS.Timeout | undefined = undefined;
  /** Cluster endpoint offsets tried so far (the first 32), for Envoy's previous_hosts predicate. */
  private tried = 0;
  private endpoint: UpstreamEndpoint | undefined = undefined;
  private admitted: ManagedCluster | undefined = undefined;
  /** The cluster whose breaker counts retries for this request, and how many. */
  private retriesIn: ManagedCluster | undefined = undefined;
  private retriesHeld = 0;

  // HOT PATH — change with care: once per attempt, no allocation.

  /**
   * A new attempt to `endpoint` (offset `offset` in its cluster), or passthrough (undefined) to
   * `origin`: counts it on the endpoint, which LEAST_REQUEST reads.
   */
  start(endpoint: UpstreamEndpoint | undefined, offset: number, origin: string): void {
    this.count++;
    this.endpoint = endpoint;
    this.balanced = endpoint !== undefined;
    this.origin = origin;
    if (endpoint) {
      endpoint.acquire();
      if (offset < 32) this.tried |= 1 << offset;
    }
  }

  /** Whether the endpoint at `offset` in the cluster was tried (offsets past 32 are not tracked: false). */
  wasTried(offset: number): boolean {
    return offset < 32 && (this.tried & (1 << offset)) !== 0;
  }

  /** The cluster's circuit breaker admits the attempt; false when it is over a limit (503 UO). */
  admit(cluster: ManagedCluster): boolean {
    if (!cluster.breaker.admit()) return false;
    this.admitted = cluster;
    return true;
  }

  /** Runs `onTimeout(target, id)` after `ms` unless the attempt ends first (Envoy's per_try_timeout). */
  armTryTimeout<T>(ms: number, onTimeout: (target: T, id: number) => void, target: T): void {
    this.tryTimer = setTimeout(onTimeout, ms, target, this.id);
  }

  /** The attempt's response started or failed: its per-try timeout no longer runs. */
  stopTryTimeout(): void {
    clearTimeout(this.tryTimer);
  }

  /** Gives back what the attempt holds; a second call does nothing. */
  release(): void {
    if (this.endpoint) {
      this.endpoint.release();
      this.endpoint = undefined;
    }
    if (this.admitted) {
      this.admitted.breaker.finish();
      this.admitted = undefined;
    }
  }

  /** Leaves the current attempt behind: what it holds is released and its late callbacks are ignored. */
  supersede(reason: string): void {
    const controller = this.controller;
    this.id++;
    this.controller = undefined;
    clearTimeout(this.tryTimer);
    this.release();
    controller?.abort(new Error(reason));
  }

  /** Aborts the attempt in flight, if any (its error callback follows). */
  abort(reason: string): void {
    this.controller?.abort(new Error(reason));
  }

  /** The cluster's max_retries admits one more retry for this request, held until it ends. */
  holdRetry(cluster: ManagedCluster): boolean {
    if (!cluster.breaker.admitRetry()) return false;
    this.retriesIn = cluster;
    this.retriesHeld++;
    return true;
  }

  /** The request ended: what it held is given back, its retries too. */
  finish(): void {
    clearTimeout(this.tryTimer);
    this.release();
    for (; this.retriesHeld > 0; this.retriesHeld--) this.retriesIn!.breaker.finishRetry();
  }
}
