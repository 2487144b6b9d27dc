// Envoy's admin interface (default 127.0.0.1:15000) and Istio's agent ports
// (15020 merged metrics and health, 15090 Envoy metrics, 15021 readiness).

import { X509Certificate } from "node:crypto";
import { get as httpGet } from "node:http";
import type { ManagedCluster } from "../cluster/cluster.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { Logger, LogLevel } from "../log.js";
import { LOG_LEVELS } from "../log.js";
import type { Lifecycle } from "../proxy/lifecycle.js";
import type { Listener } from "../listeners/listener.js";
import type { SnapshotHolder } from "../proxy/snapshot.js";
import type { Telemetry } from "../telemetry/telemetry.js";
import type { Registry } from "prom-client";
import { envoyStats, statsFilter, type Stat } from "./envoy-stats.js";
import { isLocal, send, serveEndpoints, type Route } from "./http-endpoint.js";
import type { DumpSource } from "./config-dump.js";

import { VERSION } from "../version.js";

export interface AdminContext {
  holder: SnapshotHolder;
  telemetry: Telemetry;
  lifecycle: Lifecycle;
  logger: Logger;
  listeners: () => { name: string; address: string; port: number; engine: string }[];
  reloads: { applied: number; rejected: number };
  /** With --xds: the control plane, the protocol, this node and the resources it sent (for /config_dump). */
  xds?: () => DumpSource["xds"];
  /** From an Envoy bootstrap's static_resources: those resources (for /config_dump). */
  staticResources?: DumpSource["staticResources"];
  /** The workload certificate in use, when the proxy has one (for /certs). */
  certificate?: () => { chain: string[]; notBefore: Date; notAfter: Date } | undefined;
  /** Every serving thread's metrics, summed (the telemetry's own registry with one thread). */
  metrics?: () => Promise<Registry>;
  /** The log level changed through /logging: the other serving threads follow. */
  logLevel?: (level: LogLevel) => void;
}

/** instio's own view of the active snapshot (?format=instio): settings, virtual hosts with their routes in match order, clusters. */
function configDump(ctx: AdminContext): object {
  const s = ctx.holder.current;
  const { table, entries, routes, clusters, virtualHosts, settings } = s.config;
  return {
    version: s.version,
    loadedAt: s.createdAt.toISOString(),
    reloads: ctx.reloads,
    settings,
    virtualHosts: virtualHosts.map((vh, v) => {
      const { entryStart, entryCount } = table.virtualHosts[v]!;
      const vhostRoutes = [];
      for (let i = entryStart; i < entryStart + entryCount; i++) {
        const entry = table.entries[i]!;
        vhostRoutes.push({
          name: entries[i]!.name,
          virtualService: routes[entry.route]!.virtualService,
          match: { ...entry, route: undefined },
          destinations: table.routes[entry.route]!.destinations.map((d) => ({ cluster: clusters[d.cluster]?.name ?? "(missing: 503 NC)", weight: d.weight })),
        });
      }
      return { ...vh, routes: vhostRoutes };
    }),
    clusters,
  };
}

/** Envoy's /certs: each certificate's serial, SANs, validity and days left; the trust bundle as ca_cert. */
function certificatesDump(ctx: AdminContext): object[] {
  const cert = ctx.certificate?.();
  if (!cert) return [];
  const describe = (pem: string): object => {
    const c = new X509Certificate(pem);
    return {
      serial_number: c.serialNumber.toLowerCase(),
      subject_alt_names: (c.subjectAltName ?? "").split(", ").filter((s) => s !== "").map((s) => (s.startsWith("URI:") ? { uri: s.slice(4) } : { dns: s.replace(/^DNS:/, "") })),
      days_until_expiration: String(Math.floor((new Date(c.validTo).getTime() - Date.now()) / 86_400_000)),
      valid_from: new Date(c.validFrom).toISOString(),
      expiration_time: new Date(c.validTo).toISOString(),
    };
  };
  return [{ ca_cert: [describe(cert.chain.at(-1)!)], cert_chain: cert.chain.slice(0, -1).map(describe) }];
}

interface HostStatus {
  address: string;
  rq_active: number;
  rq_total: number;
  cx_active: number;
  health_flags: string;
  weight: number;
}

/** Envoy's health flags: /failed_active_hc and /failed_outlier_check, or "healthy". */
function healthFlags(cluster: ManagedCluster, ep: UpstreamEndpoint): string {
  const flags = (cluster.health && !ep.healthy ? "/failed_active_hc" : "") + (cluster.outlier && ep.ejected ? "/failed_outlier_check" : "");
  return flags || "healthy";
}

/** Clusters, their endpoints and per-endpoint counters, as Envoy's /clusters. */
function clusterStatus(ctx: AdminContext): { name: string; hosts: HostStatus[] }[] {
  const s = ctx.holder.current;
  return s.clusters.map((cluster) => ({
    name: cluster.info.name,
    hosts: cluster.members.map((ep) => {
      const dispatcher = cluster.dispatcher;
      const pools = "stats" in dispatcher ? dispatcher.stats : {};
      const pool = pools[ep.origin] as { connected?: number | boolean } | undefined;
      return {
        address: ep.hostPort,
        rq_active: ep.inFlight,
        rq_total: ep.requests,
        cx_active: typeof pool?.connected === "number" ? pool.connected : pool?.connected ? 1 : 0,
        // Envoy's flags for an endpoint failing active health checks or ejected by outlier detection.
        health_flags: healthFlags(cluster, ep),
        weight: ep.weight,
      };
    }),
  }));
}

function clustersText(ctx: AdminContext): string {
  const lines: string[] = [];
  for (const c of clusterStatus(ctx)) {
    lines.push(`${c.name}::observability_name::${c.name}`);
    for (const h of c.hosts) {
      for (const key of ["cx_active", "rq_active", "rq_total", "health_flags", "weight"] as const) lines.push(`${c.name}::${h.address}::${key}::${h[key]}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** Envoy's /stats: its text form, the Prometheus series under Envoy's names, filtered by an RE2 pattern. */
async function statsText(ctx: AdminContext, filter: ((name: string) => boolean) | undefined, usedOnly: boolean): Promise<Stat[]> {
  const all = envoyStats((await (await registry(ctx)).getMetricsAsJSON()) as unknown as Parameters<typeof envoyStats>[0]);
  return all.filter((s) => (!usedOnly || s.value !== 0) && (!filter || filter(s.name)));
}

function registry(ctx: AdminContext): Promise<Registry> {
  return ctx.metrics ? ctx.metrics() : Promise.resolve(ctx.telemetry.metrics.registry);
}

async function prometheus(ctx: AdminContext): Promise<string> {
  return (await registry(ctx)).metrics();
}

export function adminRoutes(ctx: AdminContext): Record<string, Route> {
  const ok = (res: Parameters<Route["handle"]>[1]): void => send(res, 200, "OK\n");
  return {
    "/ready": { method: "GET", help: "server state: 200 LIVE, 503 while draining", handle: (_q, res) => send(res, ctx.lifecycle.ready ? 200 : 503, `${ctx.lifecycle.state}\n`) },
    "/stats": {
      method: "GET",
      help: "statistics in Envoy's text form (?filter=RE2, ?usedonly, ?format=json|prometheus)",
      handle: async (_q, res, query) => {
        if (query.get("format") === "prometheus") return send(res, 200, await prometheus(ctx), ctx.telemetry.metrics.registry.contentType);
        let filter: ((name: string) => boolean) | undefined;
        try {
          filter = query.has("filter") ? statsFilter(query.get("filter")!) : undefined;
        } catch (err) {
          return send(res, 400, `Invalid re2 regex: ${(err as Error).message}\n`);
        }
        const stats = await statsText(ctx, filter, query.has("usedonly"));
        if (query.get("format") === "json") return send(res, 200, JSON.stringify({ stats }, null, 2), "application/json");
        send(res, 200, stats.map((s) => `${s.name}: ${s.value}`).join("\n") + "\n");
      },
    },
    "/stats/prometheus": { method: "GET", help: "statistics in Prometheus text format", handle: async (_q, res) => send(res, 200, await prometheus(ctx), ctx.telemetry.metrics.registry.contentType) },
    "/config_dump": {
      method: "GET",
      help: "the active config in Envoy's ConfigDump shape (?include_eds; ?format=instio for instio's compiled view)",
      handle: async (_q, res, query) => {
        if (query.get("format") === "instio") return send(res, 200, JSON.stringify(configDump(ctx), null, 2), "application/json");
        const { envoyConfigDump } = await import("./config-dump.js");
        const s = ctx.holder.current;
        send(res, 200, JSON.stringify(envoyConfigDump({ config: s.config, version: s.version, createdAt: s.createdAt, xds: ctx.xds?.(), staticResources: ctx.staticResources }, query.has("include_eds")), null, 2), "application/json");
      },
    },
    "/certs": {
      method: "GET",
      help: "the workload certificate and its trust bundle, as Envoy's /certs",
      handle: (_q, res) => send(res, 200, JSON.stringify({ certificates: certificatesDump(ctx) }, null, 2), "application/json"),
    },
    "/clusters": {
      method: "GET",
      help: "clusters, endpoints, health and counters (?format=json)",
      handle: (_q, res, query) => (query.get("format") === "json" ? send(res, 200, JSON.stringify({ cluster_statuses: clusterStatus(ctx) }, null, 2), "application/json") : send(res, 200, clustersText(ctx))),
    },
    "/listeners": { method: "GET", help: "listeners and their addresses", handle: (_q, res) => send(res, 200, ctx.listeners().map((l) => `${l.name}::${l.address}:${l.port} (${l.engine})`).join("\n") + "\n") },
    "/server_info": {
      method: "GET",
      help: "version, state, uptime, options",
      handle: (_q, res) => {
        const s = ctx.holder.current.config.settings;
        const uptime = `${Math.floor((Date.now() - ctx.lifecycle.startedAt) / 1000)}s`;
        const info = {
          version: `instio/${VERSION}/node-${process.version}`,
          state: ctx.lifecycle.state,
          uptime_current_epoch: uptime,
          uptime_all_epochs: uptime,
          config_version: ctx.holder.current.version,
          command_line_options: { drain_time_s: s.drain.durationMs / 1000, exit_on_zero_active_connections: s.drain.exitOnZeroActiveConnections, log_level: ctx.logger.level },
          node: { id: `sidecar~${s.workload.name}.${s.namespace}`, cluster: s.workload.cluster },
        };
        send(res, 200, JSON.stringify(info, null, 2), "application/json");
      },
    },
    "/quitquitquit": {
      method: "POST",
      help: "exit cleanly",
      handle: (_q, res) => {
        res.on("finish", () => void ctx.lifecycle.quit());
        ok(res);
      },
    },
    "/healthcheck/fail": { method: "POST", help: "fail readiness (server state DRAINING)", handle: (_q, res) => (ctx.lifecycle.failHealthCheck(true), ok(res)) },
    "/healthcheck/ok": { method: "POST", help: "restore readiness", handle: (_q, res) => (ctx.lifecycle.failHealthCheck(false), ok(res)) },
    "/drain_listeners": {
      method: "POST",
      help: "drain listeners (?graceful, ?inboundonly)",
      handle: (_q, res, query) => {
        ctx.lifecycle.drainListeners({ graceful: query.has("graceful"), inboundOnly: query.has("inboundonly") });
        ok(res);
      },
    },
    "/logging": {
      method: "POST",
      help: "show or set the log level (?level=trace|debug|info|warning|error|critical|off)",
      handle: (_q, res, query) => {
        const level = query.get("level");
        if (level !== null) {
          if (!(LOG_LEVELS as readonly string[]).includes(level)) return send(res, 400, `error: unknown logger level "${level}"; levels: ${LOG_LEVELS.join(", ")}\n`);
          ctx.logger.setLevel(level as LogLevel);
          ctx.logLevel?.(level as LogLevel);
        }
        send(res, 200, `active loggers:\n  instio: ${ctx.logger.level}\n`);
      },
    },
  };
}

export function startAdmin(address: string, port: number, ctx: AdminContext): Promise<Listener> {
  return serveEndpoints(address, port, adminRoutes(ctx), "admin commands are:");
}

/** Istio's agent ports; mutations only from this machine, as pilot-agent. */
export async function startAgentPorts(ctx: AdminContext): Promise<Listener[]> {
  const agent = ctx.holder.current.config.settings.agent;
  if (!agent) return [];
  const healthz: Route = { method: "GET", help: "200 when ready, 503 while starting or draining", handle: (_q, res) => send(res, ctx.lifecycle.ready ? 200 : 503, ctx.lifecycle.ready ? "" : `${ctx.lifecycle.state}\n`) };
  const metrics: Route = { method: "GET", help: "proxy metrics in Prometheus text format", handle: async (_q, res) => send(res, 200, await prometheus(ctx), ctx.telemetry.metrics.registry.contentType) };
  const localOnly = (action: () => void): Route["handle"] => (req, res) => {
    if (!isLocal(req)) return send(res, 403, "only allowed from localhost\n");
    res.on("finish", action);
    send(res, 200, "");
  };
  // 15020 merges the application's own metrics, as pilot-agent does for prometheus.io annotations.
  const merged: Route = {
    method: "GET",
    help: "proxy metrics merged with the application's",
    handle: async (_q, res) => {
      const own = await prometheus(ctx);
      const app = agent.appMetrics;
      if (!app) return send(res, 200, own, ctx.telemetry.metrics.registry.contentType);
      let appText = "";
      try {
        appText = await fetchText(`http://127.0.0.1:${app.port}${app.path}`, 5000);
      } catch (err) {
        ctx.logger.warn(`agent: application metrics at 127.0.0.1:${app.port}${app.path} unavailable: ${(err as Error).message}`);
      }
      send(res, 200, appText ? `${own}\n${appText.endsWith("\n") ? appText : `${appText}\n`}` : own, ctx.telemetry.metrics.registry.contentType);
    },
  };
  return Promise.all([
    serveEndpoints(agent.address, agent.statusPort, {
      "/stats/prometheus": merged,
      "/healthz/ready": healthz,
      "/quitquitquit": { method: "POST", help: "exit now", handle: localOnly(() => void ctx.lifecycle.quit()) },
      "/drain": { method: "POST", help: "start draining (native sidecar preStop)", handle: localOnly(() => ctx.lifecycle.startDrain()) },
    }, "istio agent (status port):"),
    serveEndpoints(agent.address, agent.prometheusPort, { "/stats/prometheus": metrics }, "envoy prometheus port:"),
    serveEndpoints(agent.address, agent.healthPort, { "/healthz/ready": healthz }, "health port:"),
  ]);
}

/** GETs `url` and resolves its body when the answer is 200 ("" otherwise); rejects on errors and after `timeoutMs`. */
function fetchText(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { timeout: timeoutMs }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve(res.statusCode === 200 ? text : ""));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}
