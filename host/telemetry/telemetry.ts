// The pipeline's observer: Istio metrics, Envoy cluster stats and the access log.
// Metric children are bound per config version (SnapshotStats), so a request only
// indexes arrays and a small map. Telemetry reads requests as plain records
// (ExchangeRecord): it knows nothing of the pipeline or the snapshot.

import type { ManagedCluster } from "../cluster/cluster.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { CompiledConfig } from "../config/compile.js";
import type { Settings } from "../config/model.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import { AccessLog } from "./access-log.js";
import { ProxyMetrics, type RequestStats } from "./metrics.js";
import type { ExchangeObserver, ExchangeRecord } from "./record.js";
import { SnapshotStats } from "./snapshot-stats.js";

/** What the gauges read of the serving config version. */
export interface ServingState {
  readonly version: number;
  readonly clusters: readonly ManagedCluster[];
}

/** The series a finished request belongs to. */
function selectStats(stats: SnapshotStats, ex: ExchangeRecord): RequestStats {
  if (ex.listener.direction === "inbound") return stats.inboundFrom(ex.downstreamPeer, ex.ds.peer);
  if (ex.upstreamEndpoint) return stats.ofEndpointPeer(ex.cluster, ex.upstreamEndpoint, ex.upstreamPeer, ex.upstreamPrincipal, ex.localPrincipal);
  if (ex.cluster >= 0) return stats.byCluster[ex.cluster]!;
  if (ex.clusterName === "PassthroughCluster") return stats.passthrough;
  if (ex.clusterName === "BlackHoleCluster") return stats.blackhole;
  if (ex.vhost >= 0) return stats.byVhost[ex.vhost]!;
  return stats.unrouted;
}

/** Approximate wire bytes of the request: request line, headers, blank line, body. */
function requestWireBytes(ex: ExchangeRecord): number {
  const ds = ex.ds;
  let n = ds.method.length + ds.path.length + (ds.query === undefined ? 0 : ds.query.length + 1) + 12;
  const h = ds.headers;
  for (let i = 0; i < h.length; i++) n += h[i]!.length + 2;
  return n + 2 + ds.bodyBytes;
}

export class Telemetry implements ExchangeObserver {
  readonly metrics: ProxyMetrics;
  private readonly accessLog: AccessLog | undefined;

  /** `thread`: the serving thread this telemetry records for (0: the main thread). */
  constructor(settings: Settings, serving: () => ServingState, listeners: readonly ListenerRuntime[], thread = 0) {
    this.accessLog = settings.accessLog ? new AccessLog(settings.accessLog.path, settings.accessLog.format) : undefined;
    this.metrics = new ProxyMetrics({
      configVersion: () => serving().version,
      clusters: () => {
        const s = serving();
        return s.clusters.map((runtime) => {
          const b = runtime.breaker;
          return { name: runtime.info.name, endpoints: runtime.members.length, healthy: runtime.healthyCount, active: runtime.inFlight, ejected: runtime.outlier?.ejectedCount ?? 0, pending: b.pending, pendingTotal: b.pendingTotal, breaker: b.gauges() };
        });
      },
      listeners: () => listeners.map((l) => ({ name: l.direction, inFlight: l.inFlight })),
    }, thread);
  }

  /** The metric children of a config version; bound when its snapshot is built, off the hot path. */
  statsFor(config: CompiledConfig): SnapshotStats {
    return new SnapshotStats(this.metrics, config);
  }

  // HOT PATH — change with care: the four hooks below run per request or attempt.
  attempt(ex: ExchangeRecord): void {
    const stats = ex.stats;
    if (ex.cluster >= 0) stats.clusterCounters[ex.cluster]!.rq.inc();
    if (ex.upstreamEndpoint) ex.upstreamEndpoint.requests++;
  }
  shadow(ex: ExchangeRecord, cluster: number, endpoint: UpstreamEndpoint): void {
    ex.stats.clusterCounters[cluster]!.rq.inc();
    endpoint.requests++;
  }
  connectFailure(ex: ExchangeRecord): void {
    if (ex.cluster >= 0) ex.stats.clusterCounters[ex.cluster]!.connectFail.inc();
  }
  retry(ex: ExchangeRecord): void {
    if (ex.cluster >= 0) ex.stats.clusterCounters[ex.cluster]!.retry.inc();
  }
  retryAbandoned(ex: ExchangeRecord): void {
    if (ex.cluster >= 0) ex.stats.clusterCounters[ex.cluster]!.retryAbandoned.inc();
  }
  timeout(ex: ExchangeRecord): void {
    if (ex.cluster >= 0) ex.stats.clusterCounters[ex.cluster]!.timeout.inc();
  }
  overflow(ex: ExchangeRecord): void {
    if (ex.cluster >= 0) ex.stats.clusterCounters[ex.cluster]!.overflow.inc();
  }
  complete(ex: ExchangeRecord): void {
    this.metrics.threadRequests.inc();
    const duration = performance.now() - ex.startedAt;
    selectStats(ex.stats, ex).record(ex.status, ex.flag, ex.grpcStatus, duration, requestWireBytes(ex), ex.headerBytesSent + ex.bytesSent);
    this.accessLog?.write(ex);
  }
}
