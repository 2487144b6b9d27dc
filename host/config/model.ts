// The validated config model: Istio resources with host names resolved, defaults
// applied and every field checked. compile.ts turns it into a snapshot.

import type { Location } from "./diagnostics.js";
import type { GatewayModel } from "./gateway.js";
import type { OutboundTrafficPolicy, ResourceMeta, TlsSettings } from "./resource.js";
import type { SidecarModel } from "./sidecar.js";
import type { AuthorizationPolicyModel, PeerAuthenticationModel } from "./security-policy.js";
import type { WasmPluginModel } from "./wasm-plugin.js";

export type { OutboundTrafficPolicy, ResourceMeta, TlsSettings } from "./resource.js";
import type { TrafficPolicyModel } from "./traffic-policy.js";
import type { StringMatch, UriMatch, Condition } from "../core/route-table.js";

/**
 * h1: instio's own HTTP/1.1 server on node:net (the default); uws: uWebSockets.js (HTTP/1.1);
 * node: node:http (HTTP/1.1); h2c: node:http2, HTTP/2 with prior knowledge. With `tls`,
 * node:http2 serves HTTP/2 and HTTP/1.1 by ALPN.
 */
export type ListenerEngine = "h1" | "uws" | "node" | "h2c";

/** The HTTP connection manager's limits and timeouts, for every HTTP listener (Envoy's HCM and HTTP protocol options). */
export interface HttpSettings {
  /** max_request_headers_kb (Envoy: 60 KiB), in bytes. */
  maxRequestHeadersBytes: number;
  /** max_headers_count (Envoy: 100). */
  maxHeadersCount: number;
  /** request_headers_timeout: from a request's first byte to the end of its headers; 0 disables. */
  requestHeadersTimeoutMs: number;
  /** idle_timeout: a connection without requests is closed (Istio: 1 h). */
  idleTimeoutMs: number;
  /** stream_idle_timeout: a request with no bytes either way for this long ends (Envoy: 5 min; 0 disables). */
  streamIdleTimeoutMs: number;
}

export interface ListenerSettings {
  address: string;
  port: number;
  engine: ListenerEngine;
  /** TLS termination: certificate files, re-read when they change; more by SNI. */
  tls: TlsSettings | undefined;
  /**
   * Transparent capture (Istio's 15001 and 15006 behind `instio iptables`): each connection's original destination
   * decides its route (outbound) or the application port (inbound); plaintext TCP is relayed to it.
   */
  capture: boolean;
}


export interface Settings {
  /** The proxy's own namespace: short names resolve against each resource's namespace, alt domains against this one. */
  namespace: string;
  /** MeshConfig rootNamespace: its PeerAuthentication and AuthorizationPolicies without a selector apply mesh-wide. */
  rootNamespace: string;
  /** The proxy's workload labels, for `match.sourceLabels`. */
  labels: Record<string, string>;
  outboundTrafficPolicy: OutboundTrafficPolicy;
  outbound: ListenerSettings;
  http: HttpSettings;
  /** Passthrough to loopback destinations (never to the proxy's own ports, whatever this says). */
  passthrough: { allowLoopback: boolean };
  /**
   * Present when an application port is configured, or capture: inbound traffic is forwarded to the app (with
   * capture, to the address and port each connection was going to; appPort is then 0).
   */
  inbound: (ListenerSettings & { appAddress: string; appPort: number }) | undefined;
  admin: { address: string; port: number };
  /** Workload identity for Istio's metric labels (source_* outbound, destination_* inbound). */
  workload: { name: string; cluster: string };
  /** Istio's agent ports: merged metrics (15020), Envoy metrics (15090), health (15021); 0 picks a free port; undefined when disabled. */
  agent: { address: string; statusPort: number; prometheusPort: number; healthPort: number; appMetrics: { port: number; path: string } | undefined } | undefined;
  /** Off unless a path is given ("/dev/stdout" as Istio's accessLogFile). */
  accessLog: { path: string; format: "TEXT" | "JSON" } | undefined;
  /** SIGTERM handling, as Istio's terminationDrainDuration and EXIT_ON_ZERO_ACTIVE_CONNECTIONS. */
  drain: { durationMs: number; exitOnZeroActiveConnections: boolean };
  /**
   * Serving threads (Envoy's --concurrency, Istio's ProxyConfig.concurrency): each binds every listener with
   * SO_REUSEPORT and serves with its own route core and pools; 1 serves from the main thread alone.
   */
  concurrency: number;
  /** Resolver for DNS ServiceEntries: DNS servers ("ip" or "ip:port"; unset = the system's getaddrinfo) and how often names are re-resolved. */
  dns: { servers: string[] | undefined; refreshRateMs: number };
  /** Active HTTP health checks per service host (Istio leaves this to Kubernetes probes; instio can do it itself). */
  healthChecks: HealthCheckSettings[];
  source: Location | undefined;
}

export interface HealthCheckSettings {
  /** Service host as the ServiceEntry names it (short names resolve against the proxy's namespace). */
  host: string;
  /** Only this service port's clusters; all ports when unset. */
  port: number | undefined;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Failed checks in a row that make a healthy endpoint unhealthy, and passed ones that bring it back. */
  unhealthyThreshold: number;
  healthyThreshold: number;
}


export interface ServicePort {
  number: number;
  name: string;
  /** Upper-case Istio protocol; "" when unset (treated as HTTP/1.1). */
  protocol: string;
  targetPort: number | undefined;
}

export interface WorkloadEndpoint {
  address: string;
  /** Port overrides by service port name. */
  ports: Record<string, number>;
  labels: Record<string, string>;
  /** The workload's service account (Kubernetes pods; WorkloadEntry serviceAccount): its SPIFFE identity. */
  serviceAccount?: string;
  /** WorkloadEntry weight, the endpoint's load-balancing weight (unset and 0 mean 1, as in Istio). */
  weight?: number;
}

export interface ServiceModel extends ResourceMeta {
  /** Hosts as written (ServiceEntry hosts are not namespace-qualified by Istio). */
  hosts: string[];
  addresses: string[];
  ports: ServicePort[];
  /** DNS / DNS_ROUND_ROBIN: endpoint addresses (or, without endpoints, the hosts) are names resolved periodically. */
  resolution: "STATIC" | "NONE" | "DNS" | "DNS_ROUND_ROBIN";
  /** MESH_INTERNAL: the service's workloads are in the mesh (Kubernetes services; auto mTLS applies). ServiceEntry's default is MESH_EXTERNAL. */
  location: "MESH_EXTERNAL" | "MESH_INTERNAL";
  endpoints: WorkloadEndpoint[];
  /** workloadSelector labels: endpoints come from matching WorkloadEntries in the same namespace. */
  workloadSelector: Record<string, string> | undefined;
}

export interface WorkloadEntryModel extends ResourceMeta {
  endpoint: WorkloadEndpoint;
}

/** One direction of Istio's Headers: set overwrites, add appends (comma-joined), remove drops. */
export interface HeaderOperations {
  set: [string, string][];
  add: [string, string][];
  remove: string[];
}

/** Istio's `headers` on a route or a destination. A set (or add) of host/:authority is a host rewrite. */
export interface HeadersModel {
  request: HeaderOperations | undefined;
  response: HeaderOperations | undefined;
  hostRewrite: string | undefined;
}

export interface DestinationModel {
  /** Fully qualified (short names resolved against the VirtualService's namespace). */
  host: string;
  subset: string | undefined;
  port: number | undefined;
  weight: number;
  headers: HeadersModel | undefined;
  source: Location | undefined;
}

export interface MatchModel {
  name: string | undefined;
  uri: UriMatch | undefined;
  method: StringMatch | undefined;
  authority: StringMatch | undefined;
  scheme: StringMatch | undefined;
  conditions: Condition[];
  port: number | undefined;
  /** Build-time selectors (Istio applies them when generating a proxy's config, not per request). */
  sourceLabels?: Record<string, string>;
  sourceNamespace?: string;
}

/** What a route does instead of forwarding. */
export type RouteActionModel =
  | { kind: "forward" }
  | { kind: "redirect"; uri: string | undefined; authority: string | undefined; port: number | undefined; derivePort: "FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT" | undefined; scheme: string | undefined; status: number }
  | { kind: "direct"; status: number; body: Buffer };

/** Istio's HTTPFaultInjection; percentages are 0-100 (unset: never, as Istio). */
export interface FaultModel {
  delay: { ms: number; percent: number } | undefined;
  abort: { httpStatus: number | undefined; grpcStatus: number | undefined; percent: number } | undefined;
}

/** What a retry policy retries on (Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on values). */
export interface RetryConditions {
  fiveXx: boolean;
  gatewayError: boolean;
  reset: boolean;
  connectFailure: boolean;
  retriable4xx: boolean;
  statusCodes: number[];
  /** grpc-status values, read from response headers only (as Envoy). */
  grpcStatuses: number[];
}

/** Istio's HTTPRetry resolved: total attempts including the first, per-try timeout (0: none). */
export interface RetryPolicyModel {
  attempts: number;
  perTryTimeoutMs: number;
  on: RetryConditions;
  /** Envoy's backoff base interval (Istio's `backoff`, default 25 ms); the cap is 10 times it. */
  backoffMs: number;
  /** Envoy's previous_hosts predicate (retryIgnorePreviousHosts, default true): retries prefer hosts not tried. */
  avoidPreviousHosts: boolean;
}

/** Istio's CorsPolicy (Envoy's CORS filter, per route). */
export interface CorsModel {
  allowOrigins: StringMatch[];
  allowMethods: string;
  allowHeaders: string;
  exposeHeaders: string;
  /** Seconds; undefined when unset. */
  maxAge: number | undefined;
  allowCredentials: boolean;
  /** FORWARD (default): preflights from origins that do not match go upstream; IGNORE: answered here without CORS headers. */
  forwardUnmatchedPreflights: boolean;
}

export interface HttpRouteModel {
  name: string | undefined;
  /** Empty: the route matches every request. */
  matches: MatchModel[];
  destinations: DestinationModel[];
  /** Route timeout in ms covering all attempts; 0 = none (Istio's default). */
  timeoutMs: number;
  headers: HeadersModel | undefined;
  action: RouteActionModel;
  fault: FaultModel | undefined;
  cors: CorsModel | undefined;
  /** undefined: Istio's default policy applies. */
  retries: RetryPolicyModel | undefined;
  /** mirror / mirrors: shadow destinations and the percentage of requests copied to each. */
  mirrors: { destination: DestinationModel; percent: number }[];
  /** The delegate VirtualService whose routes replace this one (a root route has no destinations). */
  delegate?: { name: string; namespace: string };
  /** rewrite.uri (Envoy prefix_rewrite), rewrite.uriRegexRewrite (regex_rewrite) and rewrite.authority. */
  rewrite: { uri: string | undefined; authority: string | undefined; uriRegex: RegexRewriteModel | undefined } | undefined;
  source: Location;
}

export interface VirtualServiceModel extends ResourceMeta {
  hosts: string[];
  /** "mesh" and/or "namespace/name" of Gateway resources. */
  gateways: string[];
  http: HttpRouteModel[];
  tcp: TcpRouteModel[];
  /** TLS routes: TCP routes chosen by the SNI of the client's TLS handshake (TLS passthrough). */
  tls: TcpRouteModel[];
}

export interface TcpRouteModel {
  matches: { port: number | undefined; sniHosts?: string[]; sourceLabels?: Record<string, string>; sourceNamespace?: string }[];
  destinations: DestinationModel[];
  source: Location;
}

export interface SubsetModel {
  name: string;
  labels: Record<string, string>;
  trafficPolicy: TrafficPolicyModel | undefined;
}

export interface DestinationRuleModel extends ResourceMeta {
  host: string;
  subsets: SubsetModel[];
  trafficPolicy: TrafficPolicyModel | undefined;
}

export interface ConfigModel {
  settings: Settings;
  services: ServiceModel[];
  workloadEntries: WorkloadEntryModel[];
  virtualServices: VirtualServiceModel[];
  destinationRules: DestinationRuleModel[];
  sidecars: SidecarModel[];
  gateways: GatewayModel[];
  peerAuthentications: PeerAuthenticationModel[];
  authorizationPolicies: AuthorizationPolicyModel[];
  wasmPlugins: WasmPluginModel[];
}

/** rewrite.uriRegexRewrite: a search pattern and RE2's rewrite template (literal text and group numbers). */
export interface RegexRewriteModel {
  match: string;
  rewrite: (string | number)[];
}
