// Envoy v3 RouteConfiguration → instio's routes: virtual hosts and domains,
// matches, weighted clusters, timeouts, retries, hash policies, mirrors,
// rewrites, redirects, direct responses, header edits, and the fault and CORS
// per-filter configs. The inverse of ../generate/routes.ts, for any Envoy
// config in the subset instio serves; clusters stay names until the config is
// assembled (assemble.ts), where they become indices.

import { NO_RETRY } from "../../config/compile.js";
import { compilePattern, parseRewriteTemplate, type RegexMode } from "../../core/regex/program.js";
import type { CorsModel, FaultModel, HeaderOperations, HeadersModel, RegexRewriteModel, RetryConditions, RetryPolicyModel, RouteActionModel } from "../../config/model.js";
import type { HashKeySource } from "../../config/traffic-policy.js";
import { lowerAscii, type Condition, type StringMatch, type UriMatch } from "../../core/route-table.js";
import { CORS_FILTER, CORS_POLICY_TYPE, FAULT_FILTER, FAULT_TYPE, GRPC_RETRY_NAMES } from "../generate/routes.js";
import { TYPE_PREFIX, type AnyMessage } from "../protos.js";
import { MessageReader, Unsupported } from "./reader.js";

export const ROUTE_CONFIGURATION_TYPE = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
const PREVIOUS_HOSTS_TYPE = `${TYPE_PREFIX}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`;
/** Envoy's route timeout when a route sets none (Istio always sets one). */
const ENVOY_DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

export interface XdsDestination {
  cluster: string;
  weight: number;
  headers: HeadersModel | undefined;
}

export interface XdsRoute {
  name: string;
  uri: UriMatch;
  method: StringMatch | undefined;
  authority: StringMatch | undefined;
  scheme: StringMatch | undefined;
  conditions: Condition[];
  action: RouteActionModel;
  destinations: XdsDestination[];
  timeoutMs: number;
  headers: HeadersModel | undefined;
  retry: RetryPolicyModel;
  hash: HashKeySource | undefined;
  mirrors: { cluster: string; percent: number }[];
  rewrite: { uri: string | undefined; authority: string | undefined; uriRegex: RegexRewriteModel | undefined } | undefined;
  fault: FaultModel | undefined;
  cors: CorsModel | undefined;
}

export interface XdsVirtualHost {
  name: string;
  /** Lower-case, as written (without ports). */
  domains: string[];
  routes: XdsRoute[];
}

export interface XdsRouteConfiguration {
  name: string;
  virtualHosts: XdsVirtualHost[];
}


export function readRouteConfiguration(r: MessageReader): XdsRouteConfiguration {
  const name = r.str("name") ?? "";
  const virtualHosts = r.list("virtual_hosts").map(readVirtualHost);
  // Settings of the route table itself that change nothing instio does: it validates nothing lazily
  // (validate_clusters), matches hosts without the port (ignore_port_in_host_matching; see assemble.ts).
  r.accept("validate_clusters", "ignore_port_in_host_matching", "max_direct_response_body_size_bytes");
  r.done();
  return { name, virtualHosts };
}

function readVirtualHost(r: MessageReader): XdsVirtualHost {
  const name = r.str("name") ?? "";
  const domains = r.strings("domains").map(lowerAscii);
  for (const d of domains) {
    const star = d.indexOf("*");
    if (star > 0 || (star === 0 && d !== "*" && !d.startsWith("*.")) || d.indexOf("*", star + 1) >= 0) {
      r.fail("domains", `"${d}": only "*" and "*.suffix" wildcards are supported`);
    }
  }
  const routes = r.list("routes").map(readRoute);
  r.accept("include_request_attempt_count", "include_attempt_count_in_response");
  r.done();
  return { name, domains, routes };
}

function readRoute(r: MessageReader): XdsRoute {
  const name = r.str("name") ?? "";
  const match = r.obj("match");
  if (!match) r.fail("match", "a route needs a match");
  const m = readMatch(match);
  let action: RouteActionModel = { kind: "forward" };
  let forward: Partial<XdsRoute> = {};
  const routeAction = r.obj("route");
  const redirect = r.obj("redirect");
  const direct = r.obj("direct_response");
  if (routeAction) forward = readRouteAction(routeAction);
  else if (redirect) action = readRedirect(redirect);
  else if (direct) action = readDirectResponse(direct);
  else r.fail("action", "a route needs route, redirect or direct_response");
  const headers = headersOf(r);
  let fault: FaultModel | undefined;
  let cors: CorsModel | undefined;
  for (const [filter, any] of r.map("typed_per_filter_config")) {
    const at = `${r.path}.typed_per_filter_config["${filter}"]`;
    if (filter === FAULT_FILTER) fault = readFault(MessageReader.ofAny(any as AnyMessage, at, [FAULT_TYPE]));
    else if (filter === CORS_FILTER) cors = readCors(MessageReader.ofAny(any as AnyMessage, at, [CORS_POLICY_TYPE]));
    else throw new Unsupported(at, "per-filter config for a filter instio does not run");
  }
  r.accept("decorator", "metadata"); // tracing and metadata, not behaviour
  r.done();
  return {
    name,
    ...m,
    action,
    destinations: forward.destinations ?? [],
    timeoutMs: forward.timeoutMs ?? 0,
    headers,
    retry: forward.retry ?? NO_RETRY,
    hash: forward.hash,
    mirrors: forward.mirrors ?? [],
    rewrite: forward.rewrite,
    fault,
    cors,
  };
}

type MatchPart = Pick<XdsRoute, "uri" | "method" | "authority" | "scheme" | "conditions">;

function readMatch(r: MessageReader): MatchPart {
  const ignoreCase = r.has("case_sensitive") ? !r.wrapped<boolean>("case_sensitive") : false;
  let uri: UriMatch;
  if (r.has("prefix")) uri = { kind: "prefix", value: r.str("prefix")!, ignoreCase };
  else if (r.has("path")) uri = { kind: "exact", value: r.str("path")!, ignoreCase };
  else if (r.has("safe_regex")) uri = { kind: "regex", value: regexOf(r.obj("safe_regex")!).pattern, ignoreCase };
  else uri = { kind: "prefix", value: r.str("prefix") ?? "", ignoreCase };
  const out: MatchPart = { uri, method: undefined, authority: undefined, scheme: undefined, conditions: [] };
  for (const h of r.list("headers")) {
    const name = lowerAscii(h.str("name") ?? "");
    const c = readCondition(h, "header", name);
    if (name.startsWith(":")) {
      const field = name === ":method" ? "method" : name === ":authority" ? "authority" : name === ":scheme" ? "scheme" : undefined;
      if (!field || c.invert || c.kind === "present") throw h.error("name", `matching ${name} this way is not supported`);
      out[field] = { kind: c.kind as StringMatch["kind"], value: c.value };
    } else out.conditions.push(c);
  }
  for (const q of r.list("query_parameters")) out.conditions.push(readCondition(q, "query", q.str("name") ?? ""));
  r.done();
  return out;
}

/** A header or query-parameter matcher. */
function readCondition(r: MessageReader, source: Condition["source"], name: string): Condition {
  const invert = r.bool("invert_match") === true;
  const missingAsEmpty = r.bool("treat_missing_header_as_empty") === true;
  let c: Condition;
  if (r.has("present_match")) {
    if (r.bool("present_match") !== true) r.fail("present_match", "false is not supported (use invert_match)");
    c = { source, name, kind: "present", value: "", invert };
  } else {
    const s = r.obj("string_match");
    if (!s) r.fail("header_match_specifier", "only string_match and present_match are supported");
    c = { source, name, ...stringMatch(s), invert };
    // instio's inverted match counts a missing value as empty, as Istio's withoutHeaders asks Envoy to.
    if (invert && !missingAsEmpty) r.fail("invert_match", "an inverted string match needs treat_missing_header_as_empty: true");
  }
  r.done();
  return c;
}

/** Envoy's StringMatcher: exact, prefix and safe_regex; suffix and contains as the regex they mean. */
export function stringMatch(r: MessageReader): StringMatch {
  if (r.bool("ignore_case")) r.fail("ignore_case", "case-insensitive string matches are not supported");
  let m: StringMatch;
  if (r.has("exact")) m = { kind: "exact", value: r.str("exact")! };
  else if (r.has("prefix")) m = { kind: "prefix", value: r.str("prefix")! };
  else if (r.has("safe_regex")) m = { kind: "regex", value: regexOf(r.obj("safe_regex")!).pattern };
  else if (r.has("suffix")) m = { kind: "regex", value: `.*${escapeRegex(r.str("suffix")!)}` };
  else if (r.has("contains")) m = { kind: "regex", value: `.*${escapeRegex(r.str("contains")!)}.*` };
  else m = { kind: "exact", value: r.str("exact") ?? "" };
  r.done();
  return m;
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

/** A RegexMatcher's pattern, checked by the RE2 engine the route core runs (an invalid one is the resource's error). */
function regexOf(r: MessageReader, mode: RegexMode = "fullMatch"): { pattern: string; groups: number } {
  const pattern = r.str("regex") ?? "";
  r.accept("google_re2"); // deprecated, and RE2 is what instio runs
  r.done();
  try {
    return { pattern, groups: compilePattern(pattern, mode).groups };
  } catch (err) {
    throw r.error("regex", (err as Error).message);
  }
}

function readRouteAction(r: MessageReader): Partial<XdsRoute> {
  let destinations: XdsDestination[];
  if (r.has("cluster")) destinations = [{ cluster: r.str("cluster")!, weight: 1, headers: undefined }];
  else if (r.has("weighted_clusters")) destinations = readWeightedClusters(r.obj("weighted_clusters")!);
  else r.fail("cluster_specifier", "only cluster and weighted_clusters are supported");
  const timeoutMs = r.has("timeout") ? r.durationMs("timeout")! : ENVOY_DEFAULT_ROUTE_TIMEOUT_MS;
  const msd = r.obj("max_stream_duration");
  if (msd) {
    // Istio sends grpc_timeout_header_max equal to the route timeout: instio applies the route timeout to gRPC too.
    msd.accept("grpc_timeout_header_max");
    msd.done();
  }
  const retryReader = r.obj("retry_policy");
  const retry = retryReader ? readRetryPolicy(retryReader) : NO_RETRY;
  const hashPolicies = r.list("hash_policy");
  if (hashPolicies.length > 1) r.fail("hash_policy", "one hash policy per route is supported");
  const hash = hashPolicies[0] && readHashPolicy(hashPolicies[0]);
  const mirrors = r.list("request_mirror_policies").map((m) => {
    const cluster = m.str("cluster") ?? "";
    const fraction = m.obj("runtime_fraction");
    let percent = 100;
    if (fraction) {
      const d = fraction.obj("default_value");
      percent = d ? fractionalPercent(d) : 0;
      fraction.accept("runtime_key");
      fraction.done();
    }
    m.accept("trace_sampled");
    m.done();
    return { cluster, percent };
  });
  const prefix = r.str("prefix_rewrite");
  const regexRewrite = r.obj("regex_rewrite");
  let uriRegex: RegexRewriteModel | undefined;
  if (regexRewrite) {
    const { pattern, groups } = regexOf(regexRewrite.obj("pattern") ?? regexRewrite.fail("pattern", "a regex_rewrite needs a pattern"), "search");
    try {
      uriRegex = { match: pattern, rewrite: parseRewriteTemplate(regexRewrite.str("substitution") ?? "", groups) };
    } catch (err) {
      throw regexRewrite.error("substitution", (err as Error).message);
    }
    regexRewrite.done();
  }
  const authority = r.str("host_rewrite_literal");
  const rewrite = prefix !== undefined || uriRegex || authority !== undefined ? { uri: prefix, authority, uriRegex } : undefined;
  for (const u of r.list("upgrade_configs")) {
    // instio proxies WebSocket upgrades on every route; other upgrade types are not supported.
    u.only("upgrade_type", ["websocket"]);
    u.only("enabled", [true]);
    u.done();
  }
  r.done();
  return { destinations, timeoutMs, retry, hash, mirrors, rewrite };
}

function readWeightedClusters(r: MessageReader): XdsDestination[] {
  const clusters = r.list("clusters").map((c) => {
    const headers = headersOf(c);
    const hostRewrite = c.str("host_rewrite_literal");
    const d: XdsDestination = { cluster: c.str("name") ?? "", weight: c.wrapped("weight") ?? 0, headers: hostRewrite !== undefined ? { request: headers?.request, response: headers?.response, hostRewrite } : headers };
    c.done();
    return d;
  });
  r.accept("total_weight"); // deprecated: weights are relative to their sum
  r.done();
  // Envoy's limit, and the route core's: the sum is a 32-bit running total.
  if (clusters.reduce((sum, c) => sum + c.weight, 0) > 0xffffffff) r.fail("clusters", "the weights add up to more than 2^32-1");
  return clusters;
}

/** request/response_headers_to_add and _to_remove on a route or a weighted cluster. */
function headersOf(r: MessageReader): HeadersModel | undefined {
  const request = headerOperations(r, "request");
  const response = headerOperations(r, "response");
  return request || response ? { request, response, hostRewrite: undefined } : undefined;
}

function headerOperations(r: MessageReader, direction: "request" | "response"): HeaderOperations | undefined {
  const ops: HeaderOperations = { set: [], add: [], remove: r.strings(`${direction}_headers_to_remove`).map(lowerAscii) };
  for (const option of r.list(`${direction}_headers_to_add`)) {
    const header = option.obj("header") ?? option.fail("header", "a header to add needs a header");
    const pair: [string, string] = [lowerAscii(header.str("key") ?? ""), header.str("value") ?? ""];
    header.done();
    // Envoy's default is APPEND_IF_EXISTS_OR_ADD; the deprecated `append` says the same in a bool.
    const appendFlag = option.has("append") ? option.wrapped<boolean>("append") : undefined;
    const action = option.str("append_action") ?? (appendFlag === undefined || appendFlag ? "APPEND_IF_EXISTS_OR_ADD" : "OVERWRITE_IF_EXISTS_OR_ADD");
    if (action === "APPEND_IF_EXISTS_OR_ADD") ops.add.push(pair);
    else if (action === "OVERWRITE_IF_EXISTS_OR_ADD") ops.set.push(pair);
    else option.fail("append_action", `${action} is not supported`);
    option.only("keep_empty_value", [false]);
    option.done();
  }
  return ops.set.length + ops.add.length + ops.remove.length > 0 ? ops : undefined;
}

/** Envoy's retry_on names → instio's retry conditions. */
function readRetryPolicy(r: MessageReader): RetryPolicyModel {
  const on: RetryConditions = { fiveXx: false, gatewayError: false, reset: false, connectFailure: false, retriable4xx: false, statusCodes: [], grpcStatuses: [] };
  const grpcCodes = Object.fromEntries(Object.entries(GRPC_RETRY_NAMES).map(([code, name]) => [name, Number(code)]));
  for (const cond of (r.str("retry_on") ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    if (cond === "5xx") on.fiveXx = true;
    else if (cond === "gateway-error") on.gatewayError = true;
    else if (cond === "reset") on.reset = true;
    else if (cond === "connect-failure" || cond === "refused-stream") on.connectFailure = true;
    else if (cond === "retriable-4xx") on.retriable4xx = true;
    else if (cond === "retriable-status-codes") continue; // the codes below
    else if (grpcCodes[cond] !== undefined) on.grpcStatuses.push(grpcCodes[cond]!);
    else r.fail("retry_on", `"${cond}" is not supported`);
  }
  on.statusCodes = r.numbers("retriable_status_codes");
  const retries = r.has("num_retries") ? r.wrapped("num_retries")! : 1; // Envoy's default is one retry
  const perTryTimeoutMs = r.durationMs("per_try_timeout") ?? 0;
  let backoffMs = 25;
  const backoff = r.obj("retry_back_off");
  if (backoff) {
    backoffMs = backoff.durationMs("base_interval") ?? 25;
    const max = backoff.durationMs("max_interval");
    if (max !== undefined && max !== backoffMs * 10) backoff.fail("max_interval", "only 10 times base_interval (Envoy's default) is supported");
    backoff.done();
  }
  let avoidPreviousHosts = false;
  for (const p of r.list("retry_host_predicate")) {
    p.accept("name");
    if (!p.any("typed_config", [PREVIOUS_HOSTS_TYPE])) p.fail("typed_config", "a retry host predicate needs its typed_config");
    avoidPreviousHosts = true;
    p.done();
  }
  r.accept("host_selection_retry_max_attempts");
  r.done();
  return { attempts: retries + 1, perTryTimeoutMs, on, backoffMs, avoidPreviousHosts };
}

function readHashPolicy(r: MessageReader): HashKeySource {
  r.only("terminal", [false]);
  let key: HashKeySource;
  const header = r.obj("header");
  const cookie = r.obj("cookie");
  const query = r.obj("query_parameter");
  const conn = r.obj("connection_properties");
  if (header) {
    key = { kind: "header", name: lowerAscii(header.str("header_name") ?? "") };
    header.done();
  } else if (cookie) {
    key = { kind: "cookie", name: cookie.str("name") ?? "", path: cookie.str("path"), ttlMs: cookie.durationMs("ttl") };
    cookie.done();
  } else if (query) {
    key = { kind: "query", name: query.str("name") ?? "" };
    query.done();
  } else if (conn) {
    if (conn.bool("source_ip") !== true) conn.fail("source_ip", "only source_ip: true is supported");
    key = { kind: "sourceIp" };
    conn.done();
  } else r.fail("policy_specifier", "only header, cookie, query_parameter and connection_properties hash policies are supported");
  r.done();
  return key;
}

/** FractionalPercent → a percentage (0-100). */
export function fractionalPercent(r: MessageReader): number {
  const numerator = r.num("numerator") ?? 0;
  const denominator = r.str("denominator") ?? "HUNDRED";
  r.done();
  const per = denominator === "HUNDRED" ? 100 : denominator === "TEN_THOUSAND" ? 10_000 : denominator === "MILLION" ? 1_000_000 : NaN;
  if (Number.isNaN(per)) r.fail("denominator", `${denominator} is not a denominator`);
  return Math.min(100, (numerator * 100) / per);
}

const REDIRECT_STATUS: Record<string, number> = { MOVED_PERMANENTLY: 301, FOUND: 302, SEE_OTHER: 303, TEMPORARY_REDIRECT: 307, PERMANENT_REDIRECT: 308 };

function readRedirect(r: MessageReader): RouteActionModel {
  const code = r.str("response_code") ?? "MOVED_PERMANENTLY";
  const scheme = r.str("scheme_redirect") ?? (r.bool("https_redirect") ? "https" : undefined);
  const port = r.num("port_redirect");
  const action: RouteActionModel = { kind: "redirect", uri: r.str("path_redirect"), authority: r.str("host_redirect"), port: port || undefined, derivePort: undefined, scheme, status: REDIRECT_STATUS[code] ?? 301 };
  r.only("strip_query", [false]);
  r.done();
  return action;
}

function readDirectResponse(r: MessageReader): RouteActionModel {
  const status = r.num("status") ?? 200;
  const body = r.obj("body");
  let bytes: Buffer = Buffer.alloc(0);
  if (body) {
    bytes = body.bytes("inline_bytes") ?? Buffer.from(body.str("inline_string") ?? "");
    if (body.has("filename")) body.fail("filename", "a direct response body from a file is not supported");
    body.done();
  }
  r.done();
  return { kind: "direct", status, body: bytes };
}

function readFault(r: MessageReader): FaultModel {
  let delay: FaultModel["delay"];
  let abort: FaultModel["abort"];
  const d = r.obj("delay");
  if (d) {
    const ms = d.durationMs("fixed_delay") ?? d.fail("fixed_delay", "only fixed delays are supported");
    const p = d.obj("percentage");
    delay = { ms, percent: p ? fractionalPercent(p) : 100 };
    d.done();
  }
  const a = r.obj("abort");
  if (a) {
    const p = a.obj("percentage");
    const httpStatus = a.num("http_status");
    const grpcStatus = a.num("grpc_status");
    if (httpStatus === undefined && grpcStatus === undefined) a.fail("error_type", "only http_status and grpc_status aborts are supported");
    abort = { httpStatus, grpcStatus, percent: p ? fractionalPercent(p) : 100 };
    a.done();
  }
  r.done();
  return { delay, abort };
}

function readCors(r: MessageReader): CorsModel {
  const cors: CorsModel = {
    allowOrigins: r.list("allow_origin_string_match").map(stringMatch),
    allowMethods: r.str("allow_methods") ?? "",
    allowHeaders: r.str("allow_headers") ?? "",
    exposeHeaders: r.str("expose_headers") ?? "",
    maxAge: r.has("max_age") ? Number(r.str("max_age")) : undefined,
    allowCredentials: r.wrapped<boolean>("allow_credentials") === true,
    // Envoy forwards preflights from origins that do not match unless told otherwise.
    forwardUnmatchedPreflights: r.has("forward_not_matching_preflights") ? r.wrapped<boolean>("forward_not_matching_preflights") === true : true,
  };
  r.done();
  return cors;
}
