// Istio networking resources (v1alpha3, v1beta1, v1) → validated model.
//
// Fields instio does not implement yet are rejected with a message that says so:
// a config that loads behaves as Istio would, or it does not load.

import { isIP } from "node:net";
import { compilePattern, parseRewriteTemplate, type RegexMode, type RegexProgram } from "../core/regex/program.js";
import type { Condition, StringMatch, UriMatch } from "../core/route-table.js";
import { FieldReader, type Obj } from "./fields.js";
import { resolveHost } from "./hosts.js";
import { readTrafficPolicy } from "./traffic-policy.js";
import { readSidecar } from "./sidecar.js";
import { readGateway } from "./gateway.js";
import { EXTENSIONS_API_VERSION, readWasmPlugin } from "./wasm-plugin.js";
import { readAuthorizationPolicy, readPeerAuthentication, SECURITY_GROUP, SECURITY_VERSIONS } from "./security-policy.js";
import type {
  ConfigModel, CorsModel, DestinationModel, RetryConditions, RetryPolicyModel, DestinationRuleModel, FaultModel, HeaderOperations, HeadersModel, HttpRouteModel, MatchModel, RegexRewriteModel, TcpRouteModel, ResourceMeta, RouteActionModel, ServiceModel,
  ServicePort, VirtualServiceModel, WorkloadEndpoint, WorkloadEntryModel,
} from "./model.js";
import { defaultSettings, readSettings, SETTINGS_API_VERSION, SETTINGS_KIND } from "./settings.js";
import type { DiagnosticSink, FieldPath, SourceDocument } from "./source.js";

const ISTIO_GROUP = "networking.istio.io/";
const ISTIO_VERSIONS = ["v1alpha3", "v1beta1", "v1"];
const LATER_KINDS: Record<string, string> = {
  EnvoyFilter: "instio is not Envoy; EnvoyFilter patches cannot apply",
  ProxyConfig: "ProxyConfig is not read; use the instio settings document",
  WorkloadGroup: "WorkloadGroup is not read",
};

/** One object per kind, namespace and name: a later document replaces an earlier one, in place of the earlier. */
function lastApplied<T extends ResourceMeta>(list: T[], replaced: (earlier: T, later: T) => void): T[] {
  const byName = new Map<string, number>();
  const out: T[] = [];
  for (const item of list) {
    const key = `${item.namespace}/${item.name}`;
    const at = byName.get(key);
    if (at === undefined) {
      byName.set(key, out.length);
      out.push(item);
    } else {
      replaced(out[at]!, item);
      out[at] = item;
    }
  }
  return out;
}

/** Reads every document into the model; all problems go to `sink`. */
export function readModel(docs: SourceDocument[], sink: DiagnosticSink): ConfigModel {
  const model: ConfigModel = { settings: defaultSettings(), services: [], workloadEntries: [], virtualServices: [], destinationRules: [], sidecars: [], gateways: [], peerAuthentications: [], authorizationPolicies: [], wasmPlugins: [] };
  let settingsSeen: SourceDocument | undefined;
  for (const doc of docs) {
    const r = new FieldReader(sink, doc);
    const top = r.object(doc.value, [], ["apiVersion", "kind", "metadata", "spec", "status"]);
    if (!top) continue;
    const apiVersion = r.string(top.apiVersion, ["apiVersion"], true);
    const kind = r.string(top.kind, ["kind"], true);
    if (apiVersion === undefined || kind === undefined) continue;
    if (apiVersion === SETTINGS_API_VERSION && kind === SETTINGS_KIND) {
      if (settingsSeen) {
        r.error(["kind"], `a second ${SETTINGS_KIND} document; the first is at ${settingsSeen.file}:${settingsSeen.locate([]).line}`);
        continue;
      }
      settingsSeen = doc;
      model.settings = readSettings(r, top);
      continue;
    }
    if (apiVersion.startsWith(SECURITY_GROUP)) {
      if (!SECURITY_VERSIONS.includes(apiVersion.slice(SECURITY_GROUP.length))) r.error(["apiVersion"], `unknown version; expected ${SECURITY_VERSIONS.map((v) => SECURITY_GROUP + v).join(", ")}`);
      else if (kind === "PeerAuthentication") {
        const pa = readPeerAuthentication(r, top, model.peerAuthentications.length);
        if (pa) model.peerAuthentications.push(pa);
      } else if (kind === "AuthorizationPolicy") {
        const ap = readAuthorizationPolicy(r, top);
        if (ap) model.authorizationPolicies.push(ap);
      } else r.error(["kind"], kind === "RequestAuthentication" ? "RequestAuthentication is not supported yet (JWT validation)" : `unknown kind "${kind}" in ${apiVersion}`);
      continue;
    }
    if (apiVersion === EXTENSIONS_API_VERSION && kind === "WasmPlugin") {
      const plugin = readWasmPlugin(r, top, model.wasmPlugins.length);
      if (plugin) model.wasmPlugins.push(plugin);
      continue;
    }
    if (!apiVersion.startsWith(ISTIO_GROUP)) {
      r.warn(["apiVersion"], `ignored: ${apiVersion} ${kind} is not an Istio networking or security resource or instio settings`);
      continue;
    }
    if (!ISTIO_VERSIONS.includes(apiVersion.slice(ISTIO_GROUP.length))) {
      r.error(["apiVersion"], `unknown version; expected ${ISTIO_VERSIONS.map((v) => ISTIO_GROUP + v).join(", ")}`);
      continue;
    }
    switch (kind) {
      case "VirtualService": {
        const vs = readVirtualService(r, top);
        if (vs) model.virtualServices.push(vs);
        break;
      }
      case "DestinationRule": {
        const dr = readDestinationRule(r, top);
        if (dr) model.destinationRules.push(dr);
        break;
      }
      case "ServiceEntry": {
        const se = readServiceEntry(r, top);
        if (se) model.services.push(se);
        break;
      }
      case "Gateway": {
        const gw = readGateway(r, top, (spec) => readMeta(r, top, "Gateway", spec));
        if (gw) model.gateways.push(gw);
        break;
      }
      case "Sidecar": {
        const sc = readSidecar(r, top, (spec) => readMeta(r, top, "Sidecar", spec));
        if (sc) model.sidecars.push(sc);
        break;
      }
      case "WorkloadEntry": {
        const we = readWorkloadEntry(r, top);
        if (we) model.workloadEntries.push(we);
        break;
      }
      default:
        r.error(["kind"], LATER_KINDS[kind] ? `${kind} is not supported yet: ${LATER_KINDS[kind]}` : `unknown kind "${kind}" in ${apiVersion}`);
    }
  }
  const replaced = (earlier: ResourceMeta, later: ResourceMeta): void => {
    sink.diagnostics.push({ ...earlier.source, path: "", severity: "warning", message: `${earlier.kind} ${earlier.namespace}/${earlier.name} is applied again at ${later.source.file}:${later.source.line}; the later one replaces this one, as kubectl apply does` });
  };
  model.virtualServices = lastApplied(model.virtualServices, replaced);
  model.destinationRules = lastApplied(model.destinationRules, replaced);
  model.services = lastApplied(model.services, replaced);
  model.gateways = lastApplied(model.gateways, replaced);
  model.sidecars = lastApplied(model.sidecars, replaced);
  model.workloadEntries = lastApplied(model.workloadEntries, replaced);
  model.wasmPlugins = lastApplied(model.wasmPlugins, replaced);
  model.peerAuthentications = lastApplied(model.peerAuthentications, replaced);
  model.authorizationPolicies = lastApplied(model.authorizationPolicies, replaced);
  for (const vs of model.virtualServices) {
    for (const g of vs.gateways) {
      // istioctl analyze's GatewayAnalyzer: a VirtualService bound to a Gateway that is not there.
      if (g !== "mesh" && !model.gateways.some((gw) => `${gw.namespace}/${gw.name}` === g)) {
        sink.diagnostics.push({ ...vs.source, path: "spec.gateways", severity: "warning", message: `Referenced gateway not found: "${g}" (IST0101): the VirtualService routes nothing there` });
      }
    }
  }
  return model;
}

function readMeta(r: FieldReader, top: Obj, kind: string, spec: Obj): ResourceMeta {
  const meta = r.object(top.metadata, ["metadata"], ["name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp"]) ?? {};
  const name = r.string(meta.name, ["metadata", "name"], true) ?? "";
  const namespace = r.string(meta.namespace, ["metadata", "namespace"]) || "default";
  return { kind, name, namespace, exportTo: r.stringList(spec.exportTo, ["spec", "exportTo"]), source: r.doc.locate([]) };
}

// ── VirtualService ──────────────────────────────────────────────────────────

function readVirtualService(r: FieldReader, top: Obj): VirtualServiceModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["hosts", "gateways", "http", "exportTo", "tcp", "tls"]);
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const meta = readMeta(r, top, "VirtualService", spec);
  const hosts = r.stringList(spec.hosts, ["spec", "hosts"]);
  // Top-level gateways bind the VirtualService to Gateway resources ("mesh": sidecars, the default).
  const gateways = r.stringList(spec.gateways, ["spec", "gateways"]).map((g) => (g === "mesh" || g.includes("/") ? g : `${meta.namespace}/${g}`));
  // A VirtualService without hosts is a delegate: only a root's `delegate` pulls its routes in.
  // "*" is Istio's catch-all for gateways only (Istio's validateVirtualService, with its words).
  const boundToMesh = gateways.length === 0 || gateways.includes("mesh");
  hosts.forEach((h, i) => {
    if (h === "*" && boundToMesh) r.error(["spec", "hosts", i], "wildcard host * is not allowed for virtual services bound to the mesh gateway");
  });
  const http = r.list(spec.http, ["spec", "http"]).map((route, i) => readHttpRoute(r, route, ["spec", "http", i], meta.namespace));
  if (hosts.length === 0) {
    http.forEach((route, i) => {
      if (route?.delegate) r.error(["spec", "http", i, "delegate"], "a delegate VirtualService (one without hosts) cannot delegate again: Istio supports one level");
    });
  }
  const tcp = r.list(spec.tcp, ["spec", "tcp"]).flatMap((t, i) => {
    const route = readTcpRoute(r, t, ["spec", "tcp", i], meta.namespace);
    return route ? [route] : [];
  });
  const tls = r.list(spec.tls, ["spec", "tls"]).flatMap((t, i) => {
    const route = readTcpRoute(r, t, ["spec", "tls", i], meta.namespace, true);
    return route ? [route] : [];
  });
  return { ...meta, hosts: hosts.map((h) => resolveHost(h, meta.namespace)), gateways: gateways.length > 0 ? gateways : ["mesh"], http: http.filter((h): h is HttpRouteModel => h !== undefined), tcp, tls };
}

/**
 * TCPRoute, or TLSRoute (`sni`: matches need sniHosts): port matches (sourceLabels and
 * sourceNamespace applied at build time) and weighted destinations.
 */
function readTcpRoute(r: FieldReader, value: unknown, path: FieldPath, namespace: string, sni = false): TcpRouteModel | undefined {
  const t = r.object(value, path, ["match", "route"]);
  if (!t) return undefined;
  if (sni && r.list(t.match, [...path, "match"]).length === 0) r.error([...path, "match"], "a TLS route needs a match with sniHosts");
  const matches = r.list(t.match, [...path, "match"]).flatMap((m, i) => {
    const at = [...path, "match", i];
    const mm = r.object(m, at, ["port", "sourceLabels", "sourceNamespace", "gateways", ...(sni ? ["sniHosts"] : [])], { destinationSubnets: "destinationSubnets (no original destination address without iptables)", sourceSubnet: "sourceSubnet" });
    if (!mm) return [];
    checkGateways(r, mm.gateways, [...at, "gateways"]);
    const sniHosts = sni ? r.stringList(mm.sniHosts, [...at, "sniHosts"]).map((h) => h.toLowerCase()) : undefined;
    if (sni && sniHosts!.length === 0) r.error([...at, "sniHosts"], "at least one SNI host is required");
    return [{ port: r.integer(mm.port, [...at, "port"], 1, 65535), sniHosts, ...readSourceSelectors(r, mm, at) }];
  });
  const dests = r.list(t.route, [...path, "route"]).map((d, i) => readDestinationWeight(r, d, [...path, "route", i], namespace));
  const valid = dests.filter((d): d is DestinationModel => d !== undefined);
  if (valid.length === 0) r.error([...path, "route"], "a TCP route needs at least one destination");
  if (valid.length > 1 && valid.every((d) => d.weight === 0)) r.error([...path, "route"], "total destination weight must be greater than 0");
  const destinations = valid.length === 1 ? [{ ...valid[0]!, weight: 1 }] : valid.filter((d) => d.weight > 0);
  return { matches, destinations, source: r.doc.locate(path) };
}

function checkGateways(r: FieldReader, value: unknown, path: FieldPath): void {
  r.stringList(value, path).forEach((g, i) => {
    if (g !== "mesh") r.error([...path, i], `gateway "${g}": gateways per match are not supported yet; bind the whole VirtualService with spec.gateways`);
  });
}

function readHttpRoute(r: FieldReader, value: unknown, path: FieldPath, namespace: string): HttpRouteModel | undefined {
  const route = r.object(value, path, ["name", "match", "route", "timeout", "headers", "redirect", "directResponse", "rewrite", "fault", "corsPolicy", "retries", "mirror", "mirrors", "mirrorPercentage", "mirror_percent", "mirrorPercent", "delegate"]);
  if (!route) return undefined;
  const name = r.string(route.name, [...path, "name"]);
  const matches = r.list(route.match, [...path, "match"]).map((m, i) => readMatch(r, m, [...path, "match", i]));
  const dests = r.list(route.route, [...path, "route"]).map((d, i) => readDestinationWeight(r, d, [...path, "route", i], namespace));
  const action = readRouteAction(r, route, path);
  const delegate = readDelegate(r, route.delegate, [...path, "delegate"], namespace);
  if (delegate && (dests.length > 0 || action.kind !== "forward")) r.error([...path, "delegate"], "cannot be combined with route, redirect or directResponse");
  if (dests.length === 0 && action.kind === "forward" && !delegate) r.error([...path, "route"], "a route needs at least one destination (or a redirect, directResponse or delegate)");
  if (dests.length > 0 && action.kind !== "forward") r.error([...path, action.kind === "redirect" ? "redirect" : "directResponse"], `cannot be combined with route`);
  if (route.rewrite !== undefined && action.kind === "redirect") r.error([...path, "rewrite"], "cannot be combined with redirect");
  const valid = dests.filter((d): d is DestinationModel => d !== undefined);
  if (valid.length > 1 && valid.every((d) => d.weight === 0)) r.error([...path, "route"], "total destination weight must be greater than 0");
  // One destination takes all traffic; with several, weight 0 means none (Istio drops it).
  const destinations = valid.length === 1 ? [{ ...valid[0]!, weight: 1 }] : valid.filter((d) => d.weight > 0);
  // Istio: unset means no timeout (Envoy's 15 s default is turned off); "0s" also disables it.
  const timeoutMs = r.duration(route.timeout, [...path, "timeout"]) ?? 0;
  if (timeoutMs > 0 && timeoutMs < 1) r.error([...path, "timeout"], "must be at least 1ms");
  const headers = readHeaders(r, route.headers, [...path, "headers"]);
  const rewrite = readRewrite(r, route.rewrite, [...path, "rewrite"]);
  const fault = readFault(r, route.fault, [...path, "fault"]);
  if (fault && action.kind === "redirect") r.error([...path, "fault"], "cannot be combined with redirect");
  const cors = readCors(r, route.corsPolicy, [...path, "corsPolicy"]);
  const retries = readRetries(r, route.retries, [...path, "retries"]);
  const mirrors = readMirrors(r, route, path, namespace);
  return { name, matches: matches.filter((m): m is MatchModel => m !== undefined), destinations, timeoutMs, headers, action, rewrite, fault, cors, retries, mirrors, delegate, source: r.doc.locate(path) };
}

function readDelegate(r: FieldReader, value: unknown, path: FieldPath, namespace: string): HttpRouteModel["delegate"] {
  const d = r.object(value, path, ["name", "namespace"]);
  if (!d) return undefined;
  const name = r.string(d.name, [...path, "name"], true);
  return name === undefined ? undefined : { name, namespace: r.string(d.namespace, [...path, "namespace"]) ?? namespace };
}

function readRewrite(r: FieldReader, value: unknown, path: FieldPath): HttpRouteModel["rewrite"] {
  const rw = r.object(value, path, ["uri", "authority", "uriRegexRewrite"]);
  if (!rw) return undefined;
  const uri = r.string(rw.uri, [...path, "uri"]);
  let uriRegex: RegexRewriteModel | undefined;
  const rx = r.object(rw.uriRegexRewrite, [...path, "uriRegexRewrite"], ["match", "rewrite"]);
  if (rx) {
    if (uri !== undefined) r.error([...path, "uriRegexRewrite"], "rewrite.uri and rewrite.uriRegexRewrite cannot both be set");
    const match = r.string(rx.match, [...path, "uriRegexRewrite", "match"], true);
    const template = r.string(rx.rewrite, [...path, "uriRegexRewrite", "rewrite"], true);
    const program = match === undefined ? undefined : checkRegex(r, match, [...path, "uriRegexRewrite", "match"], "search");
    if (program && template !== undefined) {
      try {
        uriRegex = { match: match!, rewrite: parseRewriteTemplate(template, program.groups) };
      } catch (err) {
        r.error([...path, "uriRegexRewrite", "rewrite"], (err as Error).message);
      }
    }
  }
  return { uri, authority: r.string(rw.authority, [...path, "authority"]), uriRegex };
}

/** Compiles a pattern as the route core will; reports the syntax error at `path`. */
function checkRegex(r: FieldReader, pattern: string, path: FieldPath, mode: RegexMode): RegexProgram | undefined {
  try {
    return compilePattern(pattern, mode);
  } catch (err) {
    r.error(path, (err as Error).message);
    return undefined;
  }
}

/** mirror (+ mirrorPercentage, 100% when unset) or mirrors[] (each 100% unless set), as Istio. */
function readMirrors(r: FieldReader, route: Obj, path: FieldPath, namespace: string): { destination: DestinationModel; percent: number }[] {
  const percentOf = (o: unknown, p: FieldPath): number => {
    const m = r.object(o, p, ["value"]);
    if (!m) return 100;
    if (typeof m.value !== "number" || m.value < 0 || m.value > 100) {
      r.error([...p, "value"], "must be a number from 0 to 100");
      return 0;
    }
    return m.value;
  };
  if (route.mirror !== undefined && route.mirrors !== undefined) r.error([...path, "mirrors"], "only one of mirror and mirrors may be set");
  if (route.mirror !== undefined) {
    const d = readDestination(r, route.mirror, [...path, "mirror"], namespace);
    let percent = percentOf(route.mirrorPercentage, [...path, "mirrorPercentage"]);
    const legacy = route.mirror_percent ?? route.mirrorPercent;
    if (route.mirrorPercentage === undefined && legacy !== undefined) percent = r.integer(legacy, [...path, "mirror_percent"], 0, 100) ?? 100;
    return d ? [{ destination: d, percent }] : [];
  }
  return r.list(route.mirrors, [...path, "mirrors"]).flatMap((m, i) => {
    const p = [...path, "mirrors", i];
    const o = r.object(m, p, ["destination", "percentage"]);
    if (!o) return [];
    const d = readDestination(r, o.destination, [...p, "destination"], namespace);
    return d ? [{ destination: d, percent: percentOf(o.percentage, [...p, "percentage"]) }] : [];
  });
}

const GRPC_RETRY_ON: Record<string, number> = { cancelled: 1, "deadline-exceeded": 4, "resource-exhausted": 8, internal: 13, unavailable: 14 };
/** Accepted, and never true on HTTP/1.1 upstreams or without settings Istio does not expose. */
const RETRY_ON_INERT = ["refused-stream", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure"];

/** Parses an Istio retryOn list into conditions; integers are status codes, as Istio's parseRetryOn. */
export function parseRetryOn(list: string, report: (message: string) => void): RetryConditions {
  const on: RetryConditions = { fiveXx: false, gatewayError: false, reset: false, connectFailure: false, retriable4xx: false, statusCodes: [], grpcStatuses: [] };
  for (const raw of list.split(",")) {
    const t = raw.trim();
    if (t === "") continue;
    if (/^\d+$/.test(t)) {
      const code = Number(t);
      if (code < 100 || code > 599) report(`"${t}" is not an HTTP status code`);
      else on.statusCodes.push(code);
    } else if (t === "5xx") on.fiveXx = true;
    else if (t === "gateway-error") on.gatewayError = true;
    else if (t === "reset" || t === "reset-before-request") on.reset = true;
    else if (t === "connect-failure") on.connectFailure = true;
    else if (t === "retriable-4xx") on.retriable4xx = true;
    else if (t in GRPC_RETRY_ON) on.grpcStatuses.push(GRPC_RETRY_ON[t]!);
    else if (t !== "retriable-status-codes" && !RETRY_ON_INERT.includes(t)) report(`unknown retryOn value "${t}"`);
  }
  return on;
}

function readRetries(r: FieldReader, value: unknown, path: FieldPath): RetryPolicyModel | undefined {
  const o = r.object(value, path, ["attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"]);
  if (!o) return undefined;
  // retryRemoteLocalities adds Envoy's previous_priorities retry priority. Every endpoint is in
  // priority 0 until locality failover exists, which is also where that predicate does nothing.
  r.boolean(o.retryRemoteLocalities, [...path, "retryRemoteLocalities"]);
  const avoidPreviousHosts = r.boolean(o.retryIgnorePreviousHosts, [...path, "retryIgnorePreviousHosts"]) ?? true;
  const backoffMs = r.duration(o.backoff, [...path, "backoff"], 1) ?? 25;
  const retries = r.integer(o.attempts, [...path, "attempts"], 0, 1000) ?? 0;
  const perTryTimeoutMs = r.duration(o.perTryTimeout, [...path, "perTryTimeout"], 1) ?? 0;
  // Istio's default retryOn when a policy sets none.
  const on = parseRetryOn(r.string(o.retryOn, [...path, "retryOn"]) ?? "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", (m) => r.error([...path, "retryOn"], m));
  return { attempts: 1 + retries, perTryTimeoutMs, on, backoffMs, avoidPreviousHosts };
}

function readCors(r: FieldReader, value: unknown, path: FieldPath): CorsModel | undefined {
  const c = r.object(value, path, ["allowOrigins", "allowOrigin", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge", "allowCredentials", "unmatchedPreflights"]);
  if (!c) return undefined;
  const allowOrigins: CorsModel["allowOrigins"] = r.list(c.allowOrigins, [...path, "allowOrigins"]).flatMap((o, i) => {
    const m = readStringMatch(r, o, [...path, "allowOrigins", i]);
    return m ? [m] : [];
  });
  // The deprecated allowOrigin list is exact matches.
  for (const o of r.stringList(c.allowOrigin, [...path, "allowOrigin"])) allowOrigins.push({ kind: "exact", value: o });
  const maxAgeMs = r.duration(c.maxAge, [...path, "maxAge"]);
  const unmatched = r.oneOf<"FORWARD" | "IGNORE">(c.unmatchedPreflights, [...path, "unmatchedPreflights"], ["FORWARD", "IGNORE"]) ?? "FORWARD";
  return {
    allowOrigins,
    allowMethods: r.stringList(c.allowMethods, [...path, "allowMethods"]).join(","),
    allowHeaders: r.stringList(c.allowHeaders, [...path, "allowHeaders"]).join(","),
    exposeHeaders: r.stringList(c.exposeHeaders, [...path, "exposeHeaders"]).join(","),
    maxAge: maxAgeMs === undefined ? undefined : Math.floor(maxAgeMs / 1000),
    allowCredentials: r.boolean(c.allowCredentials, [...path, "allowCredentials"]) ?? false,
    forwardUnmatchedPreflights: unmatched === "FORWARD",
  };
}

/** gRPC status names Istio accepts in abort.grpcStatus. */
const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

/** percentage.value (0-100), else the deprecated integer percent, else 0: Istio injects nothing without one. */
function readPercent(r: FieldReader, o: Obj, path: FieldPath): number {
  const p = r.object(o.percentage, [...path, "percentage"], ["value"]);
  if (p) {
    const v = p.value;
    if (typeof v !== "number" || v < 0 || v > 100) {
      r.error([...path, "percentage", "value"], "must be a number from 0 to 100");
      return 0;
    }
    return v;
  }
  return r.integer(o.percent, [...path, "percent"], 0, 100) ?? 0;
}

function readFault(r: FieldReader, value: unknown, path: FieldPath): FaultModel | undefined {
  const f = r.object(value, path, ["delay", "abort"]);
  if (!f) return undefined;
  let delay: FaultModel["delay"];
  const d = r.object(f.delay, [...path, "delay"], ["fixedDelay", "percentage", "percent"], { exponentialDelay: "Istio drops exponentialDelay (it is not supported)" });
  if (d) {
    const ms = r.duration(d.fixedDelay, [...path, "delay", "fixedDelay"], 1);
    if (d.fixedDelay === undefined && d.exponentialDelay === undefined) r.error([...path, "delay", "fixedDelay"], "is required");
    if (ms !== undefined) delay = { ms, percent: readPercent(r, d, [...path, "delay"]) };
  }
  let abort: FaultModel["abort"];
  const a = r.object(f.abort, [...path, "abort"], ["httpStatus", "grpcStatus", "percentage"], { http2Error: "Istio does not translate http2Error aborts" });
  if (a) {
    const httpStatus = r.integer(a.httpStatus, [...path, "abort", "httpStatus"], 200, 599);
    const grpc = r.oneOf(a.grpcStatus, [...path, "abort", "grpcStatus"], GRPC_CODES);
    if ((httpStatus === undefined) === (grpc === undefined) && a.http2Error === undefined) r.error([...path, "abort"], "exactly one of httpStatus or grpcStatus is required");
    abort = { httpStatus, grpcStatus: grpc === undefined ? undefined : GRPC_CODES.indexOf(grpc), percent: readPercent(r, a, [...path, "abort"]) };
  }
  return { delay, abort };
}

const REDIRECT_CODES = [301, 302, 303, 307, 308];

/** redirect / directResponse, as Istio validates them. */
function readRouteAction(r: FieldReader, route: Obj, path: FieldPath): RouteActionModel {
  if (route.redirect !== undefined && route.directResponse !== undefined) r.error([...path, "directResponse"], "cannot be combined with redirect");
  const red = r.object(route.redirect, [...path, "redirect"], ["uri", "authority", "port", "derivePort", "scheme", "redirectCode"], { prefixRewrite: "redirect prefixRewrite (Istio master only) is not supported yet" });
  if (red) {
    const p = [...path, "redirect"];
    const port = r.integer(red.port, [...p, "port"], 1, 65535);
    const derivePort = r.oneOf<"FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT">(red.derivePort, [...p, "derivePort"], ["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]);
    if (port !== undefined && derivePort !== undefined) r.error([...p, "derivePort"], "only one of port and derivePort may be set");
    const code = r.integer(red.redirectCode, [...p, "redirectCode"], 0, 999) ?? 0;
    if (code !== 0 && !REDIRECT_CODES.includes(code)) r.error([...p, "redirectCode"], `must be one of ${REDIRECT_CODES.join(", ")}, got ${code}`);
    return { kind: "redirect", uri: r.string(red.uri, [...p, "uri"]), authority: r.string(red.authority, [...p, "authority"]), port, derivePort, scheme: r.string(red.scheme, [...p, "scheme"]), status: code || 301 };
  }
  const dr = r.object(route.directResponse, [...path, "directResponse"], ["status", "body"]);
  if (dr) {
    const p = [...path, "directResponse"];
    const status = r.integer(dr.status, [...p, "status"], 200, 599, true) ?? 200;
    const b = r.object(dr.body, [...p, "body"], ["string", "bytes"]);
    let body = Buffer.alloc(0);
    if (b?.string !== undefined && b.bytes !== undefined) r.error([...p, "body"], "only one of string and bytes may be set");
    else if (b?.string !== undefined) body = Buffer.from(r.string(b.string, [...p, "body", "string"]) ?? "", "utf8");
    else if (b?.bytes !== undefined) {
      const s = r.string(b.bytes, [...p, "body", "bytes"]) ?? "";
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) r.error([...p, "body", "bytes"], "must be base64");
      else body = Buffer.from(s, "base64");
    }
    return { kind: "direct", status, body };
  }
  return { kind: "forward" };
}

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * Istio's Headers. As Istio translates them: names are lower-cased, pseudo-headers
 * (":x") are dropped, and a set (else an add) of host or :authority becomes a host rewrite.
 */
function readHeaders(r: FieldReader, value: unknown, path: FieldPath): HeadersModel | undefined {
  const h = r.object(value, path, ["request", "response"]);
  if (!h) return undefined;
  let hostRewrite: string | undefined;
  const ops = (v: unknown, p: FieldPath, direction: "request" | "response"): HeaderOperations | undefined => {
    const o = r.object(v, p, ["set", "add", "remove"]);
    if (!o) return undefined;
    const pairs = (field: "set" | "add"): [string, string][] => {
      const out: [string, string][] = [];
      for (const [name, val] of Object.entries(r.stringMap(o[field], [...p, field]))) {
        const lower = name.toLowerCase();
        if (!HEADER_NAME.test(name.replace(/^:/, ""))) {
          r.error([...p, field, name], `not a valid header name: "${name}"`);
          continue;
        }
        if (lower === "host" || lower === ":authority") {
          if (direction === "request" && (field === "set" || hostRewrite === undefined)) hostRewrite = val;
          continue;
        }
        if (lower.startsWith(":")) continue;
        out.push([lower, val]);
      }
      return out;
    };
    const set = pairs("set");
    const add = pairs("add");
    const remove = r.stringList(o.remove, [...p, "remove"]).map((n) => n.toLowerCase()).filter((n) => n !== "host" && !n.startsWith(":"));
    return { set, add, remove };
  };
  const request = ops(h.request, [...path, "request"], "request");
  const response = ops(h.response, [...path, "response"], "response");
  return { request, response, hostRewrite };
}

function readMatch(r: FieldReader, value: unknown, path: FieldPath): MatchModel | undefined {
  const m = r.object(
    value,
    path,
    ["name", "uri", "scheme", "method", "authority", "headers", "withoutHeaders", "queryParams", "ignoreUriCase", "port", "sourceLabels", "sourceNamespace", "gateways"],
    { statPrefix: "per-route stats arrive with telemetry" },
  );
  if (!m) return undefined;
  checkGateways(r, m.gateways, [...path, "gateways"]);
  const uriMatch = readStringMatch(r, m.uri, [...path, "uri"]);
  let ignoreCase = r.boolean(m.ignoreUriCase, [...path, "ignoreUriCase"]) ?? false;
  if (ignoreCase && uriMatch?.kind === "regex") {
    r.warn([...path, "ignoreUriCase"], "has no effect on a regex uri match (Envoy ignores case_sensitive for safe_regex); start the pattern with (?i)");
    ignoreCase = false;
  }
  const uri: UriMatch | undefined = uriMatch ? { ...uriMatch, ignoreCase } : undefined;
  const conditions: Condition[] = [];
  readHeaderConditions(r, m.headers, [...path, "headers"], false, conditions);
  readHeaderConditions(r, m.withoutHeaders, [...path, "withoutHeaders"], true, conditions);
  const query = r.object(m.queryParams, [...path, "queryParams"], Object.keys((m.queryParams as Obj | null) ?? {})) ?? {};
  for (const [name, v] of Object.entries(query)) {
    const c = readConditionMatch(r, v, [...path, "queryParams", name]);
    if (c) conditions.push({ source: "query", name, kind: c.kind, value: c.value, invert: false });
  }
  return {
    name: r.string(m.name, [...path, "name"]),
    uri,
    method: readStringMatch(r, m.method, [...path, "method"]),
    authority: readStringMatch(r, m.authority, [...path, "authority"]),
    scheme: readStringMatch(r, m.scheme, [...path, "scheme"]),
    conditions,
    port: r.integer(m.port, [...path, "port"], 1, 65535),
    ...readSourceSelectors(r, m, path),
  };
}

function readSourceSelectors(r: FieldReader, m: Obj, path: FieldPath): { sourceLabels?: Record<string, string>; sourceNamespace?: string } {
  const out: { sourceLabels?: Record<string, string>; sourceNamespace?: string } = {};
  if (m.sourceLabels !== undefined) out.sourceLabels = r.stringMap(m.sourceLabels, [...path, "sourceLabels"]);
  const ns = r.string(m.sourceNamespace, [...path, "sourceNamespace"]);
  if (ns !== undefined) out.sourceNamespace = ns;
  return out;
}

const SPECIAL_HEADER_KEYS = ["uri", "scheme", "method", "authority"];

function readHeaderConditions(r: FieldReader, value: unknown, path: FieldPath, invert: boolean, out: Condition[]): void {
  const headers = r.object(value, path, Object.keys((value as Obj | null) ?? {}));
  if (!headers) return;
  for (const [name, v] of Object.entries(headers)) {
    const p = [...path, name];
    if (name.startsWith("@request.auth.claims")) {
      r.error(p, "JWT claim matches are not supported yet (no request authentication)");
      continue;
    }
    if (name !== name.toLowerCase() || !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) {
      r.error(p, `header name must be lower-case and a valid HTTP token, got "${name}"`);
      continue;
    }
    if (SPECIAL_HEADER_KEYS.includes(name)) {
      r.warn(p, `ignored: Istio ignores "${name}" as a header match key; use match.${name}`);
      continue;
    }
    if (v === null || v === undefined) {
      r.error(p, `header match ${name} cannot be null`);
      continue;
    }
    const c = readConditionMatch(r, v, p);
    if (c) out.push({ source: "header", name, kind: c.kind, value: c.value, invert });
  }
}

/** A StringMatch where `{}` means "present". */
function readConditionMatch(r: FieldReader, value: unknown, path: FieldPath): { kind: Condition["kind"]; value: string } | undefined {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    // Istio turns `{}` and `regex: "*"` into Envoy's present_match.
    if (keys.length === 0 || (keys.length === 1 && (value as Obj).regex === "*")) return { kind: "present", value: "" };
  }
  return readStringMatch(r, value, path);
}

function readStringMatch(r: FieldReader, value: unknown, path: FieldPath): StringMatch | undefined {
  const m = r.object(value, path, ["exact", "prefix", "regex"]);
  if (!m) return undefined;
  const keys = Object.keys(m);
  if (keys.length !== 1) {
    r.error(path, "exactly one of exact, prefix or regex is required");
    return undefined;
  }
  const kind = keys[0] as StringMatch["kind"];
  const s = r.string(m[kind], [...path, kind]);
  if (s === undefined) return undefined;
  if (kind === "regex" && !checkRegex(r, s, [...path, kind], "fullMatch")) return undefined;
  return { kind, value: s };
}

function readDestinationWeight(r: FieldReader, value: unknown, path: FieldPath, namespace: string): DestinationModel | undefined {
  const d = r.object(value, path, ["destination", "weight", "headers"]);
  if (!d) return undefined;
  const dest = readDestination(r, d.destination, [...path, "destination"], namespace);
  const weight = r.integer(d.weight, [...path, "weight"], 0, 2 ** 31 - 1) ?? 0;
  if (!dest) return undefined;
  return { ...dest, weight, headers: readHeaders(r, d.headers, [...path, "headers"]), source: r.doc.locate(path) };
}

/** An Istio Destination {host, subset, port}; short hosts resolve against the VirtualService's namespace. */
function readDestination(r: FieldReader, value: unknown, path: FieldPath, namespace: string): DestinationModel | undefined {
  const dest = r.object(value, path, ["host", "subset", "port"]);
  if (!dest) {
    r.error(path, "is required");
    return undefined;
  }
  const host = r.string(dest.host, [...path, "host"], true);
  const port = r.object(dest.port, [...path, "port"], ["number"]);
  if (!host) return undefined;
  return {
    host: resolveHost(host, namespace),
    subset: r.string(dest.subset, [...path, "subset"]) || undefined,
    port: port ? r.integer(port.number, [...path, "port", "number"], 1, 65535, true) : undefined,
    weight: 1,
    headers: undefined,
    source: r.doc.locate(path),
  };
}

// ── DestinationRule ─────────────────────────────────────────────────────────

function readDestinationRule(r: FieldReader, top: Obj): DestinationRuleModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["host", "subsets", "exportTo", "trafficPolicy"], {
    workloadSelector: "DestinationRule workloadSelector is not supported yet",
  });
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const meta = readMeta(r, top, "DestinationRule", spec);
  const host = r.string(spec.host, ["spec", "host"], true);
  const names = new Set<string>();
  const subsets = r.list(spec.subsets, ["spec", "subsets"]).flatMap((s, i) => {
    const p: FieldPath = ["spec", "subsets", i];
    const subset = r.object(s, p, ["name", "labels", "trafficPolicy"]);
    if (!subset) return [];
    const name = r.string(subset.name, [...p, "name"], true);
    if (!name) return [];
    if (names.has(name)) r.error([...p, "name"], `duplicate subset "${name}"`);
    names.add(name);
    return [{ name, labels: r.stringMap(subset.labels, [...p, "labels"]), trafficPolicy: readTrafficPolicy(r, subset.trafficPolicy, [...p, "trafficPolicy"]) }];
  });
  const trafficPolicy = readTrafficPolicy(r, spec.trafficPolicy, ["spec", "trafficPolicy"]);
  if (!host) return undefined;
  return { ...meta, host: resolveHost(host, meta.namespace), subsets, trafficPolicy };
}

// ── ServiceEntry and WorkloadEntry ──────────────────────────────────────────

/** Istio port protocols instio serves: HTTP ones through the HTTP routes, the others through TCP listeners. */
export const SERVICE_PROTOCOLS = ["HTTP", "", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "MONGO", "TLS", "HTTPS"];

function readServiceEntry(r: FieldReader, top: Obj): ServiceModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector", "exportTo"], {
    subjectAltNames: "ServiceEntry subjectAltNames; set them in a DestinationRule's tls",
  });
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const meta = readMeta(r, top, "ServiceEntry", spec);
  const hosts = r.stringList(spec.hosts, ["spec", "hosts"]).map((h) => h.toLowerCase());
  if (hosts.length === 0) r.error(["spec", "hosts"], "at least one host is required");
  hosts.forEach((h, i) => {
    if (h === "*") r.error(["spec", "hosts", i], `"*" is not allowed in a ServiceEntry`);
  });
  const addresses = r.stringList(spec.addresses, ["spec", "addresses"]);
  const location = r.oneOf(spec.location, ["spec", "location"], ["MESH_EXTERNAL", "MESH_INTERNAL"]) ?? "MESH_EXTERNAL";
  const resolution = r.oneOf(spec.resolution, ["spec", "resolution"], ["STATIC", "NONE", "DNS", "DNS_ROUND_ROBIN"], ["DYNAMIC_DNS"]) ?? "NONE";
  if ((resolution === "DNS" || resolution === "DNS_ROUND_ROBIN") && spec.endpoints === undefined && !spec.workloadSelector) {
    // Without endpoints, Envoy resolves the hosts themselves: they must be names, not wildcards.
    hosts.forEach((h, i) => {
      if (h.startsWith("*")) r.error(["spec", "hosts", i], `resolution ${resolution} without endpoints resolves the hosts, so "${h}" cannot be a wildcard`);
    });
  }
  const seenPorts = new Set<number>();
  const ports: ServicePort[] = r.list(spec.ports, ["spec", "ports"]).flatMap((p, i) => {
    const path: FieldPath = ["spec", "ports", i];
    const port = r.object(p, path, ["number", "protocol", "name", "targetPort"]);
    if (!port) return [];
    const number = r.integer(port.number, [...path, "number"], 1, 65535, true);
    const name = r.string(port.name, [...path, "name"], true) ?? "";
    const protocol = (r.string(port.protocol, [...path, "protocol"]) ?? "").toUpperCase();
    if (!SERVICE_PROTOCOLS.includes(protocol)) r.error([...path, "protocol"], `unknown protocol "${protocol}"`);
    const targetPort = r.integer(port.targetPort, [...path, "targetPort"], 1, 65535);
    if (number === undefined) return [];
    if (seenPorts.has(number)) r.error([...path, "number"], `port ${number} is declared twice`);
    seenPorts.add(number);
    return [{ number, name, protocol, targetPort }];
  });
  if (ports.length === 0) r.error(["spec", "ports"], "at least one port is required");
  const selector = r.object(spec.workloadSelector, ["spec", "workloadSelector"], ["labels"]);
  const endpoints = r.list(spec.endpoints, ["spec", "endpoints"]).flatMap((e, i) => {
    const ep = readWorkloadEndpoint(r, e, ["spec", "endpoints", i], resolution);
    return ep ? [ep] : [];
  });
  if (selector && spec.endpoints !== undefined) r.error(["spec", "workloadSelector"], "only one of endpoints or workloadSelector may be set");
  if (resolution === "NONE" && (endpoints.length > 0 || selector)) r.error(["spec", "resolution"], "resolution NONE takes no endpoints (traffic goes to the requested address)");
  return {
    ...meta,
    hosts,
    addresses,
    ports,
    resolution,
    location,
    endpoints,
    workloadSelector: selector ? r.stringMap(selector.labels, ["spec", "workloadSelector", "labels"]) : undefined,
  };
}

function readWorkloadEndpoint(r: FieldReader, value: unknown, path: FieldPath, resolution: string): WorkloadEndpoint | undefined {
  const e = r.object(value, path, ["address", "ports", "labels", "network", "locality", "serviceAccount", "weight"]);
  if (!e) return undefined;
  const address = r.string(e.address, [...path, "address"], true);
  const portsObj = r.object(e.ports, [...path, "ports"], Object.keys((e.ports as Obj | null) ?? {})) ?? {};
  const ports: Record<string, number> = {};
  for (const [name, v] of Object.entries(portsObj)) {
    const n = r.integer(v, [...path, "ports", name], 1, 65535);
    if (n !== undefined) ports[name] = n;
  }
  const labels = r.stringMap(e.labels, [...path, "labels"]);
  // The workload's identity: what ISTIO_MUTUAL verifies the peer against (it was read and then dropped before).
  const serviceAccount = r.string(e.serviceAccount, [...path, "serviceAccount"]);
  // A uint32 in Istio's API; 0 (or none) is 1, as istiod's GetLoadBalancingWeight() reads it.
  const weight = r.integer(e.weight, [...path, "weight"], 0, 2 ** 32 - 1) || undefined;
  if (!address) return undefined;
  if (address.startsWith("unix://")) {
    r.error([...path, "address"], "unix domain socket endpoints are not supported yet");
    return undefined;
  }
  if (resolution === "STATIC" && isIP(address) === 0) {
    r.error([...path, "address"], `resolution STATIC needs an IP address, got "${address}" (use resolution DNS for names)`);
    return undefined;
  }
  return { address, ports, labels, ...(serviceAccount ? { serviceAccount } : {}), ...(weight !== undefined && weight !== 1 ? { weight } : {}) };
}

function readWorkloadEntry(r: FieldReader, top: Obj): WorkloadEntryModel | undefined {
  const spec = top.spec;
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const meta = readMeta(r, top, "WorkloadEntry", (spec as Obj) ?? {});
  const endpoint = readWorkloadEndpoint(r, spec, ["spec"], "STATIC");
  return endpoint ? { ...meta, endpoint } : undefined;
}
