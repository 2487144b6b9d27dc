// What a snapshot keeps per cluster at run time: its connection pool, circuit
// breaker and outlier detector.

import type { Agent } from "undici";
import type { ClusterInfo } from "../config/compile.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { OutlierDetector } from "./outlier-detection.js";
import type { PoolRegistry } from "./pools.js";

export class ClusterRuntime {
  readonly dispatcher: Agent;
  readonly breaker: CircuitBreaker;
  /** Absent unless the DestinationRule sets outlierDetection (Istio configures none otherwise). */
  readonly outlier: OutlierDetector | undefined;

  constructor(cluster: ClusterInfo, pools: PoolRegistry, setEligible: (eligible: boolean[]) => void) {
    this.dispatcher = pools.for(cluster.name, cluster.policy.limits);
    this.breaker = new CircuitBreaker(cluster.policy.limits);
    const od = cluster.policy.outlierDetection;
    this.outlier = od && cluster.endpoints.length > 0 ? new OutlierDetector(od, cluster.endpoints.length, setEligible) : undefined;
  }

  stop(): void {
    this.outlier?.stop();
  }
}
