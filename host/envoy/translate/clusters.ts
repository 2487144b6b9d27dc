// Envoy v3 Cluster and ClusterLoadAssignment → instio's clusters: discovery
// type, load balancer, circuit-breaker thresholds, outlier detection, connect
// and idle timeouts, HTTP/2, health checks, upstream TLS; endpoints with their
// health and Istio's label metadata. The inverse of ../generate/clusters.ts.

import type { ClusterEndpoint, ClusterInfo } from "../../config/compile.js";
import type { HealthCheckSettings } from "../../config/model.js";
import { DEFAULT_CLUSTER_POLICY, type ClusterPolicy, type LoadBalancerModel, type OutlierDetectionModel, type UpstreamTlsModel } from "../../config/traffic-policy.js";
import { HTTP_PROTOCOL_OPTIONS, INSTIO_METADATA } from "../generate/clusters.js";
import { structToJson, TYPE_PREFIX } from "../protos.js";
import { MAX_PEM_BYTES, readBounded } from "../../config/files.js";
import { createSecureContext } from "node:tls";
import { SDS_CLUSTER, SDS_ROOT_SECRET, SDS_WORKLOAD_SECRET } from "../generate/clusters.js";
import { MessageReader, Unsupported } from "./reader.js";

const HTTP_PROTOCOL_OPTIONS_TYPE = `${TYPE_PREFIX}${HTTP_PROTOCOL_OPTIONS}`;
const UPSTREAM_TLS_TYPE = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
const RAW_BUFFER_TYPE = `${TYPE_PREFIX}envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer`;

/** A cluster as CDS sends it: everything but its endpoints, and where they come from. */
export interface XdsCluster {
  info: Omit<ClusterInfo, "endpoints">;
  /** EDS: the ClusterLoadAssignment to subscribe to (service_name, else the cluster's name). */
  edsName: string | undefined;
  /** STATIC: the endpoints the cluster carries itself. */
  endpoints: ClusterEndpoint[] | undefined;
  /** STRICT_DNS / LOGICAL_DNS: the endpoints as written (names), resolved when the config is assembled. */
  dns: { logical: boolean; targets: ClusterEndpoint[] } | undefined;
}

/** Istio's cluster names: outbound|PORT|SUBSET|HOST (and inbound|PORT||). */
function istioName(name: string): { host: string; port: number; subset: string | undefined; namespace: string } {
  const parts = name.split("|");
  if (parts.length === 4 && /^\d+$/.test(parts[1]!)) {
    const host = parts[3]!;
    const m = /^[^.]+\.([^.]+)\.svc\./.exec(host);
    return { host, port: Number(parts[1]), subset: parts[2] || undefined, namespace: m?.[1] ?? "" };
  }
  return { host: name, port: 0, subset: undefined, namespace: "" };
}

export function readCluster(r: MessageReader): XdsCluster {
  const name = r.str("name") ?? r.fail("name", "a cluster needs a name");
  const type = r.str("type") ?? "STATIC";
  const lbPolicy = r.str("lb_policy") ?? "ROUND_ROBIN";
  const limits = { ...DEFAULT_CLUSTER_POLICY.limits, connectTimeoutMs: r.durationMs("connect_timeout") ?? 5000 };
  const policy: ClusterPolicy = { loadBalancer: { kind: "LEAST_REQUEST" }, limits, outlierDetection: undefined, tls: undefined };
  let edsName: string | undefined;
  let endpoints: ClusterEndpoint[] | undefined;
  let dns: XdsCluster["dns"];
  let passthrough = false;
  if (type === "EDS") {
    const eds = r.obj("eds_cluster_config");
    edsName = eds?.str("service_name") || name;
    eds?.accept("eds_config"); // instio takes every resource over the one ADS stream
    eds?.done();
  } else if (type === "STATIC") {
    const assignment = r.obj("load_assignment");
    endpoints = assignment ? readLoadAssignment(assignment).endpoints : [];
  } else if (type === "STRICT_DNS" || type === "LOGICAL_DNS") {
    const assignment = r.obj("load_assignment");
    const targets = assignment ? readLoadAssignment(assignment).endpoints : [];
    if (type === "LOGICAL_DNS" && targets.length !== 1) r.fail("load_assignment", "a LOGICAL_DNS cluster has exactly one endpoint");
    dns = { logical: type === "LOGICAL_DNS", targets };
    // Names are re-resolved at the proxy's DNS refresh rate (ProxySettings dns.refreshRate, Istio's dnsRefreshRate).
    r.accept("dns_refresh_rate", "dns_lookup_family");
    r.only("respect_dns_ttl", [false], "is not supported (names are re-resolved at the proxy's refresh rate)");
  } else if (type === "ORIGINAL_DST") {
    passthrough = true;
    r.only("lb_policy", ["CLUSTER_PROVIDED", "ROUND_ROBIN"], "with ORIGINAL_DST is not supported");
  } else {
    r.fail("type", `${type} clusters are not supported (EDS, STATIC, STRICT_DNS, LOGICAL_DNS and ORIGINAL_DST are)`);
  }
  if (!passthrough) policy.loadBalancer = loadBalancer(r, lbPolicy);
  const thresholds = r.obj("circuit_breakers");
  if (thresholds) {
    const list = thresholds.list("thresholds");
    for (const t of list) {
      t.only("priority", ["DEFAULT"], "priority thresholds are not supported");
      limits.maxConnections = t.wrapped("max_connections") ?? 1024;
      limits.maxPendingRequests = t.wrapped("max_pending_requests") ?? 1024;
      limits.maxRequests = t.wrapped("max_requests") ?? 1024;
      limits.maxRetries = t.wrapped("max_retries") ?? 3;
      t.accept("track_remaining");
      t.done();
    }
    thresholds.done();
  } else {
    // Envoy's defaults when a cluster sets no thresholds.
    Object.assign(limits, { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 });
  }
  let http2 = false;
  for (const [ext, any] of r.map("typed_extension_protocol_options")) {
    const at = `${r.path}.typed_extension_protocol_options["${ext}"]`;
    if (ext !== HTTP_PROTOCOL_OPTIONS) throw new Unsupported(at, "protocol options instio does not read");
    http2 = readHttpProtocolOptions(MessageReader.ofAny(any as never, at, [HTTP_PROTOCOL_OPTIONS_TYPE]), limits);
  }
  const conn = r.obj("upstream_connection_options");
  if (conn) {
    const ka = conn.obj("tcp_keepalive");
    if (ka) {
      limits.tcpKeepalive = { timeMs: (ka.wrapped("keepalive_time") ?? 7200) * 1000 };
      ka.accept("keepalive_probes", "keepalive_interval");
      ka.done();
    }
    conn.done();
  }
  const healthChecks = r.list("health_checks");
  if (healthChecks.length > 1) r.fail("health_checks", "one health check per cluster is supported");
  const healthCheck = healthChecks[0] && readHealthCheck(healthChecks[0], name);
  const outlier = r.obj("outlier_detection");
  if (outlier) policy.outlierDetection = readOutlierDetection(outlier);
  const common = r.obj("common_lb_config");
  if (common) {
    const panic = common.obj("healthy_panic_threshold");
    if (panic) {
      const value = panic.num("value") ?? 0;
      panic.done();
      // instio's panic threshold is outlier detection's (Istio's minHealthPercent); elsewhere only Envoy's default applies.
      if (policy.outlierDetection) policy.outlierDetection.minHealthPercent = value;
      else if (value !== 50) common.fail("healthy_panic_threshold", "a panic threshold other than 50% is supported only with outlier_detection");
    }
    common.done();
  }
  const socket = r.obj("transport_socket");
  if (socket) {
    socket.accept("name");
    const config = socket.any("typed_config", [UPSTREAM_TLS_TYPE, RAW_BUFFER_TYPE]);
    if (config?.typeUrl === UPSTREAM_TLS_TYPE) policy.tls = readUpstreamTls(config);
    else config?.done(); // raw_buffer: plain text, as without a transport socket
    socket.done();
  }
  const service = filterMetadata(r).get("istio")?.services;
  r.accept("alt_stat_name");
  r.done();
  const id = istioName(name);
  // The service's namespace from Istio's cluster metadata (a ServiceEntry's host does not name it).
  const first = Array.isArray(service) ? (service[0] as Record<string, unknown> | undefined) : undefined;
  const serviceNamespace = typeof first?.namespace === "string" ? first.namespace : id.namespace;
  return {
    info: { name, host: id.host, serviceNamespace, port: id.port, subset: id.subset, passthrough, policy, healthCheck, http2 },
    edsName,
    endpoints,
    dns,
  };
}

function loadBalancer(r: MessageReader, policy: string): LoadBalancerModel {
  // The hash key is the route's (hash_policy); assemble.ts sets it from the routes that use the cluster.
  const noKey = { kind: "header" as const, name: "" };
  switch (policy) {
    case "ROUND_ROBIN":
    case "RANDOM":
    case "LEAST_REQUEST": {
      const lr = r.obj("least_request_lb_config");
      if (lr) {
        const choices = lr.wrapped("choice_count") ?? 2;
        if (choices !== 2) lr.fail("choice_count", "only 2 choices (Envoy's default) are supported");
        lr.done();
      }
      return { kind: policy };
    }
    case "RING_HASH": {
      const c = r.obj("ring_hash_lb_config");
      let minimumRingSize = 1024;
      if (c) {
        minimumRingSize = c.wrapped("minimum_ring_size") ?? 1024;
        // Envoy's bounds (ring_hash.proto: at most 8M points).
        if (!(minimumRingSize >= 1 && minimumRingSize <= 8_388_608)) c.fail("minimum_ring_size", "must be from 1 to 8388608");
        c.only("hash_function", ["XX_HASH"], "hash function is not supported");
        c.accept("maximum_ring_size");
        c.done();
      }
      return { kind: "RING_HASH", key: noKey, minimumRingSize };
    }
    case "MAGLEV": {
      const c = r.obj("maglev_lb_config");
      const tableSize = c?.wrapped("table_size") ?? 65537;
      c?.done();
      return { kind: "MAGLEV", key: noKey, tableSize };
    }
    default:
      return r.fail("lb_policy", `${policy} is not supported`);
  }
}

function readHttpProtocolOptions(r: MessageReader, limits: ClusterPolicy["limits"]): boolean {
  const common = r.obj("common_http_protocol_options");
  if (common) {
    limits.idleTimeoutMs = common.durationMs("idle_timeout") ?? limits.idleTimeoutMs;
    limits.maxRequestsPerConnection = common.wrapped("max_requests_per_connection") ?? 0;
    limits.maxConnectionDurationMs = common.durationMs("max_connection_duration") ?? 0;
    common.done();
  }
  let http2 = false;
  const explicit = r.obj("explicit_http_config");
  if (explicit) {
    const h1 = explicit.obj("http_protocol_options");
    const h2 = explicit.obj("http2_protocol_options");
    h1?.done();
    if (h2) {
      http2 = true;
      h2.accept("max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size");
      h2.done();
    }
    explicit.done();
  } else if (r.has("use_downstream_protocol_config") || r.has("auto_config")) {
    r.fail("upstream_protocol_options", "only explicit_http_config is supported");
  }
  r.done();
  return http2;
}

function readHealthCheck(r: MessageReader, cluster: string): HealthCheckSettings {
  const http = r.obj("http_health_check") ?? r.fail("health_checker", "only HTTP health checks are supported");
  const path = http.str("path") ?? "/";
  http.accept("host");
  http.done();
  const check: HealthCheckSettings = {
    host: cluster,
    port: undefined,
    path,
    intervalMs: r.durationMs("interval") ?? 10_000,
    timeoutMs: r.durationMs("timeout") ?? 1000,
    unhealthyThreshold: r.wrapped("unhealthy_threshold") ?? 1,
    healthyThreshold: r.wrapped("healthy_threshold") ?? 1,
  };
  r.accept("no_traffic_interval", "interval_jitter");
  r.done();
  return check;
}

function readOutlierDetection(r: MessageReader): Required<OutlierDetectionModel> {
  // Envoy ejects by a kind only where its enforcing_* is above 0: instio's thresholds of 0 turn a kind off.
  const enforced = (threshold: string, enforcing: string, fallback: number): number => {
    const value = r.wrapped(threshold) ?? fallback;
    const enforce = r.has(enforcing) ? r.wrapped(enforcing)! : 100;
    if (enforce !== 0 && enforce !== 100) r.fail(enforcing, "only 0 and 100 are supported");
    return enforce === 0 ? 0 : value;
  };
  const o: Required<OutlierDetectionModel> = {
    consecutive5xxErrors: enforced("consecutive_5xx", "enforcing_consecutive_5xx", 5),
    consecutiveGatewayErrors: enforced("consecutive_gateway_failure", "enforcing_consecutive_gateway_failure", 5),
    consecutiveLocalOriginFailures: enforced("consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure", 5),
    splitExternalLocalOriginErrors: r.bool("split_external_local_origin_errors") === true,
    intervalMs: r.durationMs("interval") ?? 10_000,
    baseEjectionTimeMs: r.durationMs("base_ejection_time") ?? 30_000,
    maxEjectionPercent: r.wrapped("max_ejection_percent") ?? 10,
    // Envoy's panic threshold (common_lb_config) replaces this when the cluster sets one.
    minHealthPercent: 50,
  };
  // Without split_external_local_origin_errors, Envoy counts no local-origin failures of their own.
  if (!o.splitExternalLocalOriginErrors && !r.has("consecutive_local_origin_failure")) o.consecutiveLocalOriginFailures = 0;
  r.only("enforcing_success_rate", [0], "success-rate ejection is not supported");
  r.only("enforcing_failure_percentage", [0, undefined], "failure-percentage ejection is not supported");
  r.done();
  return o;
}

function readUpstreamTls(r: MessageReader): UpstreamTlsModel {
  const sni = r.str("sni");
  const common = r.obj("common_tls_context");
  if (common?.has("tls_certificate_sds_secret_configs")) return readIstioMutual(r, common, sni);
  let ca: Buffer | undefined;
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  let subjectAltNames: string[] = [];
  let insecureSkipVerify = true;
  if (common) {
    const validation = common.obj("validation_context");
    if (validation) {
      insecureSkipVerify = false;
      const trusted = validation.obj("trusted_ca");
      // The system's CA bundle is what instio verifies against without a CA of its own.
      if (trusted && trusted.peek("filename") !== SYSTEM_CA_BUNDLE) ca = dataSource(trusted);
      else trusted?.accept("filename").done();
      subjectAltNames = exactSans(validation);
      validation.done();
    }
    const certificates = common.list("tls_certificates");
    if (certificates.length > 1) common.fail("tls_certificates", "one client certificate is supported");
    const c = certificates[0];
    if (c) {
      cert = dataSource(c.obj("certificate_chain") ?? c.fail("certificate_chain", "a client certificate needs its chain"));
      key = dataSource(c.obj("private_key") ?? c.fail("private_key", "a client certificate needs its key"));
      c.done();
    }
    common.accept("alpn_protocols");
    common.done();
  }
  // Checked now, as the YAML path checks a DestinationRule's: a bad PEM is this resource's error, not every request's.
  try {
    createSecureContext({ ca, cert, key });
  } catch (err) {
    r.fail("common_tls_context", `the certificates cannot be used: ${(err as Error).message}`);
  }
  r.done();
  return { mode: cert ? "MUTUAL" : "SIMPLE", ca, cert, key, sni, subjectAltNames, insecureSkipVerify };
}

/**
 * istiod's ISTIO_MUTUAL: the certificate and root by SDS ("default" and "ROOTCA" from sds-grpc), which Envoy's
 * agent serves from the workload certificate; instio binds both to the workload certificate it keeps itself (the
 * pools read it at each connection). Other secret names or SDS servers are refused: instio has no SDS client.
 */
function readIstioMutual(r: MessageReader, common: MessageReader, sni: string | undefined): UpstreamTlsModel {
  const secret = (s: MessageReader, name: string): void => {
    const got = s.str("name");
    if (got !== name) s.fail("name", `only the workload's own SDS secrets ("${SDS_WORKLOAD_SECRET}", "${SDS_ROOT_SECRET}") are supported, got "${got ?? ""}"`);
    const source = s.obj("sds_config");
    const api = source?.obj("api_config_source");
    const clusters = api?.list("grpc_services").map((g) => {
      const envoy = g.obj("envoy_grpc");
      const name = envoy?.str("cluster_name");
      envoy?.done();
      g.done();
      return name;
    });
    if (!clusters || clusters.length !== 1 || clusters[0] !== SDS_CLUSTER) s.fail("sds_config", `secrets come from the sidecar's own ${SDS_CLUSTER} only`);
    api?.accept("api_type", "set_node_on_first_message_only", "transport_api_version").done();
    source?.accept("initial_fetch_timeout", "resource_api_version").done();
    s.done();
  };
  const certificates = common.list("tls_certificate_sds_secret_configs");
  if (certificates.length !== 1) common.fail("tls_certificate_sds_secret_configs", "one workload certificate is supported");
  secret(certificates[0]!, SDS_WORKLOAD_SECRET);
  const combined = common.obj("combined_validation_context") ?? common.fail("combined_validation_context", "ISTIO_MUTUAL verifies the peer against the mesh's root (ROOTCA)");
  secret(combined.obj("validation_context_sds_secret_config") ?? combined.fail("validation_context_sds_secret_config", `the root comes from SDS secret ${SDS_ROOT_SECRET}`), SDS_ROOT_SECRET);
  const validation = combined.obj("default_validation_context");
  const subjectAltNames = validation ? exactSans(validation) : [];
  validation?.done();
  combined.done();
  // Istio's ALPN for a sidecar calling a sidecar, which instio's pools send for ISTIO_MUTUAL anyway.
  common.accept("alpn_protocols");
  common.done();
  r.done();
  return { mode: "ISTIO_MUTUAL", ca: undefined, cert: undefined, key: undefined, sni, subjectAltNames, insecureSkipVerify: false };
}

/** A validation context's match_typed_subject_alt_names: exact matches only, as instio verifies SANs. */
function exactSans(validation: MessageReader): string[] {
  return validation.list("match_typed_subject_alt_names").map((m) => {
    m.accept("san_type");
    const matcher = m.obj("matcher") ?? m.fail("matcher", "a SAN matcher needs a matcher");
    const exact = matcher.str("exact") ?? matcher.fail("exact", "only exact SAN matches are supported");
    matcher.done();
    m.done();
    return exact;
  });
}

const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** Envoy's DataSource: a file (read now, bounded), inline bytes or an inline string. */
function dataSource(r: MessageReader): Buffer {
  let value: Buffer;
  if (r.has("filename")) {
    const file = r.str("filename")!;
    try {
      value = readBounded(file, MAX_PEM_BYTES);
    } catch (err) {
      throw r.error("filename", `cannot read ${file}: ${(err as Error).message}`);
    }
  } else if (r.has("inline_bytes")) value = r.bytes("inline_bytes")!;
  else if (r.has("inline_string")) value = Buffer.from(r.str("inline_string")!);
  else r.fail("specifier", "needs filename, inline_bytes or inline_string");
  r.done();
  return value;
}

export interface XdsLoadAssignment {
  name: string;
  endpoints: ClusterEndpoint[];
}

/** Envoy's health statuses that take an endpoint out of load balancing. */
const UNHEALTHY = ["UNHEALTHY", "DRAINING", "TIMEOUT", "DEGRADED"];

export function readLoadAssignment(r: MessageReader): XdsLoadAssignment {
  const name = r.str("cluster_name") ?? "";
  const endpoints: ClusterEndpoint[] = [];
  for (const locality of r.list("endpoints")) {
    locality.only("priority", [0], "endpoint priorities are not supported");
    locality.accept("locality", "load_balancing_weight");
    for (const lb of locality.list("lb_endpoints")) {
      const weight = lb.wrapped("load_balancing_weight");
      if (weight !== undefined && !(Number.isInteger(weight) && weight >= 1 && weight < 2 ** 32)) lb.fail("load_balancing_weight", "must be an integer from 1 to 4294967295");
      const health = lb.str("health_status") ?? "UNKNOWN";
      const endpoint = lb.obj("endpoint") ?? lb.fail("endpoint", "an lb_endpoint needs an endpoint");
      const address = endpoint.obj("address") ?? endpoint.fail("address", "an endpoint needs an address");
      const socket = address.obj("socket_address") ?? address.fail("socket_address", "only socket addresses are supported");
      const host = socket.str("address") ?? "";
      const port = socket.num("port_value") ?? 0;
      socket.only("protocol", ["TCP"]);
      socket.done();
      address.done();
      endpoint.accept("hostname", "health_check_config");
      endpoint.done();
      const labels = endpointLabels(lb);
      lb.done();
      if (!UNHEALTHY.includes(health)) endpoints.push({ address: host, port, labels, ...(weight !== undefined && weight !== 1 ? { weight } : {}) });
    }
    locality.done();
  }
  r.accept("policy"); // overprovisioning and drop_overload: instio has no priorities or overload drops to apply them to
  r.done();
  return { name, endpoints };
}

/**
 * The workload's labels, for the destination's metric labels: instio's own metadata namespace when the
 * control plane is instio's (../generate/clusters.ts INSTIO_METADATA), else what istiod's metadata says:
 * istio.workload's canonical service and revision, and the transport-socket match's tlsMode.
 */
function endpointLabels(lb: MessageReader): Record<string, string> {
  const namespaces = filterMetadata(lb);
  const labels: Record<string, string> = {};
  const own = namespaces.get(INSTIO_METADATA)?.labels;
  if (own && typeof own === "object") {
    for (const [k, v] of Object.entries(own)) if (typeof v === "string") labels[k] = v;
    return labels;
  }
  const workload = namespaces.get("istio")?.workload;
  if (typeof workload === "string") {
    const [name, , service, revision] = workload.split(";");
    if (name) labels["service.istio.io/workload-name"] = name;
    if (service) labels["service.istio.io/canonical-name"] = service;
    if (revision) labels["service.istio.io/canonical-revision"] = revision;
  }
  const tlsMode = namespaces.get("envoy.transport_socket_match")?.tlsMode;
  if (typeof tlsMode === "string") labels["security.istio.io/tlsMode"] = tlsMode;
  return labels;
}

/**
 * A message's metadata by namespace, as JSON. Metadata describes; it changes
 * nothing Envoy does, so namespaces instio does not read are accepted as they are.
 */
function filterMetadata(r: MessageReader): Map<string, Record<string, unknown>> {
  const meta = r.obj("metadata");
  if (!meta) return new Map();
  const namespaces = new Map(meta.map("filter_metadata").map(([ns, struct]) => [ns, structToJson(struct)]));
  meta.accept("typed_filter_metadata");
  meta.done();
  return namespaces;
}
