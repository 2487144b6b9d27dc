// One serving thread: its route core and clusters (the SnapshotHolder), the
// request pipeline, its telemetry and every listener a proxy serves on
// (outbound, inbound, gateway ports, TCP proxies, HTTP listeners of their own).
// The main thread runs one; with `concurrency: N` each worker thread runs one
// more (serving-worker.ts), as Envoy's workers each run every listener over the
// same config. What belongs to the process (admin and agent ports, the config
// source, DNS, the workload certificate, the drain lifecycle) is in server.ts.

import { splitAuthority, urlHost } from "../http/authority.js";
import type { CompiledConfig } from "../config/compile.js";
import { DEFAULT_CLUSTER_POLICY } from "../config/traffic-policy.js";
import type { HttpSettings, ListenerSettings } from "../config/model.js";
import type { Logger } from "../log.js";
import { Telemetry } from "../telemetry/telemetry.js";
import type { Downstream } from "../listeners/downstream.js";
import type { ManagedListener } from "./lifecycle.js";
import type { Listener, RequestHandler, UpgradeRouter } from "../listeners/listener.js";
import { decideUpgrade } from "../listeners/upgrade.js";
import { listenH2 } from "../listeners/listener-h2.js";
import { listenTcp, proxyConnection } from "../listeners/listener-tcp.js";
import { listenCapture, relayTcp } from "../listeners/listener-capture.js";
import { captureUnavailable, destinationParts } from "../listeners/original-destination.js";
import { INBOUND_PASSTHROUGH_SOURCE, type WorkloadIdentity } from "../cluster/pools.js";
import type { Socket } from "node:net";
import { listenH1 } from "../listeners/listener-h1.js";
import { PassthroughGuard } from "../pipeline/passthrough-guard.js";
import { StreamIdleTimeout } from "../pipeline/stream-idle.js";
import { listenNode } from "../listeners/listener-node.js";
import { listenUws, loadUws } from "../listeners/listener-uws.js";
import { ConfigUpdates } from "./config-updates.js";
import { handleInbound, type InboundApp } from "../pipeline/inbound.js";
import { listenInbound } from "../listeners/listener-inbound.js";
import { mtlsModeFor } from "../config/security-policy.js";
import { localPeerMetadata, PeerCache } from "../security/peer-metadata.js";
import { handleRequest } from "../pipeline/route.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { PipelineOptions } from "../pipeline/options.js";
import { SnapshotHolder } from "./snapshot.js";
import { SharedBreakerTable } from "../cluster/shared-breakers.js";
import { PluginRegistry } from "../proxy-wasm/plugin.js";
import { PluginMetrics } from "../proxy-wasm/plugin-metrics.js";
import { SharedState } from "../proxy-wasm/shared-state.js";
import { pluginHttpCall } from "../pipeline/plugin-calls.js";

/** Applications a capturing inbound listener remembers (address and port each); past it, the memo starts again. */
const MAX_CAPTURED_APPS = 256;

/** What a serving thread's requests count into and drain by: one runtime per direction, and one per bound HTTP listener. */
export interface ServingRuntimes {
  outbound: ListenerRuntime;
  inbound: ListenerRuntime;
  /** The runtime of an HTTP listener that routes by its own port (":PORT"). */
  bound(routePort: string): ListenerRuntime;
}

export interface ServingOptions {
  /** The config to serve first (DNS names already resolved). */
  config: CompiledConfig;
  /** Envoy's node id, for plugins and Istio's metadata exchange. */
  nodeId: string;
  /** A proxy in a mesh (a workload certificate or a control plane): Istio's metadata exchange is on. */
  inMesh: boolean;
  logger: Logger;
  runtimes: ServingRuntimes;
  /** Where each listener is registered to drain with the others (the Lifecycle, or a worker's own list). */
  drain: { add(listener: ManagedListener): void; remove(listener: Listener): void };
  /** The workload certificate now (undefined without one): upstream ISTIO_MUTUAL and inbound mTLS. */
  identity: WorkloadIdentity;
  /** Bind every listener with SO_REUSEPORT, beside the other serving threads' sockets. */
  reusePort: boolean;
  /** Which serving thread this is: 0 the main thread, 1.. the workers (for metrics and logs). */
  thread: number;
  /** The proxy's own ports this thread does not bind (admin, agent): passthrough never reaches them. */
  selfPorts?: readonly number[];
  /** Circuit-breaker counts shared by every serving thread (concurrency above 1): shared-breakers.ts's block. */
  breakers?: SharedArrayBuffer;
}

export interface Serving {
  holder: SnapshotHolder;
  updates: ConfigUpdates;
  telemetry: Telemetry;
  pipeline: PipelineOptions;
  /** Set by bind(). */
  outbound: Listener | undefined;
  inbound: Listener | undefined;
  /** The outbound and inbound listeners, as admin's /listeners names them. */
  listeners(): { name: string; address: string; port: number; engine: string }[];
  /** Binds every listener of the first config. */
  bind(): Promise<void>;
  /** Binds the TCP and port-routed HTTP listeners `config` has and closes those it no longer has; one sync at a time. */
  syncListeners(config: CompiledConfig): Promise<void>;
  /** Closes every listener and pool now (no drain). */
  close(): Promise<void>;
}

/**
 * A captured outbound connection that is not HTTP: the TCP route of its destination port when the config has one,
 * else Istio's PassthroughCluster (the original destination) under ALLOW_ANY, or BlackHoleCluster (closed) under
 * REGISTRY_ONLY.
 */
function captureOutboundTcp(holder: SnapshotHolder, socket: Socket, destination: string): void {
  const config = holder.current.config;
  const { port } = destinationParts(destination);
  if (config.tcpListeners.some((l) => l.port === port)) proxyConnection(holder, port, socket);
  else if (config.settings.outboundTrafficPolicy === "REGISTRY_ONLY") socket.destroy();
  else relayTcp(socket, destination);
}

async function listen(settings: ListenerSettings, http: HttpSettings, handler: RequestHandler, logger: Logger, reusePort: boolean, upgrades?: UpgradeRouter): Promise<Listener> {
  if (settings.tls || settings.engine === "h2c") return listenH2(settings, handler, (line) => logger.info(line), reusePort);
  if (settings.engine === "h1") {
    return listenH1(settings.address, settings.port, handler, upgrades, http, (err) => logger.error(`internal error in the HTTP/1.1 listener (connection closed): ${err.stack ?? err.message}`), reusePort);
  }
  if (settings.engine === "uws") {
    // Settings refuse uws with more than one serving thread: uWebSockets.js binds its own sockets.
    const { uws, reason } = loadUws();
    if (uws) return listenUws(uws, settings.address, settings.port, handler, upgrades);
    logger.warn("WARNING ***********************************************************************");
    logger.warn(`WARNING uWebSockets.js cannot load here (${reason});`);
    logger.warn("WARNING falling back to node:http for this listener: expect lower throughput.");
    logger.warn("WARNING ***********************************************************************");
  }
  return listenNode(settings.address, settings.port, handler, upgrades, http, reusePort);
}

/** A Gateway server's httpsRedirect: every request gets 301 to the same URL over https. */
const redirectToHttps: RequestHandler = (ds) => {
  const host = ds.authority ?? "";
  ds.sendLocal(301, ["location", `https://${splitAuthority(host).host}${ds.path}${ds.query === undefined ? "" : `?${ds.query}`}`], "");
  return { onDownstreamAborted() {}, onDownstreamWritable() {} };
};

export function createServing(o: ServingOptions): Serving {
  const { logger, runtimes, drain, reusePort } = o;
  const initial = o.config;
  const settings = initial.settings;
  // The telemetry reads the serving snapshot for its gauges; the holder binds each new snapshot's stats.
  const telemetry = new Telemetry(settings, () => holder.current, settings.inbound ? [runtimes.outbound, runtimes.inbound] : [runtimes.outbound], o.thread);
  const plugins = new PluginRegistry({
    logger,
    shared: new SharedState(),
    metrics: new PluginMetrics(telemetry.metrics.registry),
    node: {
      id: o.nodeId,
      metadata: { NAMESPACE: settings.namespace, WORKLOAD_NAME: settings.workload.name, CLUSTER_ID: settings.workload.cluster, LABELS: settings.labels },
    },
    httpCall: (cluster, headers, body, timeoutMs, done) => pluginHttpCall(holder, cluster, headers, body, timeoutMs, done),
    failed: (plugin) => telemetry.metrics.wasmFailures.inc({ plugin_name: plugin }),
  });
  const holder: SnapshotHolder = new SnapshotHolder(initial, (config) => telemetry.statsFor(config), plugins, o.breakers && new SharedBreakerTable(o.breakers));
  holder.pools.workloadIdentity = o.identity;
  const updates = new ConfigUpdates(holder, telemetry, logger);
  const pipeline: PipelineOptions = {
    holder,
    // Passthrough and shadow traffic without a cluster of its own uses the default pool.
    dispatcher: holder.pools.for("PassthroughCluster", DEFAULT_CLUSTER_POLICY.limits),
    passthrough: new PassthroughGuard(new Set(o.selfPorts), settings.passthrough.allowLoopback),
    streamIdle: new StreamIdleTimeout(settings.http.streamIdleTimeoutMs),
    observer: telemetry,
    peers: new PeerCache(),
    // Istio's metadata exchange, for a proxy in a mesh (a workload certificate or a control plane).
    localMetadata: o.inMesh ? localPeerMetadata({
      id: o.nodeId,
      name: settings.workload.name,
      namespace: settings.namespace,
      workload: settings.workload.name,
      cluster: settings.workload.cluster,
      labels: settings.labels,
    }) : undefined,
    onInternalError: (err) => {
      telemetry.metrics.internalErrors.inc();
      logger.error(`internal error while handling a request (answered 500): ${err.stack ?? err.message}`);
    },
  };
  const upgrades: UpgradeRouter = (req, done) => decideUpgrade(pipeline, req, done);
  const selfPorts = pipeline.passthrough.selfPorts;

  const gatewayPorts: Listener[] = [];
  // TCP proxy listeners from the Sidecar's egress listeners (from files they apply from startup, as the HTTP ones).
  const tcpListeners: Listener[] = [];
  /**
   * Over xDS, listeners come and go with LDS: TCP proxies, and HTTP listeners that bind a port of their
   * own (routing by it). The new ones are bound, the ones gone closed; a port that cannot be bound is logged.
   */
  const boundHttp: { address: string; port: number; listener: Listener }[] = [];
  const sync = async (config: CompiledConfig): Promise<void> => {
    const key = (l: { address: string; port: number }): string => `${l.address}:${l.port}`;
    // Under capture, connections reach these routes through 15001 by their destination port (Envoy binds none of them).
    const wantedTcp = new Set(settings.outbound.capture ? [] : config.tcpListeners.map(key));
    const wantedHttp = new Set(settings.outbound.capture ? [] : config.boundHttpListeners.map(key));
    for (const l of [...tcpListeners]) {
      if (wantedTcp.has(key(l))) continue;
      tcpListeners.splice(tcpListeners.indexOf(l), 1);
      await l.close();
      logger.info(`instio: TCP ${key(l)} closed (its listener is gone)`);
    }
    for (const b of [...boundHttp]) {
      if (wantedHttp.has(key(b))) continue;
      boundHttp.splice(boundHttp.indexOf(b), 1);
      drain.remove(b.listener);
      await b.listener.close();
      logger.info(`instio: HTTP ${key(b)} closed (its listener is gone)`);
    }
    try {
      for (const l of config.tcpListeners) {
        if (!wantedTcp.has(key(l)) || tcpListeners.some((t) => key(t) === key(l))) continue;
        tcpListeners.push(await listenTcp(l.address, l.port, holder, reusePort));
        logger.info(`instio: TCP ${key(l)}`);
      }
      for (const l of config.boundHttpListeners) {
        if (!wantedHttp.has(key(l)) || boundHttp.some((b) => key(b) === key(l))) continue;
        const runtime = runtimes.bound(`:${l.port}`);
        const listener = await listen({ ...settings.outbound, address: l.address, port: l.port, tls: undefined }, settings.http, (ds) => handleRequest(pipeline, runtime, ds), logger, reusePort, upgrades);
        boundHttp.push({ ...l, listener });
        selfPorts.add(listener.port);
        drain.add({ runtime, listener });
        logger.info(`instio: HTTP ${key(l)} (routes of its own)`);
      }
    } catch (err) {
      logger.error(`instio: a listener cannot bind: ${(err as Error).message}`);
    }
  };
  let synced = Promise.resolve();

  const serving: Serving = {
    holder,
    updates,
    telemetry,
    pipeline,
    outbound: undefined,
    inbound: undefined,
    listeners: () => {
      const named: [string, Listener | undefined][] = [["outbound", serving.outbound], ["inbound", serving.inbound]];
      return named.flatMap(([name, l]) => (l ? [{ name, address: l.address, port: l.port, engine: l.engine }] : []));
    },
    syncListeners: (config) => (synced = synced.then(() => sync(config))),
    bind: async () => {
      const capturing = settings.outbound.capture || settings.inbound?.capture === true;
      if (capturing) {
        const why = captureUnavailable();
        if (why !== undefined) throw new Error(`instio: cannot capture traffic: ${why}`);
      }
      const outboundHandler: RequestHandler = (ds) => handleRequest(pipeline, runtimes.outbound, ds);
      const outbound = (serving.outbound = settings.outbound.capture
        ? await listenCapture({
            address: settings.outbound.address,
            port: settings.outbound.port,
            http: settings.http,
            handler: outboundHandler,
            tcp: (socket, destination) => captureOutboundTcp(holder, socket, destination),
            onInternalError: (err) => logger.error(`internal error in the capturing outbound listener (connection closed): ${err.stack ?? err.message}`),
            reusePort,
          })
        : await listen(settings.outbound, settings.http, outboundHandler, logger, reusePort, upgrades));
      selfPorts.add(outbound.port);
      drain.add({ runtime: runtimes.outbound, listener: outbound });
      // Gateway server ports (ingress mode), on the outbound address: HTTPS terminates TLS; httpsRedirect answers 301.
      for (const g of initial.gatewayListeners) {
        if (g.passthrough) continue; // an SNI listener among the TCP listeners below
        const handler: RequestHandler = g.httpsRedirect ? redirectToHttps : outboundHandler;
        const l = await listen({ ...settings.outbound, address: g.bind ?? settings.outbound.address, port: g.port, tls: g.tls, engine: g.tls ? "node" : settings.outbound.engine }, settings.http, handler, logger, reusePort, upgrades);
        gatewayPorts.push(l);
        selfPorts.add(l.port);
        drain.add({ runtime: runtimes.outbound, listener: l });
        logger.info(`instio: gateway ${g.tls ? "HTTPS" : g.httpsRedirect ? "HTTP (redirect to HTTPS)" : "HTTP"} ${l.address}:${l.port}`);
      }
      await serving.syncListeners(initial);
      if (settings.inbound) serving.inbound = await bindInbound();
    },
    close: async () => {
      pipeline.streamIdle.stop();
      await synced;
      await Promise.all([serving.outbound?.close(), serving.inbound?.close(), ...tcpListeners.map((l) => l.close()), ...boundHttp.map((b) => b.listener.close()), ...gatewayPorts.map((l) => l.close())]);
      await holder.close();
    },
  };

  const bindInbound = async (): Promise<Listener> => {
    const app = settings.inbound!;
    const runtime = runtimes.inbound;
    const target: InboundApp = { origin: `http://${urlHost(app.appAddress)}:${app.appPort}`, clusterName: `inbound|${app.appPort}||`, address: app.appAddress, port: app.appPort };
    // Under capture, the app is where each connection was going (its pod address and port), reached from 127.0.0.6.
    const captured = new Map<string, InboundApp>();
    const capturedApp = (destination: string): InboundApp => {
      let a = captured.get(destination);
      if (!a) {
        const { address, port } = destinationParts(destination);
        a = { origin: `http://${destination}`, clusterName: `inbound|${port}||`, address, port, client: holder.pools.inboundPassthrough() };
        if (captured.size >= MAX_CAPTURED_APPS) captured.clear();
        captured.set(destination, a);
      }
      return a;
    };
    const handler: RequestHandler = app.capture ? (ds) => handleInbound(pipeline, runtime, ds, capturedApp(ds.originalDestination!)) : (ds: Downstream) => handleInbound(pipeline, runtime, ds, target);
    let inbound: Listener;
    if (app.engine === "h1" && !app.tls) {
      // PeerAuthentication's mTLS for the app's port, per connection from the serving config.
      inbound = await listenInbound({
        address: app.address,
        port: app.port,
        http: settings.http,
        handler,
        mode: (port) => mtlsModeFor(holder.current.config.inboundSecurity.mtls, port),
        capture: app.capture ? { tcp: (socket, destination) => relayTcp(socket, destination, INBOUND_PASSTHROUGH_SOURCE), ownPort: (port) => selfPorts.has(port) } : undefined,
        appPort: app.appPort,
        identity: o.identity,
        refused: (reason) => telemetry.metrics.inboundRefused.inc({ reason }),
        onInternalError: (err) => logger.error(`internal error in the inbound listener (connection closed): ${err.stack ?? err.message}`),
        reusePort,
      });
    } else {
      if (initial.inboundSecurity.mtls.mode !== "PERMISSIVE" || initial.inboundSecurity.mtls.ports.length > 0) logger.error(`instio: PeerAuthentication needs the inbound listener's default engine (h1, without tls); the ${app.engine} engine serves ${app.tls ? "its own TLS" : "plaintext"} whatever the policy says`);
      inbound = await listen(app, settings.http, handler, logger, reusePort);
    }
    selfPorts.add(inbound.port);
    drain.add({ runtime, listener: inbound });
    return inbound;
  };
  return serving;
}
