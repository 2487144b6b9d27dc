// What one upstream attempt holds until it ends, taken and given back in one
// place: the endpoint's in-flight count (LEAST_REQUEST reads it; the cluster
// manager keeps it with the endpoint across updates) and the cluster circuit
// breaker's admission (max_connections, max_pending_requests, max_requests).

import type { ManagedCluster } from "../cluster/cluster.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";

export class UpstreamLease {
  private endpoint: UpstreamEndpoint | undefined = undefined;
  private admitted: ManagedCluster | undefined = undefined;

  // HOT PATH — change with care: once per attempt, no allocation.

  /** Counts the attempt on `endpoint` (undefined: passthrough, nothing to count). */
  hold(endpoint: UpstreamEndpoint | undefined): void {
    this.endpoint = endpoint;
    endpoint?.acquire();
  }

  /** The cluster's circuit breaker admits the attempt; false when it is over a limit (503 UO). */
  admit(cluster: ManagedCluster): boolean {
    if (!cluster.breaker.admit()) return false;
    this.admitted = cluster;
    return true;
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
}
