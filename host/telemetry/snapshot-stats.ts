// The metric children one config version's requests record into, bound when
// the version is built (off the hot path), so that a request only indexes arrays
// and a small map: per cluster, per endpoint (its labels name the workload), per
// virtual host, and the passthrough, blackhole, inbound and unrouted series.

import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { CompiledConfig } from "../config/compile.js";
import { canonicalRevision, canonicalService } from "../config/hosts.js";
import type { ConnectionPeer } from "../listeners/downstream.js";
import type { AuthzCounters } from "../security/authorization.js";
import type { PeerInfo } from "../security/peer-metadata.js";
import { RequestStats, type PeerLabels, type ProxyMetrics } from "./metrics.js";
import type { CounterSeries } from "./series.js";

const UNKNOWN = "unknown";
/** Series per peer a config version binds at most (peer metadata is the client's to choose); past it, peers are unknown. */
const PEER_SERIES_LIMIT = 1000;
const NO_PEER: PeerInfo = { id: "", name: "", namespace: "", workload: "", cluster: "", labels: {} };

function shortServiceName(host: string): string {
  const k8s = /^([^.]+)\.[^.]+\.svc\.cluster\.local$/.exec(host);
  return k8s ? k8s[1]! : host;
}

/** Labels describing a workload from its labels, with Istio's fallbacks. */
function workloadLabels(labels: Record<string, string>, workload: string): { app: string; version: string; canonicalService: string; canonicalRevision: string } {
  return {
    app: labels.app ?? UNKNOWN,
    version: labels.version ?? UNKNOWN,
    canonicalService: canonicalService(labels) ?? workload,
    canonicalRevision: canonicalRevision(labels),
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
  /** Inbound and per-endpoint series by the peer's metadata and principal, bound at first use. */
  private readonly byPeer = new Map<RequestStats, Map<PeerInfo, Map<string, RequestStats>>>();
  private peerSeries = 0;
  /** The RBAC filter's counters for the inbound listener. */
  readonly rbac: AuthzCounters;

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
    const prefix = { http_conn_manager_prefix: `inbound_0.0.0.0_${s.inbound?.appPort ?? 0}` };
    const rbac = metrics.rbac;
    const allowed = rbac.allowed.labels(prefix), denied = rbac.denied.labels(prefix), shadowAllowed = rbac.shadow_allowed.labels(prefix), shadowDenied = rbac.shadow_denied.labels(prefix), logged = rbac.logged.labels(prefix);
    this.rbac = { allowed: () => allowed.inc(), denied: () => denied.inc(), shadowAllowed: () => shadowAllowed.inc(), shadowDenied: () => shadowDenied.inc(), logged: () => logged.inc() };
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

  /**
   * Inbound: the series for a caller, by its exchanged metadata and its certificate (Istio's server-side
   * labels: source_* from the peer, source_principal from its SAN, mutual_tls when both sides have one).
   */
  inboundFrom(peer: PeerInfo | undefined, conn: ConnectionPeer | undefined): RequestStats {
    if (!peer && !conn) return this.inbound;
    return this.withPeer(this.inbound, peer ?? NO_PEER, conn?.principal ?? "", (base) => {
      const w = workloadLabels(peer?.labels ?? {}, peer?.workload || UNKNOWN);
      const ns = /\/ns\/([^/]+)\//.exec(conn?.principal ?? "")?.[1] ?? (peer?.namespace || UNKNOWN);
      return {
        ...base,
        source_workload: peer?.workload || UNKNOWN, source_workload_namespace: ns, source_principal: conn?.principal || UNKNOWN,
        source_app: w.app, source_version: w.version, source_canonical_service: peer ? w.canonicalService : UNKNOWN, source_canonical_revision: peer ? w.canonicalRevision : "latest",
        source_cluster: peer?.cluster || UNKNOWN,
        destination_principal: conn?.localPrincipal || UNKNOWN,
        connection_security_policy: conn?.principal && conn.localPrincipal ? "mutual_tls" : "none",
      };
    });
  }

  /** Outbound: an endpoint's series refined by the upstream's exchanged metadata and its certificate (destination_*). */
  ofEndpointPeer(cluster: number, ep: UpstreamEndpoint, peer: PeerInfo | undefined, principal: string, localPrincipal: string): RequestStats {
    const base = this.ofEndpoint(cluster, ep);
    if (!peer && principal === "") return base;
    return this.withPeer(base, peer ?? NO_PEER, principal, (labels) => {
      const w = peer ? workloadLabels(peer.labels, peer.workload || UNKNOWN) : undefined;
      return {
        ...labels,
        ...(localPrincipal ? { source_principal: localPrincipal } : {}),
        ...(principal ? { destination_principal: principal } : {}),
        ...(peer
          ? {
              destination_workload: peer.workload || UNKNOWN, destination_workload_namespace: peer.namespace || UNKNOWN,
              destination_app: w!.app, destination_version: w!.version, destination_canonical_service: w!.canonicalService,
              destination_canonical_revision: w!.canonicalRevision, destination_cluster: peer.cluster || UNKNOWN,
            }
          : {}),
      };
    });
  }

  private withPeer(base: RequestStats, peer: PeerInfo, principal: string, labels: (base: PeerLabels) => PeerLabels): RequestStats {
    let byInfo = this.byPeer.get(base);
    if (!byInfo) this.byPeer.set(base, (byInfo = new Map()));
    let byPrincipal = byInfo.get(peer);
    if (!byPrincipal) byInfo.set(peer, (byPrincipal = new Map()));
    let stats = byPrincipal.get(principal);
    if (!stats) {
      if (this.peerSeries >= PEER_SERIES_LIMIT) return base;
      this.peerSeries++;
      byPrincipal.set(principal, (stats = new RequestStats(this.metrics, labels(base.peer))));
    }
    return stats;
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
