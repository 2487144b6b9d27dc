// Compiled routes → Envoy v3 RouteConfiguration, as istiod writes them
// (pilot/pkg/networking/core/httproute.go, route/route.go): one route per match
// block, weighted clusters, Istio's retry and timeout forms, faults and CORS as
// per-filter config.

import { isHashed, type CompiledConfig, type RouteInfo } from "../../config/compile.js";
import type { HeaderOperations, RetryPolicyModel } from "../../config/model.js";
import type { Condition, MatchEntry, StringMatch, VirtualHostTable } from "../../core/route-table.js";
import { duration, packAny, TYPE_PREFIX } from "../protos.js";

export type Json = Record<string, unknown>;

/** Who reads the config: an Envoy-like sidecar, or a proxyless gRPC client (Istio's grpcgen). */
export type Generator = "sidecar" | "grpc";

export const FAULT_FILTER = "envoy.filters.http.fault";
export const CORS_FILTER = "envoy.filters.http.cors";
export const ROUTER_FILTER = "envoy.filters.http.router";
export const FAULT_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.fault.v3.HTTPFault`;
export const CORS_POLICY_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.cors.v3.CorsPolicy`;
const PREVIOUS_HOSTS_TYPE = `${TYPE_PREFIX}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`;

/** A route to a cluster that does not exist: Envoy answers 503 NC, as istiod's missing destinations do. */
export const MISSING_CLUSTER = "instio.cluster_not_found";

/** Istio percentages (0-100, fractional) as Envoy's FractionalPercent per million. */
export function millionths(percent: number): Json {
  return { numerator: Math.round(percent * 10_000), denominator: "MILLION" };
}

export function stringMatcher(m: StringMatch, ignoreCase = false): Json {
  const base = m.kind === "exact" ? { exact: m.value } : m.kind === "prefix" ? { prefix: m.value } : { safe_regex: { regex: m.value } };
  return ignoreCase ? { ...base, ignore_case: true } : base;
}

/** Where each route's destinations start in the config's global destination list. */
function destinationStarts(config: CompiledConfig): number[] {
  const starts: number[] = [];
  let next = 0;
  for (const r of config.table.routes) {
    starts.push(next);
    next += r.destinations.length;
  }
  return starts;
}

export class RouteGenerator {
  private readonly starts: number[];

  constructor(
    private readonly config: CompiledConfig,
    private readonly generator: Generator,
  ) {
    this.starts = destinationStarts(config);
  }

  /** A virtual host of the table, with the domains this generator's clients send. */
  virtualHost(index: number): Json {
    const vh = this.config.table.virtualHosts[index]!;
    return { name: vh.name, domains: this.domains(vh), routes: this.routesOf(vh) };
  }

  /**
   * Sidecars match hosts without the port (ignore_port_in_host_matching), so a
   * vhost lists each name once; proxyless gRPC matches the target with its port.
   */
  private domains(vh: VirtualHostTable): string[] {
    if (this.generator === "grpc") return vh.domains;
    return [...new Set(vh.domains.map((d) => d.replace(/:\d+$/, "")))];
  }

  private routesOf(vh: VirtualHostTable): Json[] {
    const out: Json[] = [];
    for (let i = vh.entryStart; i < vh.entryStart + vh.entryCount; i++) out.push(this.route(i));
    return out;
  }

  private route(entryIndex: number): Json {
    const entry = this.config.table.entries[entryIndex]!;
    const info = this.config.routes[entry.route]!;
    const route: Json = { name: this.config.entries[entryIndex]!.name, match: this.match(entry) };
    const action = info.action;
    if (action.kind === "redirect") route.redirect = redirect(action);
    else if (action.kind === "direct") route.direct_response = { status: action.status, body: action.body.length > 0 ? { inline_bytes: action.body } : undefined };
    else route.route = this.routeAction(entry.route, info);
    const headers = info.headers;
    if (headers?.request) Object.assign(route, headerEdits(headers.request, "request"));
    if (headers?.response) Object.assign(route, headerEdits(headers.response, "response"));
    const perFilter: Json = {};
    if (info.fault) perFilter[FAULT_FILTER] = packAny(FAULT_TYPE, faultConfig(info.fault));
    if (info.cors && this.generator === "sidecar") perFilter[CORS_FILTER] = packAny(CORS_POLICY_TYPE, this.cors(info.cors));
    if (Object.keys(perFilter).length > 0) route.typed_per_filter_config = perFilter;
    return route;
  }

  private match(entry: MatchEntry): Json {
    const m: Json = {};
    const uri = entry.uri ?? { kind: "prefix", value: "/", ignoreCase: false };
    if (uri.kind === "exact") m.path = uri.value;
    else if (uri.kind === "prefix") m.prefix = uri.value;
    else m.safe_regex = { regex: uri.value };
    if (uri.ignoreCase) m.case_sensitive = { value: false };
    const headers: Json[] = [];
    const pseudo = (name: string, s: StringMatch | undefined): void => {
      if (s) headers.push({ name, string_match: stringMatcher(s) });
    };
    pseudo(":method", entry.method);
    pseudo(":authority", entry.authority);
    pseudo(":scheme", entry.scheme);
    const query: Json[] = [];
    for (const c of entry.conditions) {
      if (c.source === "header") headers.push(headerMatcher(c));
      else query.push(c.kind === "present" ? { name: c.name, present_match: true } : { name: c.name, string_match: stringMatcher(c as StringMatch) });
    }
    if (headers.length > 0) m.headers = headers;
    if (query.length > 0) m.query_parameters = query;
    return m;
  }

  private clusterName(index: number): string {
    return index < 0 ? MISSING_CLUSTER : this.config.clusters[index]!.name;
  }

  private routeAction(routeIndex: number, info: RouteInfo): Json {
    const destinations = this.config.table.routes[routeIndex]!.destinations;
    const start = this.starts[routeIndex]!;
    const action: Json = {};
    const edits = destinations.map((_, i) => this.config.destinations[start + i]?.headers);
    if (destinations.length === 1 && !edits[0]) {
      action.cluster = this.clusterName(destinations[0]!.cluster);
    } else {
      action.weighted_clusters = {
        clusters: destinations.map((d, i) => {
          const edit = edits[i];
          return { name: this.clusterName(d.cluster), weight: { value: d.weight }, ...(edit?.request ? headerEdits(edit.request, "request") : {}), ...(edit?.response ? headerEdits(edit.response, "response") : {}), ...(edit?.hostRewrite ? { host_rewrite_literal: edit.hostRewrite } : {}) };
        }),
      };
    }
    // Istio disables Envoy's 15 s default: no timeout unless the VirtualService sets one.
    if (this.generator === "grpc") {
      if (info.timeoutMs > 0) action.max_stream_duration = { max_stream_duration: duration(info.timeoutMs) };
    } else {
      action.timeout = duration(info.timeoutMs);
      action.max_stream_duration = { grpc_timeout_header_max: duration(info.timeoutMs) };
    }
    const retry = this.retryPolicy(info.retry);
    if (retry) action.retry_policy = retry;
    const hash = this.hashPolicy(destinations.map((d) => d.cluster));
    if (hash) action.hash_policy = [hash];
    if (info.mirrors.length > 0) action.request_mirror_policies = info.mirrors.map((m) => ({ cluster: this.clusterName(m.cluster), runtime_fraction: { default_value: millionths(m.percent) } }));
    const rewrite = info.rewrite;
    if (rewrite?.uri !== undefined) action.prefix_rewrite = rewrite.uri;
    if (rewrite?.uriRegex) action.regex_rewrite = { pattern: { regex: this.config.table.hostRegexes![rewrite.uriRegex.program]!.pattern }, substitution: substitution(rewrite.uriRegex.rewrite) };
    const authority = rewrite?.authority ?? info.headers?.hostRewrite;
    if (authority !== undefined) action.host_rewrite_literal = authority;
    if (this.generator === "sidecar") action.upgrade_configs = [{ upgrade_type: "websocket" }];
    return action;
  }

  /** Istio's HTTPRetry as Envoy's retry_policy (route/retry/retry.go); none when retries are off. */
  private retryPolicy(retry: RetryPolicyModel): Json | undefined {
    const retries = retry.attempts - 1;
    if (retries < 1) return undefined;
    const on = retryOn(retry);
    if (on === "") return undefined;
    const policy: Json = {
      retry_on: on,
      num_retries: { value: retries },
      retry_back_off: { base_interval: duration(retry.backoffMs), max_interval: duration(retry.backoffMs * 10) },
    };
    if (retry.perTryTimeoutMs > 0) policy.per_try_timeout = duration(retry.perTryTimeoutMs);
    if (retry.on.statusCodes.length > 0) policy.retriable_status_codes = retry.on.statusCodes;
    // compile.ts turns the predicate off for consistent-hash routes, as Istio does.
    if (retry.avoidPreviousHosts && this.generator === "sidecar") {
      policy.retry_host_predicate = [{ name: "envoy.retry_host_predicates.previous_hosts", typed_config: packAny(PREVIOUS_HOSTS_TYPE, {}) }];
      policy.host_selection_retry_max_attempts = 5;
    }
    return policy;
  }

  /** A consistent-hash destination's key, as the route's hash_policy (Envoy hashes per route, Istio per destination). */
  private hashPolicy(clusters: number[]): Json | undefined {
    for (const c of clusters) {
      const lb = this.config.clusters[c]?.policy.loadBalancer;
      if (!lb || !isHashed(lb)) continue;
      const key = lb.key;
      switch (key.kind) {
        case "header":
          return { header: { header_name: key.name } };
        case "cookie":
          return { cookie: { name: key.name, path: key.path, ttl: key.ttlMs !== undefined ? duration(key.ttlMs) : undefined } };
        case "query":
          return { query_parameter: { name: key.name } };
        case "sourceIp":
          return { connection_properties: { source_ip: true } };
      }
    }
    return undefined;
  }

  private cors(cors: NonNullable<RouteInfo["cors"]>): Json {
    return {
      allow_origin_string_match: cors.allowOrigins.map((o) => stringMatcher(o)),
      allow_methods: cors.allowMethods || undefined,
      allow_headers: cors.allowHeaders || undefined,
      expose_headers: cors.exposeHeaders || undefined,
      max_age: cors.maxAge !== undefined ? String(cors.maxAge) : undefined,
      allow_credentials: cors.allowCredentials ? { value: true } : undefined,
      forward_not_matching_preflights: { value: cors.forwardUnmatchedPreflights },
    };
  }
}

function headerMatcher(c: Condition): Json {
  const m: Json = { name: c.name };
  if (c.kind === "present") m.present_match = true;
  else m.string_match = stringMatcher(c as StringMatch);
  if (c.invert) {
    // withoutHeaders: Istio inverts the match and counts a missing header as empty.
    m.invert_match = true;
    if (c.kind !== "present") m.treat_missing_header_as_empty = true;
  }
  return m;
}

/** Envoy's retry_on for Istio's conditions; gRPC codes by Envoy's names. */
export function retryOn(retry: RetryPolicyModel): string {
  const on = retry.on;
  const parts: string[] = [];
  if (on.fiveXx) parts.push("5xx");
  if (on.gatewayError) parts.push("gateway-error");
  if (on.reset) parts.push("reset");
  if (on.connectFailure) parts.push("connect-failure", "refused-stream");
  if (on.retriable4xx) parts.push("retriable-4xx");
  for (const code of on.grpcStatuses) {
    const name = GRPC_RETRY_NAMES[code];
    if (name) parts.push(name);
  }
  if (on.statusCodes.length > 0) parts.push("retriable-status-codes");
  return parts.join(",");
}

/** x-envoy-retry-grpc-on names by gRPC status code. */
export const GRPC_RETRY_NAMES: Readonly<Record<number, string>> = { 1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted", 13: "internal", 14: "unavailable" };

function headerEdits(ops: HeaderOperations, direction: "request" | "response"): Json {
  const add = [
    ...ops.set.map(([key, value]) => ({ header: { key, value }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" })),
    ...ops.add.map(([key, value]) => ({ header: { key, value }, append_action: "APPEND_IF_EXISTS_OR_ADD" })),
  ];
  const out: Json = {};
  if (add.length > 0) out[`${direction}_headers_to_add`] = add;
  if (ops.remove.length > 0) out[`${direction}_headers_to_remove`] = ops.remove;
  return out;
}

/** An RE2 rewrite template back in Envoy's form: literal text, and \N for group N. */
function substitution(template: (string | number)[]): string {
  return template.map((t) => (typeof t === "number" ? `\\${t}` : t.replace(/\\/g, "\\\\"))).join("");
}

const REDIRECT_CODES: Record<number, string> = { 301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT" };

function redirect(action: Extract<RouteInfo["action"], { kind: "redirect" }>): Json {
  return {
    host_redirect: action.authority,
    path_redirect: action.uri,
    // derivePort FROM_PROTOCOL_DEFAULT: the scheme's own port; FROM_REQUEST_PORT is Envoy's default (the port stays).
    port_redirect: action.port ?? (action.derivePort === "FROM_PROTOCOL_DEFAULT" ? (action.scheme === "https" ? 443 : 80) : undefined),
    scheme_redirect: action.scheme,
    response_code: REDIRECT_CODES[action.status] ?? "MOVED_PERMANENTLY",
  };
}

export function faultConfig(fault: NonNullable<RouteInfo["fault"]>): Json {
  const out: Json = {};
  if (fault.delay) out.delay = { fixed_delay: duration(fault.delay.ms), percentage: millionths(fault.delay.percent) };
  if (fault.abort) {
    const a = fault.abort;
    out.abort = { ...(a.grpcStatus !== undefined ? { grpc_status: a.grpcStatus } : { http_status: a.httpStatus }), percentage: millionths(a.percent) };
  }
  return out;
}
