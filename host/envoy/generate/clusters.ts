// Compiled clusters → Envoy v3 Cluster and ClusterLoadAssignment, as istiod
// writes them (cluster_builder.go, cluster_traffic_policy.go, endpoint_builder.go).

import type { ClusterInfo } from "../../config/compile.js";
import type { ConfigDiagnostic } from "../../config/diagnostics.js";
import { canonicalRevision, canonicalService } from "../../config/hosts.js";
import { duration, jsonToStruct, packAny, TYPE_PREFIX } from "../protos.js";
import type { Generator, Json } from "./routes.js";

export const HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_PROTOCOL_OPTIONS_TYPE = `${TYPE_PREFIX}${HTTP_PROTOCOL_OPTIONS}`;
const UPSTREAM_TLS_TYPE = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;

/** Clusters are fetched over ADS, and Envoy waits for them however long it takes (Istio's initial_fetch_timeout: 0s). */
export const ADS_CONFIG_SOURCE: Json = { ads: {}, initial_fetch_timeout: duration(0), resource_api_version: "V3" };

/** Istio's catch-all clusters for a sidecar's outbound traffic. */
export function builtinClusters(connectTimeoutMs: number): Json[] {
  return [
    { name: "PassthroughCluster", type: "ORIGINAL_DST", lb_policy: "CLUSTER_PROVIDED", connect_timeout: duration(connectTimeoutMs) },
    { name: "BlackHoleCluster", type: "STATIC", connect_timeout: duration(connectTimeoutMs) },
  ];
}

/**
 * One cluster. `problems` receives what cannot go over xDS (client key material:
 * the control plane does not send private keys until SDS serves them); such a
 * cluster is left out, so requests to it get 503 NC rather than going out in
 * plain text.
 */
export function envoyCluster(c: ClusterInfo, generator: Generator, problems: ConfigDiagnostic[]): Json | undefined {
  const p = c.policy;
  const limits = p.limits;
  const base: Json = { name: c.name, connect_timeout: duration(limits.connectTimeoutMs) };
  if (c.passthrough) return { ...base, type: "ORIGINAL_DST", lb_policy: "CLUSTER_PROVIDED" };
  // A DNS-resolved service's cluster resolves its names itself, as istiod sends one (the control plane
  // resolves nothing); gRPC clients get EDS, as before (they take only LOGICAL_DNS with one endpoint).
  const dns = generator === "sidecar" ? c.dns : undefined;
  const cluster: Json = {
    ...base,
    ...(dns
      ? { type: dns.logical ? "LOGICAL_DNS" : "STRICT_DNS", load_assignment: loadAssignment({ ...c, endpoints: dns.targets }) }
      : { type: "EDS", eds_cluster_config: { service_name: c.name, eds_config: ADS_CONFIG_SOURCE } }),
    ...loadBalancer(c, generator),
    circuit_breakers: {
      thresholds: [generator === "grpc"
        ? { max_requests: { value: limits.maxRequests } }
        : { max_connections: { value: limits.maxConnections }, max_pending_requests: { value: limits.maxPendingRequests }, max_requests: { value: limits.maxRequests }, max_retries: { value: limits.maxRetries }, track_remaining: true }],
    },
  };
  if (generator === "sidecar") {
    cluster.metadata = clusterMetadata(c);
    cluster.typed_extension_protocol_options = { [HTTP_PROTOCOL_OPTIONS]: packAny(HTTP_PROTOCOL_OPTIONS_TYPE, httpProtocolOptions(c)) };
    if (limits.tcpKeepalive) cluster.upstream_connection_options = { tcp_keepalive: { keepalive_time: { value: Math.max(1, Math.round(limits.tcpKeepalive.timeMs / 1000)) } } };
    if (c.healthCheck) {
      const h = c.healthCheck;
      cluster.health_checks = [{ timeout: duration(h.timeoutMs), interval: duration(h.intervalMs), unhealthy_threshold: { value: h.unhealthyThreshold }, healthy_threshold: { value: h.healthyThreshold }, http_health_check: { path: h.path } }];
    }
  }
  if (p.outlierDetection && generator === "grpc") {
    cluster.outlier_detection = grpcOutlierDetection(p.outlierDetection);
  } else if (p.outlierDetection) {
    const o = p.outlierDetection;
    const enforce = (n: number): Json => ({ value: n > 0 ? 100 : 0 });
    cluster.outlier_detection = {
      consecutive_5xx: { value: o.consecutive5xxErrors },
      enforcing_consecutive_5xx: enforce(o.consecutive5xxErrors),
      consecutive_gateway_failure: { value: o.consecutiveGatewayErrors },
      enforcing_consecutive_gateway_failure: enforce(o.consecutiveGatewayErrors),
      split_external_local_origin_errors: o.splitExternalLocalOriginErrors,
      consecutive_local_origin_failure: { value: o.consecutiveLocalOriginFailures },
      enforcing_consecutive_local_origin_failure: enforce(o.consecutiveLocalOriginFailures),
      // Istio turns success-rate ejection off; only consecutive errors eject.
      enforcing_success_rate: { value: 0 },
      interval: duration(o.intervalMs),
      base_ejection_time: duration(o.baseEjectionTimeMs),
      max_ejection_percent: { value: o.maxEjectionPercent },
    };
    cluster.common_lb_config = { healthy_panic_threshold: { value: o.minHealthPercent } };
  }
  const tls = p.tls;
  if (tls?.mode === "ISTIO_MUTUAL") {
    if (generator === "grpc") {
      problems.push({ file: "<control-plane>", line: 1, column: 1, path: "", severity: "error", message: `${c.name}: ISTIO_MUTUAL for proxyless gRPC needs certificate providers, which are not sent yet; the cluster is left out` });
      return undefined;
    }
    cluster.transport_socket = { name: "envoy.transport_sockets.tls", typed_config: packAny(UPSTREAM_TLS_TYPE, istioMutualTls(tls, c)) };
    return cluster;
  }
  if (tls && tls.mode !== "DISABLE") {
    if (tls.key) {
      problems.push({ file: "<control-plane>", line: 1, column: 1, path: "", severity: "error", message: `${c.name}: TLS origination with a client certificate (MUTUAL) is not sent over xDS (the control plane does not send private keys); the cluster is left out` });
      return undefined;
    }
    cluster.transport_socket = { name: "envoy.transport_sockets.tls", typed_config: packAny(UPSTREAM_TLS_TYPE, upstreamTls(tls, c.host)) };
  }
  return cluster;
}

/**
 * gRPC clients eject by success rate or failure percentage only (gRFC A50), not
 * by consecutive errors, and istiod's grpcgen sends them no outlier detection at
 * all. instio sends the nearest rule: an endpoint all of whose requests in an
 * interval failed, at least consecutive5xxErrors of them, is ejected. gRPC ejects
 * when the failure percentage is strictly above the threshold (gRFC A50), where
 * Envoy ejects at or above it, so "all failed" is a threshold of 99 for fewer
 * than 100 requests in the interval.
 */
function grpcOutlierDetection(o: NonNullable<ClusterInfo["policy"]["outlierDetection"]>): Json {
  const errors = Math.max(o.consecutive5xxErrors, o.consecutiveGatewayErrors);
  return {
    interval: duration(o.intervalMs),
    base_ejection_time: duration(o.baseEjectionTimeMs),
    max_ejection_percent: { value: o.maxEjectionPercent },
    enforcing_success_rate: { value: 0 },
    failure_percentage_threshold: { value: 99 },
    enforcing_failure_percentage: { value: errors > 0 ? 100 : 0 },
    failure_percentage_minimum_hosts: { value: 1 },
    failure_percentage_request_volume: { value: Math.max(1, errors) },
  };
}

function loadBalancer(c: ClusterInfo, generator: Generator): Json {
  const lb = c.policy.loadBalancer;
  switch (lb.kind) {
    case "RING_HASH":
      return { lb_policy: "RING_HASH", ring_hash_lb_config: { minimum_ring_size: { value: lb.minimumRingSize }, hash_function: "XX_HASH" } };
    case "MAGLEV":
      // gRPC clients reject MAGLEV, as they do when istiod sends it: a NACK the operator sees.
      return { lb_policy: "MAGLEV", maglev_lb_config: { table_size: { value: lb.tableSize } } };
    case "ROUND_ROBIN":
      return { lb_policy: "ROUND_ROBIN" };
    case "RANDOM":
      return { lb_policy: generator === "grpc" ? "ROUND_ROBIN" : "RANDOM" };
    default:
      // Istio's default is LEAST_REQUEST; gRPC clients have no least-request policy, and grpcgen sends them round robin.
      return { lb_policy: generator === "grpc" ? "ROUND_ROBIN" : "LEAST_REQUEST" };
  }
}

function httpProtocolOptions(c: ClusterInfo): Json {
  const limits = c.policy.limits;
  const common: Json = { idle_timeout: duration(limits.idleTimeoutMs) };
  if (limits.maxRequestsPerConnection > 0) common.max_requests_per_connection = { value: limits.maxRequestsPerConnection };
  if (limits.maxConnectionDurationMs > 0) common.max_connection_duration = duration(limits.maxConnectionDurationMs);
  return { common_http_protocol_options: common, explicit_http_config: c.http2 ? { http2_protocol_options: {} } : { http_protocol_options: {} } };
}

/** Debian's and Istio's proxy image's system CA bundle. */
const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

function upstreamTls(tls: NonNullable<ClusterInfo["policy"]["tls"]>, host: string): Json {
  const context: Json = {};
  if (!tls.insecureSkipVerify) {
    context.validation_context = {
      // Without caCertificates, the system's roots, as the proxy verifies (and as istiod points Envoy at them):
      // Envoy refuses SAN matching with no trusted CA.
      trusted_ca: tls.ca ? { inline_bytes: tls.ca } : { filename: SYSTEM_CA_BUNDLE },
      match_typed_subject_alt_names: (tls.subjectAltNames.length > 0 ? tls.subjectAltNames : [tls.sni ?? host]).map((san) => ({ san_type: san.includes("://") ? "URI" : "DNS", matcher: { exact: san } })),
    };
  }
  return { sni: tls.sni ?? host, common_tls_context: context };
}

/**
 * ISTIO_MUTUAL as istiod writes it (cluster_tls.go): the workload certificate and the mesh's root by SDS (secrets
 * "default" and "ROOTCA" from the sidecar's own sds-grpc), the destination's identities to match, Istio's SNI and
 * ALPN. No key leaves the control plane: the sidecar binds the secrets to the certificate it keeps.
 */
function istioMutualTls(tls: NonNullable<ClusterInfo["policy"]["tls"]>, c: ClusterInfo): Json {
  const sds = (name: string): Json => ({
    name,
    sds_config: { api_config_source: { api_type: "GRPC", set_node_on_first_message_only: true, transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }] }, initial_fetch_timeout: { seconds: 0 }, resource_api_version: "V3" },
  });
  return {
    sni: tls.sni ?? c.host,
    common_tls_context: {
      tls_certificate_sds_secret_configs: [sds(SDS_WORKLOAD_SECRET)],
      combined_validation_context: {
        default_validation_context: { match_typed_subject_alt_names: tls.subjectAltNames.map((san) => ({ san_type: "URI", matcher: { exact: san } })) },
        validation_context_sds_secret_config: sds(SDS_ROOT_SECRET),
      },
      alpn_protocols: c.http2 ? ["istio-h2", "istio", "h2"] : ["istio-http/1.1", "istio", "http/1.1"],
    },
  };
}

/** Istio's SDS names: the cluster Envoy's bootstrap points at the agent, and the two secrets it asks for. */
export const SDS_CLUSTER = "sds-grpc";
export const SDS_WORKLOAD_SECRET = "default";
export const SDS_ROOT_SECRET = "ROOTCA";

/** Istio's cluster metadata: the service it is for (istio.services[]{host,name,namespace}), which the stats read. */
function clusterMetadata(c: ClusterInfo): Json {
  const name = c.host.endsWith(".svc.cluster.local") ? c.host.split(".")[0]! : c.host;
  return { filter_metadata: { istio: jsonToStruct({ services: [{ host: c.host, name, namespace: c.serviceNamespace }] }) } };
}

/**
 * An endpoint's workload labels (app, version, ...), which a sidecar's metrics label the destination with.
 * istiod sends Envoy a lossy "workload;namespace;canonical-service;revision;cluster" string instead; instio's
 * sidecar reads the labels from its own metadata namespace, which Envoy ignores.
 */
export const INSTIO_METADATA = "instio";

/**
 * An endpoint's metadata: istiod's (the transport-socket match for auto mTLS, and istio.workload,
 * "workload;namespace;canonical-service;canonical-revision;cluster", the stats' fallback), and the
 * labels themselves in instio's namespace.
 */
function endpointMetadata(labels: Record<string, string>): Json {
  if (Object.keys(labels).length === 0) return {};
  const meta: Json = { [INSTIO_METADATA]: jsonToStruct({ labels }) };
  const service = canonicalService(labels);
  if (service) {
    const revision = canonicalRevision(labels);
    meta.istio = jsonToStruct({ workload: `${labels["service.istio.io/workload-name"] ?? service};;${service};${revision};` });
  }
  const tlsMode = labels["security.istio.io/tlsMode"];
  if (tlsMode && tlsMode !== "disabled") meta["envoy.transport_socket_match"] = jsonToStruct({ tlsMode });
  return { metadata: { filter_metadata: meta } };
}

/**
 * The endpoints of one cluster, in one locality (istiod groups by locality label; instio has none
 * yet). Each carries its weight (1 unless its WorkloadEntry gives one), the locality their sum,
 * capped at 2^32 - 1 as istiod caps it.
 */
export function loadAssignment(c: ClusterInfo): Json {
  if (c.endpoints.length === 0) return { cluster_name: c.name, endpoints: [] };
  const total = c.endpoints.reduce((sum, ep) => sum + (ep.weight ?? 1), 0);
  return {
    cluster_name: c.name,
    endpoints: [{
      locality: {},
      load_balancing_weight: { value: Math.min(total, 2 ** 32 - 1) },
      lb_endpoints: c.endpoints.map((ep) => ({
        endpoint: { address: { socket_address: { address: ep.address, port_value: ep.port } } },
        health_status: "HEALTHY",
        load_balancing_weight: { value: ep.weight ?? 1 },
        ...endpointMetadata(ep.labels),
      })),
    }],
  };
}
