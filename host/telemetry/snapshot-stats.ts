// The metric children one config version's requests record into, bound when
// the version is built (off the hot path), so that a request only indexes arrays
// and a small map: per cluster, per endpoint (its labels name the workload), per
// virtual host, and the passthrough, blackhole, inbound and unrouted series.

import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { CompiledConfig } from "../config/compile.js";
import { RequestStats, type PeerLabels, type ProxyMetrics } from "./metrics.js";
import type { CounterSeries } from "./series.js";

const UNKNOWN = "unknown";

function shortServiceName(host: string): string {
  const k8s = /^([^.]+)\.[^.]+\.svc\.cluster\.local$/.exec(host);
  return k8s ? k8s[1]! : host;
}

/** Labels describing a workload from its labels, with Istio's fallbacks. */
function workloadLabels(labels: Record<string, string>, workload: string): { app: string; version: string; canonicalService: string; canonicalRevision: string } {
  return {
    app: labels.app ?? UNKNOWN,
    version: labels.version ?? UNKNOWN,
    canonicalService: labels["service.istio.io/canonical-name"] ?? labels["app.kubernetes.io/name"] ?? labels.app ?? workload,
    canonicalRevision: labels["service.istio.io/canonical-revision"] ?? labels["app.kubernetes.io/version"] ?? labels.version ?? "latest",
  };
}

interface ClusterCounters {
  rq: CounterSeries;
  retry: CounterSeries;
  connectFail: CounterSeries;
  timeout: CounterSeries;
  retryAbandoned: CounterSeries;
  overflow: CounterSeries;
}

export interface TcpCounters {
  opened: CounterSeries;
  closed: CounterSeries;
  sent: CounterSeries;
  received: CounterSeries;
}

/** Everything one snapshot's requests record into. */
export class SnapshotStats {
  /** Per endpoint (its labels name the destination workload), bound at its first request. */
  private readonly byEndpoint = new Map<UpstreamEndpoint, RequestStats>();
  readonly byCluster: RequestStats[];
  readonly byVhost: RequestStats[];
  readonly passthrough: RequestStats;
  readonly blackhole: RequestStats;
  readonly inbound: RequestStats;
  readonly unrouted: RequestStats;
  readonly clusterCounters: ClusterCounters[];
  private readonly destination: (service: string, serviceName: string, namespace: string, labels: Record<string, string> | undefined) => PeerLabels;

  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly config: CompiledConfig,
  ) {
    const s = config.settings;
    const self = workloadLabels(s.labels, s.workload.name);
    const source: Pick<PeerLabels, `source_${string}` & keyof PeerLabels> = {
      source_workload: s.workload.name,
      source_workload_namespace: s.namespace,
      source_principal: UNKNOWN,
      source_app: self.app,
      source_version: self.version,
      source_canonical_service: self.canonicalService,
      source_canonical_revision: self.canonicalRevision,
      source_cluster: s.workload.cluster,
    };
    const destination = (this.destination = (service: string, serviceName: string, namespace: string, labels: Record<string, string> | undefined): PeerLabels => {
      const w = labels ? workloadLabels(labels, UNKNOWN) : undefined;
      return {
        reporter: "source",
        ...source,
        destination_workload: UNKNOWN,
        destination_workload_namespace: labels ? namespace : UNKNOWN,
        destination_principal: UNKNOWN,
        destination_app: w?.app ?? UNKNOWN,
        destination_version: w?.version ?? UNKNOWN,
        destination_service: service,
        destination_service_name: serviceName,
        destination_service_namespace: namespace,
        destination_canonical_service: w && w.canonicalService !== UNKNOWN ? w.canonicalService : UNKNOWN,
        destination_canonical_revision: w?.canonicalRevision ?? "latest",
        destination_cluster: labels ? s.workload.cluster : UNKNOWN,
        request_protocol: "http",
        grpc_response_status: "",
        connection_security_policy: UNKNOWN,
      };
    });
    this.byCluster = config.clusters.map((c) => new RequestStats(metrics, destination(c.host, shortServiceName(c.host), c.serviceNamespace, undefined)));
    this.byVhost = config.virtualHosts.map((v) => new RequestStats(metrics, destination(v.host, shortServiceName(v.host), v.namespace, undefined)));
    this.passthrough = new RequestStats(metrics, destination(UNKNOWN, "PassthroughCluster", UNKNOWN, undefined));
    this.blackhole = new RequestStats(metrics, destination(UNKNOWN, "BlackHoleCluster", UNKNOWN, undefined));
    this.unrouted = new RequestStats(metrics, destination(UNKNOWN, UNKNOWN, UNKNOWN, undefined));
    // Inbound: this workload is the destination; without peer metadata exchange the source is unknown.
    // Its service is the one with an endpoint carrying this proxy's labels (Istio's service selecting the pod).
    const ownLabels = Object.entries(s.labels);
    const own = ownLabels.length === 0 ? undefined : config.clusters.find((c) => c.endpoints.some((ep) => ep.labels !== undefined && ownLabels.every(([k, v]) => ep.labels![k] === v)));
    const inboundLabels: PeerLabels = {
      reporter: "destination",
      source_workload: UNKNOWN, source_workload_namespace: UNKNOWN, source_principal: UNKNOWN, source_app: UNKNOWN, source_version: UNKNOWN,
      source_canonical_service: UNKNOWN, source_canonical_revision: "latest", source_cluster: UNKNOWN,
      destination_workload: s.workload.name, destination_workload_namespace: s.namespace, destination_principal: UNKNOWN,
      destination_app: self.app, destination_version: self.version, destination_service: own?.host ?? UNKNOWN,
      destination_service_name: own ? shortServiceName(own.host) : "InboundPassthroughClusterIpv4", destination_service_namespace: own?.serviceNamespace ?? s.namespace,
      destination_canonical_service: self.canonicalService, destination_canonical_revision: self.canonicalRevision, destination_cluster: s.workload.cluster,
      request_protocol: "http", grpc_response_status: "", connection_security_policy: "none",
    };
    this.inbound = new RequestStats(metrics, inboundLabels);
    this.clusterCounters = config.clusters.map((c) => {
      const labels = { cluster_name: c.name };
      return {
        overflow: metrics.upstreamRqPendingOverflow.bind(labels),
        rq: metrics.upstreamRq.bind(labels),
        retry: metrics.upstreamRqRetry.bind(labels),
        connectFail: metrics.upstreamCxConnectFail.bind(labels),
        timeout: metrics.upstreamRqTimeout.bind(labels),
        retryAbandoned: metrics.retryOrShadowAbandoned.bind(labels),
      };
    });
  }

  private readonly tcpCounters = new Map<string, TcpCounters>();

  /** Istio's TCP counters for connections to `cluster` with `flag`, bound on first use. */
  tcp(cluster: number, flag: string): TcpCounters {
    const key = `${cluster}\u0000${flag}`;
    let c = this.tcpCounters.get(key);
    if (!c) {
      // Istio's TCP metrics carry the peer labels without the HTTP-only ones (response_code, grpc_response_status).
      const labels: Record<string, string> = { ...this.byCluster[cluster]!.peer, request_protocol: "tcp", response_flags: flag };
      delete labels.response_code;
      delete labels.grpc_response_status;
      const m = this.metrics;
      c = { opened: m.tcpOpened.bind(labels), closed: m.tcpClosed.bind(labels), sent: m.tcpSentBytes.bind(labels), received: m.tcpReceivedBytes.bind(labels) };
      this.tcpCounters.set(key, c);
    }
    return c;
  }

  /** An endpoint's series (of cluster `cluster`), bound at its first request. */
  ofEndpoint(cluster: number, ep: UpstreamEndpoint): RequestStats {
    let stats = this.byEndpoint.get(ep);
    if (!stats) {
      const c = this.config.clusters[cluster]!;
      this.byEndpoint.set(ep, (stats = new RequestStats(this.metrics, this.destination(c.host, shortServiceName(c.host), c.serviceNamespace, ep.labels))));
    }
    return stats;
  }
}
