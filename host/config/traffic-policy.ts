// DestinationRule trafficPolicy: read from YAML, merged for one (port, subset)
// as Istio merges it, and resolved to the effective policy of one cluster
// with Istio's defaults (see ../shared/reference, "DestinationRule").

import { MAX_PEM_BYTES, readBounded } from "./files.js";
import { createSecureContext } from "node:tls";
import type { FieldReader, Obj } from "./fields.js";
import type { FieldPath } from "./source.js";

export type HashKeySource =
  | { kind: "header"; name: string }
  | { kind: "cookie"; name: string; path: string | undefined; ttlMs: number | undefined }
  | { kind: "sourceIp" }
  | { kind: "query"; name: string };

export type LoadBalancerModel =
  | { kind: "LEAST_REQUEST" | "ROUND_ROBIN" | "RANDOM" | "PASSTHROUGH" }
  | { kind: "RING_HASH"; key: HashKeySource; minimumRingSize: number }
  | { kind: "MAGLEV"; key: HashKeySource; tableSize: number };

export interface ConnectionPoolModel {
  maxConnections?: number;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxConnectionDurationMs?: number;
  tcpKeepalive?: { probes?: number; timeMs?: number; intervalMs?: number };
  maxPendingRequests?: number;
  maxRequests?: number;
  maxRequestsPerConnection?: number;
  maxRetries?: number;
  httpIdleTimeoutMs?: number;
}

export interface OutlierDetectionModel {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  consecutiveLocalOriginFailures?: number;
  splitExternalLocalOriginErrors?: boolean;
  intervalMs?: number;
  baseEjectionTimeMs?: number;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

/** ClientTLSSettings: TLS origination to the endpoints, certificates loaded at validation. */
export interface UpstreamTlsModel {
  /** ISTIO_MUTUAL: the workload's own certificate and the mesh's root, as a sidecar calls another (issue 16). */
  mode: "DISABLE" | "SIMPLE" | "MUTUAL" | "ISTIO_MUTUAL";
  /** PEM contents (undefined: the system's CAs / no client certificate). */
  ca: Buffer | undefined;
  cert: Buffer | undefined;
  key: Buffer | undefined;
  /** SNI; undefined: the request's authority, as Istio's auto SNI. */
  sni: string | undefined;
  /** Accepted SAN values; empty: the name the connection was made for (the SNI). */
  subjectAltNames: string[];
  insecureSkipVerify: boolean;
}

/** ISTIO_MUTUAL with Istio's defaults (auto mTLS): the SNI and SANs are filled in per cluster. */
export const ISTIO_MUTUAL_DEFAULTS: UpstreamTlsModel = { mode: "ISTIO_MUTUAL", ca: undefined, cert: undefined, key: undefined, sni: undefined, subjectAltNames: [], insecureSkipVerify: false };

/** One level of policy: a DestinationRule's, a subset's, or a port-level entry. */
export interface TrafficPolicyModel {
  loadBalancer?: LoadBalancerModel;
  connectionPool?: ConnectionPoolModel;
  outlierDetection?: OutlierDetectionModel;
  tls?: UpstreamTlsModel;
  portLevelSettings: { port: number; policy: TrafficPolicyModel }[];
}

/** The effective policy of one cluster, Istio's defaults filled in. */
export interface ClusterPolicy {
  loadBalancer: LoadBalancerModel;
  limits: {
    maxConnections: number;
    maxPendingRequests: number;
    maxRequests: number;
    maxRetries: number;
    /** 0 = unlimited. */
    maxRequestsPerConnection: number;
    connectTimeoutMs: number;
    /** Connections are retired after this long (tcp.maxConnectionDuration); 0 = never. */
    maxConnectionDurationMs: number;
    /** Idle upstream connections are closed after this (http.idleTimeout, else tcp.idleTimeout; 1 h). */
    idleTimeoutMs: number;
    tcpKeepalive: { timeMs: number } | undefined;
  };
  /** Absent: no outlier detection (Istio configures none without a DestinationRule's outlierDetection). */
  outlierDetection: Required<OutlierDetectionModel> | undefined;
  /** TLS origination; absent or DISABLE: plain text. */
  tls: UpstreamTlsModel | undefined;
}

/** Istio's baseline circuit breakers: effectively unlimited (2^32-1). */
export const UNLIMITED = 2 ** 32 - 1;
const HOUR_MS = 3_600_000;

export const DEFAULT_CLUSTER_POLICY: ClusterPolicy = {
  loadBalancer: { kind: "LEAST_REQUEST" },
  limits: {
    maxConnections: UNLIMITED,
    maxPendingRequests: UNLIMITED,
    maxRequests: UNLIMITED,
    maxRetries: UNLIMITED,
    maxRequestsPerConnection: 0,
    connectTimeoutMs: 10_000,
    maxConnectionDurationMs: 0,
    idleTimeoutMs: HOUR_MS,
    tcpKeepalive: undefined,
  },
  outlierDetection: undefined,
  tls: undefined,
};

const LATER = {
  tunnel: "tunneling TCP through an HTTP CONNECT proxy",
  proxyProtocol: "PROXY protocol upstreams are not supported",
  retryBudget: "retry budgets; use connectionPool.http.maxRetries",
};

export function readTrafficPolicy(r: FieldReader, value: unknown, path: FieldPath, portLevel = false): TrafficPolicyModel | undefined {
  const known = ["loadBalancer", "connectionPool", "outlierDetection", "tls", ...(portLevel ? ["port"] : ["portLevelSettings"])];
  const p = r.object(value, path, known, LATER);
  if (!p) return undefined;
  const portLevelSettings = portLevel
    ? []
    : r.list(p.portLevelSettings, [...path, "portLevelSettings"]).flatMap((s, i) => {
        const at = [...path, "portLevelSettings", i];
        const policy = readTrafficPolicy(r, s, at, true);
        const port = r.object((s as Obj | null)?.port, [...at, "port"], ["number"]);
        const number = port ? r.integer(port.number, [...at, "port", "number"], 1, 65535, true) : undefined;
        if (!port) r.error([...at, "port"], "is required");
        return policy && number !== undefined ? [{ port: number, policy }] : [];
      });
  return {
    loadBalancer: readLoadBalancer(r, p.loadBalancer, [...path, "loadBalancer"]),
    connectionPool: readConnectionPool(r, p.connectionPool, [...path, "connectionPool"]),
    outlierDetection: readOutlierDetection(r, p.outlierDetection, [...path, "outlierDetection"]),
    tls: readUpstreamTls(r, p.tls, [...path, "tls"]),
    portLevelSettings,
  };
}

function readUpstreamTls(r: FieldReader, value: unknown, path: FieldPath): UpstreamTlsModel | undefined {
  const t = r.object(value, path, ["mode", "clientCertificate", "privateKey", "caCertificates", "sni", "subjectAltNames", "insecureSkipVerify"], {
    credentialName: "credentialName (Kubernetes secrets); give file paths instead",
    caCrl: "certificate revocation lists",
  });
  if (!t) return undefined;
  const mode = r.oneOf(t.mode, [...path, "mode"], ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]) ?? "DISABLE";
  const file = (key: string): Buffer | undefined => {
    const name = r.string(t[key], [...path, key]);
    if (name === undefined) return undefined;
    const full = r.configPath(name);
    try {
      return readBounded(full, MAX_PEM_BYTES);
    } catch (err) {
      r.error([...path, key], `cannot read ${full}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const tls: UpstreamTlsModel = {
    mode,
    ca: file("caCertificates"),
    cert: file("clientCertificate"),
    key: file("privateKey"),
    sni: r.string(t.sni, [...path, "sni"]),
    subjectAltNames: r.stringList(t.subjectAltNames, [...path, "subjectAltNames"]),
    insecureSkipVerify: r.boolean(t.insecureSkipVerify, [...path, "insecureSkipVerify"]) ?? false,
  };
  if (mode === "MUTUAL" && (!tls.cert || !tls.key)) r.error(path, "mode MUTUAL needs clientCertificate and privateKey");
  // As Istio: ISTIO_MUTUAL takes the workload's certificate and the mesh's root, never files.
  if (mode === "ISTIO_MUTUAL" && (tls.cert || tls.key || tls.ca)) r.error(path, "mode ISTIO_MUTUAL uses the workload's certificate and the mesh's root; clientCertificate, privateKey and caCertificates go with MUTUAL");
  if (mode === "SIMPLE" || mode === "MUTUAL") {
    try {
      createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key });
    } catch (err) {
      r.error(path, `the certificates cannot be used: ${(err as Error).message}`);
    }
  }
  return tls;
}

function readLoadBalancer(r: FieldReader, value: unknown, path: FieldPath): LoadBalancerModel | undefined {
  const lb = r.object(value, path, ["simple", "consistentHash"], {
    localityLbSetting: "locality-weighted load balancing and failover (every endpoint is treated as one locality)",
    warmup: "slow start (warmup)",
    warmupDurationSecs: "slow start (warmup)",
  });
  if (!lb) return undefined;
  if (lb.simple !== undefined && lb.consistentHash !== undefined) r.error(path, "only one of simple or consistentHash may be set");
  if (lb.simple !== undefined) {
    const simple = r.oneOf(lb.simple, [...path, "simple"], ["UNSPECIFIED", "LEAST_REQUEST", "LEAST_CONN", "ROUND_ROBIN", "RANDOM", "PASSTHROUGH"]);
    if (simple === undefined) return undefined;
    // UNSPECIFIED is Istio's default (LEAST_REQUEST); LEAST_CONN is its deprecated name.
    if (simple === "UNSPECIFIED" || simple === "LEAST_CONN") return { kind: "LEAST_REQUEST" };
    return { kind: simple };
  }
  if (lb.consistentHash === undefined) return undefined;
  const at = [...path, "consistentHash"];
  const ch = r.object(lb.consistentHash, at, ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName", "ringHash", "maglev", "minimumRingSize"]);
  if (!ch) return undefined;
  const keys = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"].filter((k) => ch[k] !== undefined);
  if (keys.length !== 1) {
    r.error(at, "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required");
    return undefined;
  }
  let key: HashKeySource | undefined;
  if (ch.httpHeaderName !== undefined) {
    const name = r.string(ch.httpHeaderName, [...at, "httpHeaderName"], true);
    key = name === undefined ? undefined : { kind: "header", name: name.toLowerCase() };
  } else if (ch.httpCookie !== undefined) {
    const c = r.object(ch.httpCookie, [...at, "httpCookie"], ["name", "path", "ttl"], { attributes: "cookie attributes" });
    const name = c ? r.string(c.name, [...at, "httpCookie", "name"], true) : undefined;
    if (c && name !== undefined) key = { kind: "cookie", name, path: r.string(c.path, [...at, "httpCookie", "path"]), ttlMs: r.duration(c.ttl, [...at, "httpCookie", "ttl"]) };
  } else if (ch.useSourceIp !== undefined) {
    if (r.boolean(ch.useSourceIp, [...at, "useSourceIp"]) === true) key = { kind: "sourceIp" };
    else r.error([...at, "useSourceIp"], "must be true when it is the hash key");
  } else {
    const name = r.string(ch.httpQueryParameterName, [...at, "httpQueryParameterName"], true);
    key = name === undefined ? undefined : { kind: "query", name };
  }
  if (!key) return undefined;
  if (ch.ringHash !== undefined && ch.maglev !== undefined) r.error(at, "only one of ringHash or maglev may be set");
  if (ch.maglev !== undefined) {
    const m = r.object(ch.maglev, [...at, "maglev"], ["tableSize"]);
    const tableSize = (m && r.integer(m.tableSize, [...at, "maglev", "tableSize"], 1, 5_000_010)) ?? 65537;
    if (!isPrime(tableSize)) r.error([...at, "maglev", "tableSize"], `must be a prime number, got ${tableSize}`);
    return { kind: "MAGLEV", key, tableSize };
  }
  const rh = r.object(ch.ringHash, [...at, "ringHash"], ["minimumRingSize"]);
  const minimumRingSize = (rh && r.integer(rh.minimumRingSize, [...at, "ringHash", "minimumRingSize"], 1, 8_388_608)) ?? r.integer(ch.minimumRingSize, [...at, "minimumRingSize"], 1, 8_388_608) ?? 1024;
  return { kind: "RING_HASH", key, minimumRingSize };
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** Istio applies a connection-pool value only when it is > 0 (0 cannot be told from unset). */
function positive(r: FieldReader, value: unknown, path: FieldPath): number | undefined {
  const n = r.integer(value, path, 0, UNLIMITED);
  return n === undefined || n === 0 ? undefined : n;
}

function readConnectionPool(r: FieldReader, value: unknown, path: FieldPath): ConnectionPoolModel | undefined {
  const cp = r.object(value, path, ["tcp", "http"]);
  if (!cp) return undefined;
  const out: ConnectionPoolModel = {};
  const tcp = r.object(cp.tcp, [...path, "tcp"], ["maxConnections", "connectTimeout", "idleTimeout", "tcpKeepalive", "maxConnectionDuration"]);
  if (tcp) {
    const at = [...path, "tcp"];
    out.maxConnections = positive(r, tcp.maxConnections, [...at, "maxConnections"]);
    out.connectTimeoutMs = r.duration(tcp.connectTimeout, [...at, "connectTimeout"], 1);
    out.idleTimeoutMs = r.duration(tcp.idleTimeout, [...at, "idleTimeout"]);
    out.maxConnectionDurationMs = r.duration(tcp.maxConnectionDuration, [...at, "maxConnectionDuration"], 1);
    const ka = r.object(tcp.tcpKeepalive, [...at, "tcpKeepalive"], ["time"], {
      probes: "only tcpKeepalive.time is supported (Node.js sets the idle time; probes and interval come from the OS)",
      interval: "only tcpKeepalive.time is supported (Node.js sets the idle time; probes and interval come from the OS)",
    });
    if (ka) out.tcpKeepalive = { timeMs: r.duration(ka.time, [...at, "tcpKeepalive", "time"], 1000) };
  }
  const http = r.object(cp.http, [...path, "http"], ["http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries", "idleTimeout", "h2UpgradePolicy", "useClientProtocol"], {
    maxConcurrentStreams: "a stream limit per HTTP/2 upstream session (http2MaxRequests limits the cluster)",
  });
  if (http) {
    const at = [...path, "http"];
    out.maxPendingRequests = positive(r, http.http1MaxPendingRequests, [...at, "http1MaxPendingRequests"]);
    out.maxRequests = positive(r, http.http2MaxRequests, [...at, "http2MaxRequests"]);
    out.maxRequestsPerConnection = positive(r, http.maxRequestsPerConnection, [...at, "maxRequestsPerConnection"]);
    out.maxRetries = positive(r, http.maxRetries, [...at, "maxRetries"]);
    out.httpIdleTimeoutMs = r.duration(http.idleTimeout, [...at, "idleTimeout"]);
    r.oneOf(http.h2UpgradePolicy, [...at, "h2UpgradePolicy"], ["DEFAULT", "DO_NOT_UPGRADE"], ["UPGRADE"]);
    // DEFAULT follows the mesh's h2UpgradePolicy, DO_NOT_UPGRADE by default: the port's protocol decides.
    if (r.boolean(http.useClientProtocol, [...at, "useClientProtocol"]) === true) {
      r.error([...at, "useClientProtocol"], "not supported yet: the upstream protocol follows the port's protocol (HTTP2/GRPC ports: HTTP/2)");
    }
  }
  return out;
}

function readOutlierDetection(r: FieldReader, value: unknown, path: FieldPath): OutlierDetectionModel | undefined {
  const od = r.object(value, path, [
    "consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors",
    "interval", "baseEjectionTime", "maxEjectionPercent", "minHealthPercent", "consecutiveErrors",
  ]);
  if (!od) return undefined;
  const count = (k: string): number | undefined => r.integer(od[k], [...path, k], 0, UNLIMITED);
  const percent = (k: string): number | undefined => r.integer(od[k], [...path, k], 0, 100);
  return {
    // consecutiveErrors is the deprecated name of consecutiveGatewayErrors' predecessor (5xx).
    consecutive5xxErrors: count("consecutive5xxErrors") ?? count("consecutiveErrors"),
    consecutiveGatewayErrors: count("consecutiveGatewayErrors"),
    consecutiveLocalOriginFailures: count("consecutiveLocalOriginFailures"),
    splitExternalLocalOriginErrors: r.boolean(od.splitExternalLocalOriginErrors, [...path, "splitExternalLocalOriginErrors"]),
    intervalMs: r.duration(od.interval, [...path, "interval"], 1),
    baseEjectionTimeMs: r.duration(od.baseEjectionTime, [...path, "baseEjectionTime"], 1),
    maxEjectionPercent: percent("maxEjectionPercent"),
    minHealthPercent: percent("minHealthPercent"),
  };
}

/**
 * The components in force for `port` of one policy level: a matching
 * port-level entry replaces the level's components wholesale (unset ones fall
 * back to defaults, as Istio documents: "port level policies do not inherit").
 */
function atPort(policy: TrafficPolicyModel | undefined, port: number): Omit<TrafficPolicyModel, "portLevelSettings"> {
  if (!policy) return {};
  const level = policy.portLevelSettings.find((p) => p.port === port);
  const src = level ? level.policy : policy;
  return { loadBalancer: src.loadBalancer, connectionPool: src.connectionPool, outlierDetection: src.outlierDetection, tls: src.tls };
}

/** Istio's MergeTrafficPolicy: the rule's policy at this port, with the subset's components (and its port level) overriding. */
export function clusterPolicy(rule: TrafficPolicyModel | undefined, subset: TrafficPolicyModel | undefined, port: number): ClusterPolicy {
  const merged = atPort(rule, port);
  if (subset) {
    const s = atPort(subset, port);
    if (s.loadBalancer) merged.loadBalancer = s.loadBalancer;
    if (s.connectionPool) merged.connectionPool = s.connectionPool;
    if (s.outlierDetection) merged.outlierDetection = s.outlierDetection;
    if (s.tls) merged.tls = s.tls;
  }
  const cp = merged.connectionPool ?? {};
  const d = DEFAULT_CLUSTER_POLICY.limits;
  const od = merged.outlierDetection;
  return {
    loadBalancer: merged.loadBalancer ?? DEFAULT_CLUSTER_POLICY.loadBalancer,
    limits: {
      maxConnections: cp.maxConnections ?? d.maxConnections,
      maxPendingRequests: cp.maxPendingRequests ?? d.maxPendingRequests,
      maxRequests: cp.maxRequests ?? d.maxRequests,
      maxRetries: cp.maxRetries ?? d.maxRetries,
      maxRequestsPerConnection: cp.maxRequestsPerConnection ?? d.maxRequestsPerConnection,
      connectTimeoutMs: cp.connectTimeoutMs ?? d.connectTimeoutMs,
      maxConnectionDurationMs: cp.maxConnectionDurationMs ?? d.maxConnectionDurationMs,
      idleTimeoutMs: cp.httpIdleTimeoutMs ?? cp.idleTimeoutMs ?? d.idleTimeoutMs,
      tcpKeepalive: cp.tcpKeepalive?.timeMs !== undefined ? { timeMs: cp.tcpKeepalive.timeMs } : undefined,
    },
    tls: merged.tls?.mode === "SIMPLE" || merged.tls?.mode === "MUTUAL" || merged.tls?.mode === "ISTIO_MUTUAL" ? merged.tls : undefined,
    outlierDetection: od && {
      consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
      consecutiveGatewayErrors: od.consecutiveGatewayErrors ?? 0,
      consecutiveLocalOriginFailures: od.consecutiveLocalOriginFailures ?? 5,
      splitExternalLocalOriginErrors: od.splitExternalLocalOriginErrors ?? false,
      intervalMs: od.intervalMs ?? 10_000,
      baseEjectionTimeMs: od.baseEjectionTimeMs ?? 30_000,
      maxEjectionPercent: od.maxEjectionPercent ?? 10,
      minHealthPercent: od.minHealthPercent ?? 0,
    },
  };
}
