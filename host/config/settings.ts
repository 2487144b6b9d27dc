// The instio settings document: what Istio keeps in MeshConfig, ProxyConfig and
// the pod spec, for a proxy that runs from files.
//
//   apiVersion: instio.dev/v1alpha1
//   kind: ProxySettings
//   spec:
//     namespace: default
//     rootNamespace: istio-system     # MeshConfig rootNamespace: mesh-wide security policies live here
//     labels: {app: productpage, version: v1}
//     outboundTrafficPolicy: {mode: ALLOW_ANY}
//     listeners:
//       outbound: {address: 127.0.0.1, port: 15001, engine: h1}     # engine: h1 | uws | node | h2c
//         # tls: {certFile: a.pem, keyFile: a.key, sni: [{hosts: [b.example], certFile: b.pem, keyFile: b.key}]}
//       inbound:  {address: 0.0.0.0, port: 15006, appPort: 9080}
//     http: {maxRequestHeadersKb: 60, maxHeadersCount: 100, requestHeadersTimeout: 60s, idleTimeout: 1h, streamIdleTimeout: 5m}
//     passthrough: {allowLoopback: false}   # passthrough to 127.0.0.0/8, ::1 (never to the proxy's own ports)
//     admin: {address: 127.0.0.1, port: 15000}
//     workload: {name: productpage-v1, cluster: Kubernetes}
//     agent: {address: 0.0.0.0, statusPort: 15020, prometheusPort: 15090, healthPort: 15021,  # enabled: false to turn off
//             appMetrics: {port: 9090, path: /metrics}}                                     # merged into 15020
//     accessLog: {path: /dev/stdout, format: TEXT}
//     drain: {duration: 5s, exitOnZeroActiveConnections: false}
//     concurrency: 2            # serving threads, as ProxyConfig.concurrency (0: one per CPU)
//     dns: {servers: ["10.0.0.10:53"], refreshRate: 60s}   # servers unset: the system resolver
//     healthChecks:                                        # active HTTP checks, per service host
//     - {host: reviews, port: 9080, path: /healthz, interval: 5s, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1}

import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { resolveHost } from "./hosts.js";
import type { FieldReader, Obj } from "./fields.js";
import type { HttpSettings, ListenerEngine, ListenerSettings, OutboundTrafficPolicy, Settings, TlsSettings } from "./model.js";

export const SETTINGS_API_VERSION = "instio.dev/v1alpha1";
export const SETTINGS_KIND = "ProxySettings";

/** Serving threads at most: Envoy has no limit, but each thread here is a V8 isolate of its own. */
export const MAX_CONCURRENCY = 64;

/** The serving threads a `concurrency` of 0..MAX_CONCURRENCY asks for: 0 is one per CPU, as Istio's ProxyConfig. */
export function servingThreads(concurrency: number): number {
  return concurrency === 0 ? Math.min(availableParallelism(), MAX_CONCURRENCY) : concurrency;
}

/** Why these listeners cannot serve from `threads` threads (uWebSockets.js binds its own sockets), or undefined. */
export function concurrencyProblem(threads: number, s: Pick<Settings, "outbound" | "inbound">): string | undefined {
  if (threads > 1 && (s.outbound.engine === "uws" || s.inbound?.engine === "uws")) return `concurrency ${threads} needs listeners on the h1, node or h2c engine: the uws engine serves from one thread`;
  return undefined;
}

export function defaultSettings(): Settings {
  return {
    namespace: "default",
    rootNamespace: "istio-system",
    labels: {},
    outboundTrafficPolicy: "ALLOW_ANY",
    outbound: { address: "127.0.0.1", port: 15001, engine: "h1", tls: undefined, capture: false },
    http: defaultHttpSettings(),
    passthrough: { allowLoopback: false },
    inbound: undefined,
    admin: { address: "127.0.0.1", port: 15000 },
    workload: { name: "unknown", cluster: "Kubernetes" },
    agent: { address: "0.0.0.0", statusPort: 15020, prometheusPort: 15090, healthPort: 15021, appMetrics: undefined },
    accessLog: undefined,
    drain: { durationMs: 5000, exitOnZeroActiveConnections: false },
    concurrency: 1,
    // Istio's mesh dnsRefreshRate default.
    dns: { servers: undefined, refreshRateMs: 60_000 },
    healthChecks: [],
    source: undefined,
  };
}

/**
 * Envoy's HCM defaults, except the request-headers timeout: Envoy has none by
 * default, which leaves a slowloris client a connection for as long as it
 * trickles bytes; instio gives a request 60 s to send its headers (node:http's
 * default).
 */
export function defaultHttpSettings(): HttpSettings {
  return { maxRequestHeadersBytes: 60 * 1024, maxHeadersCount: 100, requestHeadersTimeoutMs: 60_000, idleTimeoutMs: 3_600_000, streamIdleTimeoutMs: 300_000 };
}

export function readSettings(r: FieldReader, top: Obj): Settings {
  const s = defaultSettings();
  s.source = r.doc.locate([]);
  r.object(top.metadata, ["metadata"], ["name", "namespace", "labels", "annotations"]);
  const spec = r.object(top.spec, ["spec"], ["namespace", "rootNamespace", "labels", "outboundTrafficPolicy", "listeners", "http", "passthrough", "admin", "workload", "agent", "accessLog", "drain", "concurrency", "dns", "healthChecks"]);
  if (!spec) return s;
  s.namespace = r.string(spec.namespace, ["spec", "namespace"]) || s.namespace;
  s.rootNamespace = r.string(spec.rootNamespace, ["spec", "rootNamespace"]) || s.rootNamespace;
  s.labels = r.stringMap(spec.labels, ["spec", "labels"]);
  const otp = r.object(spec.outboundTrafficPolicy, ["spec", "outboundTrafficPolicy"], ["mode"]);
  if (otp) s.outboundTrafficPolicy = r.oneOf<OutboundTrafficPolicy>(otp.mode, ["spec", "outboundTrafficPolicy", "mode"], ["ALLOW_ANY", "REGISTRY_ONLY"]) ?? s.outboundTrafficPolicy;
  const listeners = r.object(spec.listeners, ["spec", "listeners"], ["outbound", "inbound"]);
  if (listeners) {
    s.outbound = readListener(r, listeners.outbound, ["spec", "listeners", "outbound"], s.outbound, []);
    if (listeners.inbound !== undefined) {
      const base = readListener(r, listeners.inbound, ["spec", "listeners", "inbound"], { address: "0.0.0.0", port: 15006, engine: "h1", tls: undefined, capture: false }, ["appAddress", "appPort"]);
      const inbound = (listeners.inbound ?? {}) as Obj;
      // With capture, each connection names its application port.
      const appPort = base.capture ? 0 : r.integer(inbound.appPort, ["spec", "listeners", "inbound", "appPort"], 1, 65535, true);
      if (base.capture && inbound.appPort !== undefined) r.error(["spec", "listeners", "inbound", "appPort"], "a capturing inbound listener forwards each connection to the port it was going to: remove appPort");
      const appAddress = address(r, inbound.appAddress, ["spec", "listeners", "inbound", "appAddress"]) ?? "127.0.0.1";
      if (appPort !== undefined) s.inbound = { ...base, appAddress, appPort };
    }
  }
  const http = r.object(spec.http, ["spec", "http"], ["maxRequestHeadersKb", "maxHeadersCount", "requestHeadersTimeout", "idleTimeout", "streamIdleTimeout"]);
  if (http) {
    const d = s.http;
    const kb = r.integer(http.maxRequestHeadersKb, ["spec", "http", "maxRequestHeadersKb"], 1, 8192); // Envoy's limits: 1..8192
    s.http = {
      maxRequestHeadersBytes: kb === undefined ? d.maxRequestHeadersBytes : kb * 1024,
      maxHeadersCount: r.integer(http.maxHeadersCount, ["spec", "http", "maxHeadersCount"], 1, 10_000) ?? d.maxHeadersCount,
      requestHeadersTimeoutMs: r.duration(http.requestHeadersTimeout, ["spec", "http", "requestHeadersTimeout"]) ?? d.requestHeadersTimeoutMs,
      idleTimeoutMs: r.duration(http.idleTimeout, ["spec", "http", "idleTimeout"]) ?? d.idleTimeoutMs,
      streamIdleTimeoutMs: r.duration(http.streamIdleTimeout, ["spec", "http", "streamIdleTimeout"]) ?? d.streamIdleTimeoutMs,
    };
  }
  const passthrough = r.object(spec.passthrough, ["spec", "passthrough"], ["allowLoopback"]);
  if (passthrough) s.passthrough = { allowLoopback: r.boolean(passthrough.allowLoopback, ["spec", "passthrough", "allowLoopback"]) ?? false };
  const admin = r.object(spec.admin, ["spec", "admin"], ["address", "port"]);
  if (admin) {
    s.admin = {
      address: address(r, admin.address, ["spec", "admin", "address"]) ?? s.admin.address,
      port: r.integer(admin.port, ["spec", "admin", "port"], 0, 65535) ?? s.admin.port,
    };
  }
  const workload = r.object(spec.workload, ["spec", "workload"], ["name", "cluster"]);
  if (workload) {
    s.workload = {
      name: r.string(workload.name, ["spec", "workload", "name"]) || s.workload.name,
      cluster: r.string(workload.cluster, ["spec", "workload", "cluster"]) || s.workload.cluster,
    };
  }
  const agent = r.object(spec.agent, ["spec", "agent"], ["enabled", "address", "statusPort", "prometheusPort", "healthPort", "appMetrics"]);
  if (agent && r.boolean(agent.enabled, ["spec", "agent", "enabled"]) === false) s.agent = undefined;
  else if (agent) {
    const port = (key: string, fallback: number): number => r.integer(agent[key], ["spec", "agent", key], 0, 65535) ?? fallback;
    s.agent = {
      address: address(r, agent.address, ["spec", "agent", "address"]) ?? "0.0.0.0",
      statusPort: port("statusPort", 15020),
      prometheusPort: port("prometheusPort", 15090),
      healthPort: port("healthPort", 15021),
      appMetrics: undefined,
    };
    // Istio's prometheus.io/port and /path annotations: the app's metrics merged into 15020.
    const app = r.object(agent.appMetrics, ["spec", "agent", "appMetrics"], ["port", "path"]);
    if (app) {
      const appPort = r.integer(app.port, ["spec", "agent", "appMetrics", "port"], 1, 65535, true);
      const path = r.string(app.path, ["spec", "agent", "appMetrics", "path"]) ?? "/metrics";
      if (!path.startsWith("/")) r.error(["spec", "agent", "appMetrics", "path"], `must start with "/", got "${path}"`);
      else if (appPort !== undefined) s.agent.appMetrics = { port: appPort, path };
    }
  }
  const log = r.object(spec.accessLog, ["spec", "accessLog"], ["path", "format"]);
  if (log) {
    const path = r.string(log.path, ["spec", "accessLog", "path"], true);
    const format = r.oneOf<"TEXT" | "JSON">(log.format, ["spec", "accessLog", "format"], ["TEXT", "JSON"]) ?? "TEXT";
    if (path) s.accessLog = { path, format };
  }
  const concurrency = r.integer(spec.concurrency, ["spec", "concurrency"], 0, MAX_CONCURRENCY);
  if (concurrency !== undefined) s.concurrency = servingThreads(concurrency);
  const problem = concurrencyProblem(s.concurrency, s);
  if (problem) r.error(["spec", "concurrency"], problem);
  const drain = r.object(spec.drain, ["spec", "drain"], ["duration", "exitOnZeroActiveConnections"]);
  if (drain) {
    s.drain = {
      durationMs: r.duration(drain.duration, ["spec", "drain", "duration"]) ?? s.drain.durationMs,
      exitOnZeroActiveConnections: r.boolean(drain.exitOnZeroActiveConnections, ["spec", "drain", "exitOnZeroActiveConnections"]) ?? false,
    };
  }
  const dns = r.object(spec.dns, ["spec", "dns"], ["servers", "refreshRate"]);
  if (dns) {
    const servers = dns.servers === undefined ? undefined : r.stringList(dns.servers, ["spec", "dns", "servers"]);
    s.dns = { servers, refreshRateMs: r.duration(dns.refreshRate, ["spec", "dns", "refreshRate"], 100) ?? s.dns.refreshRateMs };
  }
  s.healthChecks = r.list(spec.healthChecks, ["spec", "healthChecks"]).flatMap((h, i) => {
    const at = ["spec", "healthChecks", i];
    const hc = r.object(h, at, ["host", "port", "path", "interval", "timeout", "unhealthyThreshold", "healthyThreshold"]);
    if (!hc) return [];
    const host = r.string(hc.host, [...at, "host"], true);
    const path = r.string(hc.path, [...at, "path"]) ?? "/";
    if (!path.startsWith("/")) r.error([...at, "path"], `must start with "/", got "${path}"`);
    if (host === undefined) return [];
    return [{
      host: resolveHost(host, s.namespace),
      port: r.integer(hc.port, [...at, "port"], 1, 65535),
      path,
      intervalMs: r.duration(hc.interval, [...at, "interval"], 10) ?? 5000,
      timeoutMs: r.duration(hc.timeout, [...at, "timeout"], 1) ?? 1000,
      unhealthyThreshold: r.integer(hc.unhealthyThreshold, [...at, "unhealthyThreshold"], 1, 1000) ?? 2,
      healthyThreshold: r.integer(hc.healthyThreshold, [...at, "healthyThreshold"], 1, 1000) ?? 1,
    }];
  });
  return s;
}

function readListener(r: FieldReader, value: unknown, path: (string | number)[], defaults: ListenerSettings, extra: string[]): ListenerSettings {
  const l = r.object(value, path, ["address", "port", "engine", "tls", "capture", ...extra]);
  if (!l) return defaults;
  const capture = r.boolean(l.capture, [...path, "capture"]) ?? false;
  if (capture && (l.tls !== undefined || (l.engine !== undefined && l.engine !== "h1"))) r.error([...path, "capture"], "a capturing listener is served by instio's own HTTP/1.1 listener (engine h1), without tls");
  const tls = readTls(r, l.tls, [...path, "tls"]);
  let engine = r.oneOf<ListenerEngine>(l.engine, [...path, "engine"], ["h1", "uws", "node", "h2c"]) ?? defaults.engine;
  if (tls) {
    // TLS negotiates HTTP/2 or HTTP/1.1 by ALPN, which only node:http2 can serve (this uWS build has no HTTP/2).
    if (l.engine === "h1" || l.engine === "uws" || l.engine === "h2c") r.error([...path, "engine"], `a TLS listener is served by node:http2 (ALPN h2 and http/1.1); remove engine or set it to node, got "${String(l.engine)}"`);
    engine = "node";
  }
  return {
    address: address(r, l.address, [...path, "address"]) ?? defaults.address,
    port: r.integer(l.port, [...path, "port"], 0, 65535) ?? defaults.port,
    engine,
    tls,
    capture,
  };
}

function readTls(r: FieldReader, value: unknown, path: (string | number)[]): TlsSettings | undefined {
  const t = r.object(value, path, ["certFile", "keyFile", "sni"]);
  if (!t) return undefined;
  const certFile = r.string(t.certFile, [...path, "certFile"], true);
  const keyFile = r.string(t.keyFile, [...path, "keyFile"], true);
  const sni = r.list(t.sni, [...path, "sni"]).flatMap((e, i) => {
    const at = [...path, "sni", i];
    const s = r.object(e, at, ["hosts", "certFile", "keyFile"]);
    if (!s) return [];
    const hosts = r.stringList(s.hosts, [...at, "hosts"]).map((h) => h.toLowerCase());
    if (hosts.length === 0) r.error([...at, "hosts"], "at least one host is required");
    const cert = r.string(s.certFile, [...at, "certFile"], true);
    const key = r.string(s.keyFile, [...at, "keyFile"], true);
    return cert && key ? [{ hosts, certFile: cert, keyFile: key }] : [];
  });
  if (!certFile || !keyFile) return undefined;
  const tls = { certFile: r.configPath(certFile), keyFile: r.configPath(keyFile), sni: sni.map((e) => ({ ...e, certFile: r.configPath(e.certFile), keyFile: r.configPath(e.keyFile) })) };
  r.certificates(path, tls);
  tls.sni.forEach((e, i) => r.certificates([...path, "sni", i], e));
  return tls;
}

function address(r: FieldReader, value: unknown, path: (string | number)[]): string | undefined {
  const a = r.string(value, path);
  if (a !== undefined && isIP(a) === 0) {
    r.error(path, `must be an IP address, got "${a}"`);
    return undefined;
  }
  return a;
}
