// Istio's standard metrics and the Envoy cluster statistics users debug with,
// on prom-client.
//
// Label children are resolved once per (destination, response code, flag) and
// kept in a small per-snapshot table, so recording a request is two Map lookups
// and four updates: no label objects, no string building per request.

import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from "./series.js";

/** Envoy's default histogram buckets, which Istio's metrics use (ms for durations, bytes for sizes). */
export const ENVOY_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

/** Istio's label set for HTTP metrics, in Istio's order. */
export const ISTIO_LABELS = [
  "reporter",
  "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
  "source_canonical_service", "source_canonical_revision", "source_cluster",
  "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
  "destination_service", "destination_service_name", "destination_service_namespace",
  "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
  "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
] as const;

export type IstioLabel = (typeof ISTIO_LABELS)[number];
/** Every label but the per-request ones. */
export type PeerLabels = Omit<Record<IstioLabel, string>, "response_code" | "response_flags">;

interface Children {
  requests: CounterSeries;
  duration: HistogramSeries;
  requestBytes: HistogramSeries;
  responseBytes: HistogramSeries;
}

/** What gauges read at scrape time, from the serving snapshot and listeners. */
export interface GaugeSources {
  configVersion(): number;
  clusters(): { name: string; endpoints: number; healthy: number; active: number; ejected: number; pending: number; pendingTotal: number; breaker: Record<string, number> }[];
  listeners(): { name: string; inFlight: number }[];
}

/** The circuit-breaker gauges Envoy keeps per cluster and priority (the default priority's are real). */
export const BREAKER_GAUGES = ["rq_open", "rq_pending_open", "rq_retry_open", "remaining_rq", "remaining_pending", "remaining_retries"] as const;

/** Envoy's RBAC filter statistics (shadow_*: dry-run policies; logged: AUDIT policies that matched). */
export const RBAC_RESULTS = ["allowed", "denied", "shadow_allowed", "shadow_denied", "logged"] as const;

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requestsTotal: CounterFamily;
  readonly duration: HistogramFamily;
  readonly requestBytes: HistogramFamily;
  readonly responseBytes: HistogramFamily;
  // Envoy cluster statistics (as Istio exposes them: envoy_cluster_*{cluster_name}).
  readonly upstreamRq: CounterFamily;
  readonly upstreamRqRetry: CounterFamily;
  readonly upstreamCxConnectFail: CounterFamily;
  readonly upstreamRqTimeout: CounterFamily;
  readonly upstreamRqPendingOverflow: CounterFamily;
  readonly retryOrShadowAbandoned: CounterFamily;
  // Istio's TCP metrics, per connection through a TCP listener.
  readonly tcpOpened: CounterFamily;
  readonly tcpClosed: CounterFamily;
  readonly tcpSentBytes: CounterFamily;
  readonly tcpReceivedBytes: CounterFamily;
  readonly upstreamRqActive: Gauge<"cluster_name">;
  readonly membershipHealthy: Gauge<"cluster_name">;
  readonly membershipTotal: Gauge<"cluster_name">;
  readonly outlierEjectionsActive: Gauge<"cluster_name">;
  readonly configReloads: Counter<"result">;
  readonly wasmFailures: Counter<"plugin_name">;
  readonly internalErrors: Counter;
  readonly configVersion: Gauge;
  /** The xDS client: connected to the control plane (Envoy's control_plane.connected_state), and each response's fate. */
  readonly xdsConnected: Gauge;
  readonly xdsUpdates: Counter<"type" | "result">;
  readonly xdsReconnects: Counter;
  /** The workload certificate: Envoy's days until it expires, and each renewal's result. */
  readonly certificateDays: Gauge;
  readonly certificateRenewals: Counter<"result">;
  readonly downstreamRqActive: Gauge<"listener">;
  /** Envoy's RBAC filter counters (http.PREFIX.rbac.*), by the inbound HCM's stat prefix. */
  readonly rbac: Record<(typeof RBAC_RESULTS)[number], Counter<"http_conn_manager_prefix">>;
  /** Inbound connections refused by PeerAuthentication or their TLS handshake. */
  readonly inboundRefused: Counter<"reason">;

  /** Requests this serving thread handled: how connections spread across threads (`concurrency`). */
  readonly threadRequests: CounterSeries;

  /**
   * `thread`: which serving thread records into this registry (0: the main thread, whose registry alone has the
   * process's CPU, memory and event-loop series: one set per process).
   */
  constructor(sources: GaugeSources, thread = 0) {
    const r = [this.registry];
    const reg = this.registry;
    this.requestsTotal = new CounterFamily(reg, "istio_requests_total", "Requests, as Istio's standard metric");
    this.duration = new HistogramFamily(reg, "istio_request_duration_milliseconds", "Request duration in milliseconds", ENVOY_BUCKETS);
    this.requestBytes = new HistogramFamily(reg, "istio_request_bytes", "Request size in bytes (downstream wire bytes received)", ENVOY_BUCKETS);
    this.responseBytes = new HistogramFamily(reg, "istio_response_bytes", "Response size in bytes (downstream wire bytes sent)", ENVOY_BUCKETS);
    const cluster = (name: string, help: string) => new CounterFamily(reg, name, help);
    this.tcpOpened = new CounterFamily(reg, "istio_tcp_connections_opened_total", "TCP connections opened");
    this.tcpClosed = new CounterFamily(reg, "istio_tcp_connections_closed_total", "TCP connections closed");
    this.tcpSentBytes = new CounterFamily(reg, "istio_tcp_sent_bytes_total", "Bytes sent to the client (the upstream's response bytes) on TCP connections");
    this.tcpReceivedBytes = new CounterFamily(reg, "istio_tcp_received_bytes_total", "Bytes received from the client on TCP connections");
    this.upstreamRq = cluster("envoy_cluster_upstream_rq_total", "Upstream requests, per cluster (every attempt)");
    this.upstreamRqRetry = cluster("envoy_cluster_upstream_rq_retry", "Upstream request retries, per cluster");
    this.upstreamCxConnectFail = cluster("envoy_cluster_upstream_cx_connect_fail", "Upstream connection failures, per cluster");
    this.upstreamRqTimeout = cluster("envoy_cluster_upstream_rq_timeout", "Upstream requests that timed out, per cluster");
    this.retryOrShadowAbandoned = cluster("envoy_cluster_retry_or_shadow_abandoned", "Retries not made because the request body was streamed, not buffered, per cluster");
    this.upstreamRqPendingOverflow = cluster("envoy_cluster_upstream_rq_pending_overflow", "Requests rejected by a circuit breaker (503 UO), per cluster");
    // Gauges are read at scrape time from the serving snapshot: nothing to maintain per request.
    type ClusterRow = ReturnType<GaugeSources["clusters"]>[number];
    // With several serving threads a scrape sums their series (AggregatorRegistry); what each thread holds a
    // copy of (the endpoints and their health) is taken from one of them instead.
    const gauge = (name: string, help: string, value: (c: ClusterRow) => number, aggregator: "sum" | "max" = "sum") =>
      new Gauge({
        name,
        help,
        labelNames: ["cluster_name"],
        registers: r,
        aggregator,
        collect() {
          this.reset();
          for (const c of sources.clusters()) this.labels(c.name).set(value(c));
        },
      });
    this.upstreamRqActive = gauge("envoy_cluster_upstream_rq_active", "Upstream requests in flight, per cluster", (c) => c.active);
    this.membershipHealthy = gauge("envoy_cluster_membership_healthy", "Healthy endpoints, per cluster", (c) => c.healthy, "max");
    this.membershipTotal = gauge("envoy_cluster_membership_total", "Endpoints, per cluster", (c) => c.endpoints, "max");
    this.outlierEjectionsActive = gauge("envoy_cluster_outlier_detection_ejections_active", "Endpoints ejected by outlier detection, per cluster", (c) => c.ejected);
    // The circuit breaker's counts are shared by every serving thread: each thread reads the same, taken once.
    gauge("envoy_cluster_upstream_rq_pending_active", "Requests waiting for a connection, per cluster", (c) => c.pending, "max");
    // A counter in Envoy; read from the circuit breaker at scrape time here, so exposed with counter semantics by name only.
    gauge("envoy_cluster_upstream_rq_pending_total", "Requests that waited for a connection, per cluster", (c) => c.pendingTotal, "max");
    for (const stat of BREAKER_GAUGES) gauge(`envoy_cluster_circuit_breakers_default_${stat}`, `Envoy's circuit_breakers.default.${stat}, per cluster`, (c) => c.breaker[stat] ?? 0, "max");
    this.configReloads = new Counter({ name: "instio_config_reloads_total", help: "Config reloads by result (applied, rejected)", labelNames: ["result"], registers: r });
    this.internalErrors = new Counter({ name: "instio_internal_errors_total", help: "Requests answered 500 because of a bug in the proxy (each one is logged)", registers: r });
    this.xdsConnected = new Gauge({ name: "envoy_control_plane_connected_state", help: "1 while the ADS stream to the control plane is up (only with --xds)", registers: r });
    this.xdsUpdates = new Counter({ name: "instio_xds_updates_total", help: "xDS responses by type (lds, rds, cds, eds) and result (applied: ACKed; rejected: NACKed)", labelNames: ["type", "result"], registers: r });
    this.certificateDays = new Gauge({ name: "envoy_server_days_until_first_cert_expiring", help: "Days until the workload certificate expires (only with a CA or --cert-dir)", registers: r });
    this.certificateRenewals = new Counter({ name: "instio_workload_certificate_renewals_total", help: "Workload certificate renewals by result (renewed, failed)", labelNames: ["result"], registers: r });
    this.rbac = Object.fromEntries(
      RBAC_RESULTS.map((result) => [result, new Counter({ name: `envoy_http_rbac_${result}`, help: `AuthorizationPolicy on inbound requests: Envoy's http.PREFIX.rbac.${result}`, labelNames: ["http_conn_manager_prefix"], registers: r })]),
    ) as ProxyMetrics["rbac"];
    this.inboundRefused = new Counter({ name: "instio_inbound_connections_refused_total", help: "Inbound connections closed by PeerAuthentication (plaintext under STRICT) or a failed mTLS handshake", labelNames: ["reason"], registers: r });
    this.wasmFailures = new Counter({ name: "instio_wasm_plugin_failures_total", help: "Proxy-Wasm VM failures by plugin (a trap, a time or memory budget, a start that failed); each is logged and the VM restarted", labelNames: ["plugin_name"], registers: r });
    this.xdsReconnects = new Counter({ name: "instio_xds_reconnects_total", help: "ADS streams opened again after the control plane went away", registers: r });
    this.configVersion = new Gauge({
      name: "instio_config_version",
      help: "Version of the config being served",
      registers: r,
      aggregator: "max",
      collect() {
        this.set(sources.configVersion());
      },
    });
    this.downstreamRqActive = new Gauge({
      name: "envoy_http_downstream_rq_active",
      help: "Requests in flight, per listener",
      labelNames: ["listener"],
      registers: r,
      collect() {
        for (const l of sources.listeners()) this.labels(l.name).set(l.inFlight);
      },
    });
    this.threadRequests = new CounterFamily(reg, "instio_serving_thread_requests_total", "Requests by the serving thread that handled them (thread 0 is the main thread; more with concurrency)").bind({ thread: String(thread) });
    if (thread === 0) collectDefaultMetrics({ register: this.registry });
  }
}

/** One destination's Istio metric series: peer labels fixed, code and flag resolved once each. */
export class RequestStats {
  private readonly byCode = new Map<number, Map<string, Children>>();

  constructor(
    private readonly metrics: ProxyMetrics,
    readonly peer: PeerLabels,
  ) {}

  // HOT PATH — change with care: once per request.
  /** `grpcStatus` is "" for plain HTTP; for gRPC it also makes request_protocol "grpc". */
  record(code: number, flag: string, grpcStatus: string, durationMs: number, requestBytes: number, responseBytes: number): void {
    let byFlag = this.byCode.get(code);
    if (byFlag === undefined) this.byCode.set(code, (byFlag = new Map()));
    const key = grpcStatus === "" ? flag : `${flag}\u0000${grpcStatus}`;
    let c = byFlag.get(key);
    if (c === undefined) byFlag.set(key, (c = this.bind(code, flag, grpcStatus)));
    c.requests.inc();
    c.duration.observe(durationMs);
    c.requestBytes.observe(requestBytes);
    c.responseBytes.observe(responseBytes);
  }

  private bind(code: number, flag: string, grpcStatus: string): Children {
    const labels: Record<IstioLabel, string> = { ...this.peer, response_code: String(code), response_flags: flag };
    if (grpcStatus !== "") {
      labels.grpc_response_status = grpcStatus;
      labels.request_protocol = "grpc";
    }
    const m = this.metrics;
    return {
      requests: m.requestsTotal.bind(labels),
      duration: m.duration.bind(labels),
      requestBytes: m.requestBytes.bind(labels),
      responseBytes: m.responseBytes.bind(labels),
    };
  }
}
