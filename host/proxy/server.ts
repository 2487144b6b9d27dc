// Starts a proxy: listeners, upstream connection pools, admin, config reload.

import { Agent } from "undici";
import type { CompiledConfig } from "../config/compile.js";
import { ConfigWatcher, logDiagnostics } from "../config/watch.js";
import { startAdmin } from "../admin/admin.js";
import type { ListenerSettings } from "../config/model.js";
import type { Downstream } from "./downstream.js";
import type { Listener, RequestHandler } from "./listener.js";
import { listenNode } from "./listener-node.js";
import { listenUws, loadUws } from "./listener-uws.js";
import { Exchange, handleRequest, type PipelineOptions } from "./pipeline.js";
import { SnapshotHolder } from "./snapshot.js";

/** Istio's mesh-wide connectTimeout default. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Istio's default upstream idle timeout (1 h). */
const UPSTREAM_IDLE_MS = 3_600_000;

export interface ProxyOptions {
  config: CompiledConfig;
  /** Watched for changes when given. */
  configPath?: string;
  log?: (line: string) => void;
  /** Called after each request (tests, access log). */
  onComplete?: (ex: Exchange) => void;
}

export interface RunningProxy {
  holder: SnapshotHolder;
  outbound: Listener;
  inbound: Listener | undefined;
  admin: Listener;
  watcher: ConfigWatcher | undefined;
  stats: { reloadsApplied: number; reloadsRejected: number };
  close(): Promise<void>;
}

async function listen(settings: ListenerSettings, handler: RequestHandler, log: (line: string) => void): Promise<Listener> {
  if (settings.engine === "uws") {
    const { uws, reason } = loadUws();
    if (uws) return listenUws(uws, settings.address, settings.port, handler);
    log("WARNING ***********************************************************************");
    log(`WARNING uWebSockets.js cannot load here (${reason});`);
    log("WARNING falling back to node:http for this listener: expect lower throughput.");
    log("WARNING ***********************************************************************");
  }
  return listenNode(settings.address, settings.port, handler);
}

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const holder = SnapshotHolder.initial(options.config);
  const dispatcher = new Agent({
    connect: { timeout: CONNECT_TIMEOUT_MS },
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const pipeline: PipelineOptions = { holder, dispatcher, selfPorts: new Set(), onComplete: options.onComplete };
  const settings = options.config.settings;

  const outbound = await listen(settings.outbound, (ds) => handleRequest(pipeline, ds), log);
  pipeline.selfPorts.add(outbound.port);
  let inbound: Listener | undefined;
  if (settings.inbound) {
    const app = settings.inbound;
    const host = app.appAddress.includes(":") ? `[${app.appAddress}]` : app.appAddress;
    const origin = `http://${host}:${app.appPort}`;
    const clusterName = `inbound|${app.appPort}||`;
    // Istio's inbound route is a catch-all to the local application.
    inbound = await listen(app, (ds: Downstream) => {
      const ex = new Exchange(pipeline, holder.current, ds);
      ex.clusterName = clusterName;
      ex.routeIndex = 0;
      ex.forward(-1, origin);
      return ex;
    }, log);
    pipeline.selfPorts.add(inbound.port);
  }

  const stats = { reloadsApplied: 0, reloadsRejected: 0 };
  let watcher: ConfigWatcher | undefined;
  if (options.configPath) {
    watcher = new ConfigWatcher(options.configPath, {
      applied: (config, diagnostics) => {
        logDiagnostics(diagnostics, log);
        const before = holder.current.config.settings;
        const s = holder.swap(config);
        stats.reloadsApplied++;
        if (JSON.stringify(before.outbound) !== JSON.stringify(config.settings.outbound) || JSON.stringify(before.inbound) !== JSON.stringify(config.settings.inbound) || JSON.stringify(before.admin) !== JSON.stringify(config.settings.admin)) {
          log("config: listener and admin addresses changed; they apply after a restart");
        }
        log(`config: version ${s.version} applied (${config.virtualHosts.length} virtual hosts, ${config.routes.length} routes, ${config.clusters.length} clusters)`);
      },
      rejected: (diagnostics) => {
        stats.reloadsRejected++;
        logDiagnostics(diagnostics, log);
        log(`config: rejected, still serving version ${holder.current.version}`);
      },
    });
    watcher.start();
  }
  const admin = await startAdmin(settings.admin.address, settings.admin.port, { holder, stats });
  pipeline.selfPorts.add(admin.port);

  return {
    holder,
    outbound,
    inbound,
    admin,
    watcher,
    stats,
    async close() {
      watcher?.stop();
      await outbound.close();
      await inbound?.close();
      await admin.close();
      await dispatcher.close();
    },
  };
}
