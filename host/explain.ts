// `instio explain`: the decision the Wasm core makes for one request, and why
// each earlier route did not match. Off the hot path; reads like the reference.

import type { CompiledConfig } from "./config/compile.js";
import { UNLIMITED } from "./config/traffic-policy.js";
import { emptyDecision, RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST, type RouteRequest } from "./core/decision.js";
import { queryParam, valueMatches } from "./core/reference-matcher.js";
import { writeRequest } from "./core/request-fields.js";
import { RouteCore } from "./core/route-core.js";
import { lowerAscii, type Condition, type MatchEntry, type StringMatch } from "./core/route-table.js";
import { originAllowed } from "./filters/cors.js";

function describeMatch(field: string, m: StringMatch): string {
  return `${field} ${m.kind} "${m.value}"`;
}

/** Why `entry` does not match `req`, or undefined when it matches. */
function mismatch(e: MatchEntry, req: RouteRequest): string | undefined {
  const test = (m: StringMatch, v: string | undefined): boolean => v !== undefined && valueMatches(m.kind, m.value, v);
  if (e.uri) {
    const path = e.uri.ignoreCase ? lowerAscii(req.path) : req.path;
    const want = e.uri.ignoreCase ? lowerAscii(e.uri.value) : e.uri.value;
    if (!test({ kind: e.uri.kind, value: want }, path)) return `${describeMatch("uri", e.uri)}${e.uri.ignoreCase ? " (ignoring case)" : ""} does not match "${req.path}"`;
  }
  if (e.method && !test(e.method, req.method)) return `${describeMatch("method", e.method)} does not match "${req.method}"`;
  if (e.authority && !test(e.authority, req.authority)) return `${describeMatch("authority", e.authority)} does not match "${req.authority ?? ""}"`;
  if (e.scheme && !test(e.scheme, req.scheme)) return `${describeMatch("scheme", e.scheme)} does not match "${req.scheme}"`;
  for (const c of e.conditions) {
    const why = conditionMismatch(c, req);
    if (why) return why;
  }
  return undefined;
}

function conditionMismatch(c: Condition, req: RouteRequest): string | undefined {
  const value = c.source === "header" ? req.header(c.name) : queryParam(req.query, c.name);
  const what = c.source === "header" ? `header ${c.name}` : `query parameter ${c.name}`;
  const shown = value === undefined ? "absent" : `"${value}"`;
  let matched: boolean;
  if (c.kind === "present") matched = value !== undefined;
  else {
    const v = value ?? (c.invert ? "" : undefined);
    matched = v !== undefined && valueMatches(c.kind, c.value, v);
  }
  if (c.invert ? !matched : matched) return undefined;
  const rule = c.kind === "present" ? "present" : `${c.kind} "${c.value}"`;
  return c.invert ? `withoutHeaders: ${what} is ${rule} (${shown})` : `${what} ${rule}: is ${shown}`;
}

export function explain(config: CompiledConfig, req: RouteRequest, random = (Math.random() * 2 ** 32) >>> 0): string {
  const core = new RouteCore(config.table);
  writeRequest(core, config.table.headerNames, req);
  const d = core.readDecision(core.route(random), emptyDecision());
  const lines: string[] = [];
  lines.push(`request: ${req.method} authority=${req.authority ?? "(none)"} path=${req.path}${req.query !== undefined ? ` query=${req.query}` : ""}`);
  if (d.code === RC_NO_VHOST) {
    lines.push(`virtual host: none matches "${req.authority ?? ""}"`);
    lines.push(config.settings.outboundTrafficPolicy === "REGISTRY_ONLY"
      ? "decision: 502 (block_all: outboundTrafficPolicy REGISTRY_ONLY, cluster BlackHoleCluster)"
      : `decision: forward to ${req.authority} as requested (allow_any: outboundTrafficPolicy ALLOW_ANY, cluster PassthroughCluster)`);
    return lines.join("\n");
  }
  const vh = config.table.virtualHosts[d.vhost]!;
  lines.push(`virtual host: ${vh.name} (domains: ${vh.domains.join(", ")})`);
  for (let i = vh.entryStart; i < vh.entryStart + vh.entryCount; i++) {
    const info = config.entries[i]!;
    const route = config.routes[config.table.entries[i]!.route]!;
    const label = `route ${i - vh.entryStart} "${info.name || "(unnamed)"}"${route.virtualService ? ` of VirtualService ${route.virtualService}` : ""}${info.source ? ` (${info.source.file}:${info.source.line})` : ""}`;
    if (i === d.entry) {
      lines.push(`  ✓ ${label}: matches`);
      break;
    }
    lines.push(`  ✗ ${label}: ${mismatch(config.table.entries[i]!, req) ?? "matches"}`);
  }
  if (d.code === RC_NO_ROUTE) {
    lines.push("decision: 404 NR (no route matched)");
    return lines.join("\n");
  }
  const info = config.routes[d.route]!;
  // The filters come before the route's action, in the proxy's order: CORS, fault delay, fault abort.
  const origin = req.header("origin");
  if (info.cors && origin !== undefined && req.method === "OPTIONS" && req.header("access-control-request-method") !== undefined) {
    const allowed = originAllowed(info.cors, origin, core);
    if (allowed || !info.cors.forwardUnmatchedPreflights) {
      lines.push(`decision: 200, the CORS preflight is answered by the proxy (origin ${origin} ${allowed ? "allowed" : "not allowed: no access-control headers"})`);
      return lines.join("\n");
    }
  }
  const fault = info.fault;
  if (fault?.delay) lines.push(`fault: delay ${fault.delay.ms} ms for ${fault.delay.percent}% of requests (DI)`);
  if (fault?.abort) {
    const status = fault.abort.grpcStatus !== undefined ? `200 with grpc-status ${fault.abort.grpcStatus}` : String(fault.abort.httpStatus);
    if (fault.abort.percent >= 100) {
      lines.push(`decision: ${status} FI "fault filter abort" (fault.abort for every request)`);
      return lines.join("\n");
    }
    if (fault.abort.percent > 0) lines.push(`fault: ${fault.abort.percent}% of requests end here with ${status} FI "fault filter abort"; the others:`);
  }
  if (info.action.kind === "redirect") {
    const a = info.action;
    lines.push(`decision: ${a.status} redirect (${[a.scheme && `scheme ${a.scheme}`, a.authority && `authority ${a.authority}`, a.port && `port ${a.port}`, a.derivePort && `port ${a.derivePort}`, a.uri && `path ${a.uri}`].filter(Boolean).join(", ") || "same URL"})`);
    return lines.join("\n");
  }
  if (info.action.kind === "direct") {
    lines.push(`decision: direct response ${info.action.status} (${info.action.body.length} bytes of body)`);
    return lines.join("\n");
  }
  if (info.rewrite) {
    const rx = info.rewrite.uriRegex;
    const regexPath = rx && (core.regexReplaceAll(rx.program, req.path, rx.rewrite) ?? `${req.path} (the pattern does not match: unchanged)`);
    lines.push(`rewrite: ${[info.rewrite.uri !== undefined && `path prefix to ${info.rewrite.uri}`, regexPath !== undefined && `path by regex to ${regexPath}`, info.rewrite.authority !== undefined && `authority to ${info.rewrite.authority}`].filter(Boolean).join(", ")}`);
  }
  if (info.headers) lines.push("headers: the route edits request and/or response headers");
  if (info.cors) lines.push(`cors: origins ${info.cors.allowOrigins.map((o) => `${o.kind} "${o.value}"`).join(", ") || "(none)"}; other preflights ${info.cors.forwardUnmatchedPreflights ? "forwarded" : "answered here"}`);
  const r = info.retry;
  const on = Object.entries(r.on).flatMap(([k, v]) => (v === true ? [k] : Array.isArray(v) && v.length > 0 ? [`${k} ${v.join("/")}`] : []));
  lines.push(`retries: ${r.attempts - 1} on ${on.join(", ") || "nothing"}${r.perTryTimeoutMs ? `, ${r.perTryTimeoutMs} ms per try` : ""}`);
  for (const m of info.mirrors) lines.push(`mirror: ${m.percent}% of requests copied to ${config.clusters[m.cluster]?.name ?? "(missing cluster)"}`);
  const timeout = info.timeoutMs;
  lines.push(`timeout: ${timeout > 0 ? `${timeout} ms for the whole request, retries included (504 UT)` : "none (Istio's default)"}`);
  const dests = config.table.routes[d.route]!.destinations;
  const total = dests.reduce((n, x) => n + x.weight, 0);
  if (dests.length > 1) {
    lines.push(`weighted destinations: ${dests.map((x) => `${config.clusters[x.cluster]?.name ?? "(missing)"} ${((100 * x.weight) / total).toFixed(1)}%`).join(", ")}`);
  }
  if (d.code === RC_NO_CLUSTER) {
    lines.push("decision: 503 NC (the destination's cluster does not exist: unknown host, port or subset)");
    return lines.join("\n");
  }
  const cluster = config.clusters[d.cluster]!;
  lines.push(`destination: ${cluster.host} port ${cluster.port}${cluster.subset ? ` subset ${cluster.subset}` : ""} (cluster ${cluster.name})`);
  if (d.code === RC_NO_ENDPOINT) {
    lines.push("decision: 503 UH no healthy upstream (the cluster has no endpoints)");
    return lines.join("\n");
  }
  if (cluster.passthrough) {
    lines.push(`decision: forward to ${req.authority} (resolution NONE: the requested address)`);
    return lines.join("\n");
  }
  let start = 0;
  for (let i = 0; i < d.cluster; i++) start += config.clusters[i]!.endpoints.length;
  const ep = cluster.endpoints[d.endpoint - start]!;
  const lb = cluster.policy.loadBalancer;
  const how = lb.kind === "RING_HASH" || lb.kind === "MAGLEV" ? `${lb.kind} on ${lb.key.kind === "sourceIp" ? "the source IP" : `${lb.key.kind} ${lb.key.name}`}` : lb.kind;
  lines.push(`endpoint: ${ep.address}:${ep.port} ${JSON.stringify(ep.labels)} (${how} among ${cluster.endpoints.length})`);
  const l = cluster.policy.limits;
  const limits = [
    l.maxConnections < UNLIMITED && `maxConnections ${l.maxConnections}`,
    l.maxPendingRequests < UNLIMITED && `http1MaxPendingRequests ${l.maxPendingRequests}`,
    l.maxRequests < UNLIMITED && `http2MaxRequests ${l.maxRequests}`,
    l.maxRetries < UNLIMITED && `maxRetries ${l.maxRetries}`,
    l.maxRequestsPerConnection > 0 && `maxRequestsPerConnection ${l.maxRequestsPerConnection} (then a new connection)`,
  ].filter(Boolean);
  if (limits.length > 0) lines.push(`circuit breakers: ${limits.join(", ")} (over a limit: 503 UO)`);
  const od = cluster.policy.outlierDetection;
  if (od) lines.push(`outlier detection: eject after ${od.consecutive5xxErrors} consecutive 5xx${od.consecutiveGatewayErrors ? ` or ${od.consecutiveGatewayErrors} gateway errors` : ""} for ${od.baseEjectionTimeMs} ms x times ejected, at most ${od.maxEjectionPercent}% of endpoints`);
  lines.push(`decision: forward to ${ep.address}:${ep.port}`);
  return lines.join("\n");
}
