// Starts a proxy: listeners, upstream connection pools, telemetry, admin and
// agent ports, config reload and the shutdown lifecycle.

import { splitAuthority, urlHost } from "../http/authority.js";
import { compile, withEndpointsFrom, type CompiledConfig } from "../config/compile.js";
import type { ConfigDiagnostic } from "../config/diagnostics.js";
import { DEFAULT_CLUSTER_POLICY } from "../config/traffic-policy.js";
import { DnsDiscovery } from "../discovery/dns.js";
import { startAdmin, startAgentPorts, type AdminContext } from "../admin/admin.js";
import type { HttpSettings, ListenerSettings } from "../config/model.js";
import { ConfigWatcher } from "../config/watch.js";
import { Logger } from "../log.js";
import { Telemetry } from "../telemetry/telemetry.js";
import type { Downstream } from "../listeners/downstream.js";
import { Lifecycle } from "./lifecycle.js";
import type { Listener, RequestHandler, UpgradeRouter } from "../listeners/listener.js";
import { decideUpgrade } from "../listeners/upgrade.js";
import { listenH2 } from "../listeners/listener-h2.js";
import { listenTcp, proxyConnection } from "../listeners/listener-tcp.js";
import { listenCapture, relayTcp } from "../listeners/listener-capture.js";
import { captureUnavailable, destinationParts } from "../listeners/original-destination.js";
import { INBOUND_PASSTHROUGH_SOURCE } from "../cluster/pools.js";
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
import type { XdsClient } from "../xds/ads-client.js";
import type { NodeIdentity } from "../xds/node-identity.js";
import type { DumpedResource } from "../envoy/json.js";
import type { CertificateSource, WorkloadCertificates } from "../security/workload-certificates.js";
import { PluginRegistry, prepareModules } from "../proxy-wasm/plugin.js";
import { PluginMetrics } from "../proxy-wasm/plugin-metrics.js";
import { SharedState } from "../proxy-wasm/shared-state.js";
import { pluginHttpCall } from "../pipeline/plugin-calls.js";

export interface ProxyOptions {
  /** The config to serve; with `xds`, only its settings are used until the control plane's first config is applied. */
  config: CompiledConfig;
  /** Watched for changes when given. */
  configPath?: string;
  /** The Envoy resources `config` was translated from (an Envoy bootstrap's static_resources), for /config_dump. */
  staticResources?: ReadonlyMap<string, ReadonlyMap<string, DumpedResource>>;
  /** Take routes, clusters, endpoints and listeners from this control plane (ADS) instead of the config's resources. */
  xds?: { address: string; node: NodeIdentity; protocol?: "delta" | "sotw"; backoff?: { baseMs: number; maxMs: number } };
  /** The workload certificate: from the control plane's CA, or from files (Istio's /etc/certs). */
  certificates?: CertificateSource;
  /** Where the proxy's own log lines go (stderr by default). */
  log?: (line: string) => void;
  /** Called after a shutdown has closed everything (the CLI ends the process here). */
  onExit?: (code: number) => void;
}

export interface RunningProxy {
  holder: SnapshotHolder;
  outbound: Listener;
  inbound: Listener | undefined;
  admin: Listener;
  agentPorts: Listener[];
  watcher: ConfigWatcher | undefined;
  /** The ADS client, with `xds`. */
  xds: XdsClient | undefined;
  /** The workload certificate, with `certificates`. */
  certificates: WorkloadCertificates | undefined;
  telemetry: Telemetry;
  lifecycle: Lifecycle;
  /** Config updates applied and rejected, from every producer (file reloads, DNS). */
  updates: ConfigUpdates;
  /** Closes every listener and pool now (no drain). */
  close(): Promise<void>;
}

/** Applications a capturing inbound listener remembers (address and port each); past it, the memo starts again. */
const MAX_CAPTURED_APPS = 256;

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

async function listen(settings: ListenerSettings, http: HttpSettings, handler: RequestHandler, logger: Logger, upgrades?: UpgradeRouter): Promise<Listener> {
  if (settings.tls || settings.engine === "h2c") return listenH2(settings, handler, (line) => logger.info(line));
  if (settings.engine === "h1") {
    return listenH1(settings.address, settings.port, handler, upgrades, http, (err) => logger.error(`internal error in the HTTP/1.1 listener (connection closed): ${err.stack ?? err.message}`));
  }
  if (settings.engine === "uws") {
    const { uws, reason } = loadUws();
    if (uws) return listenUws(uws, settings.address, settings.port, handler, upgrades);
    logger.warn("WARNING ***********************************************************************");
    logger.warn(`WARNING uWebSockets.js cannot load here (${reason});`);
    logger.warn("WARNING falling back to node:http for this listener: expect lower throughput.");
    logger.warn("WARNING ***********************************************************************");
  }
  return listenNode(settings.address, settings.port, handler, upgrades, http);
}

/** A Gateway server's httpsRedirect: every request gets 301 to the same URL over https. */
const redirectToHttps: RequestHandler = (ds) => {
  const host = ds.authority ?? "";
  ds.sendLocal(301, ["location", `https://${splitAuthority(host).host}${ds.path}${ds.query === undefined ? "" : `?${ds.query}`}`], "");
  return { onDownstreamAborted() {}, onDownstreamWritable() {} };
};

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const logger = new Logger("info", options.log);
  const settings = options.config.settings;
  const outboundRuntime: ListenerRuntime = { direction: "outbound", inFlight: 0, draining: false };
  const inboundRuntime: ListenerRuntime = { direction: "inbound", inFlight: 0, draining: false };
  const runtimes = settings.inbound ? [outboundRuntime, inboundRuntime] : [outboundRuntime];
  // The telemetry reads the serving snapshot for its gauges; the holder binds each new snapshot's stats.
  const telemetry = new Telemetry(settings, () => current.current, runtimes);
  // DNS ServiceEntries: resolve their names before serving, then follow changes with config updates
  // (endpoint updates, since only addresses change). A watched config compiles again on the config
  // worker; one given as an object (no files to watch) has only its clusters' endpoints read again
  // here, which is what an endpoint update costs (no route is compiled on the serving thread).
  const dns = new DnsDiscovery(settings.dns.servers, settings.dns.refreshRateMs, (resolved) => {
    if (xds) xds.dnsChanged(resolved);
    else if (watcher) void watcher.recompile();
    else updates.apply("DNS addresses changed", () => withEndpointsFrom(current.current.config, options.config.model!, resolved));
  }, (line) => logger.info(line));
  let initial = options.config;
  if (initial.dnsNames.length > 0) {
    await dns.track(initial.dnsNames);
    initial = compile(initial.model!, dns.resolved);
  }
  // Envoy's node id: the control plane's, or Istio's form for this workload.
  const nodeId = options.xds?.node.id ?? `sidecar~${settings.inbound?.address ?? "127.0.0.1"}~${settings.workload.name}.${settings.namespace}~${settings.namespace}.svc.cluster.local`;
  // Proxy-Wasm plugins: their modules are instrumented and compiled before the config that names them serves.
  await prepareModules(initial.wasmPlugins);
  const plugins = new PluginRegistry({
    logger,
    shared: new SharedState(),
    metrics: new PluginMetrics(telemetry.metrics.registry),
    node: {
      id: nodeId,
      metadata: { NAMESPACE: settings.namespace, WORKLOAD_NAME: settings.workload.name, CLUSTER_ID: settings.workload.cluster, LABELS: settings.labels },
    },
    httpCall: (cluster, headers, body, timeoutMs, done) => pluginHttpCall(current, cluster, headers, body, timeoutMs, done),
    failed: (plugin) => telemetry.metrics.wasmFailures.inc({ plugin_name: plugin }),
  });
  const current: SnapshotHolder = new SnapshotHolder(initial, (config) => telemetry.statsFor(config), plugins);
  const updates = new ConfigUpdates(current, telemetry, logger);
  // Passthrough and shadow traffic without a cluster of its own uses the default pool.
  const dispatcher = current.pools.for("PassthroughCluster", DEFAULT_CLUSTER_POLICY.limits);
  const pipeline: PipelineOptions = {
    holder: current,
    dispatcher,
    passthrough: new PassthroughGuard(new Set(), settings.passthrough.allowLoopback),
    streamIdle: new StreamIdleTimeout(settings.http.streamIdleTimeoutMs),
    observer: telemetry,
    peers: new PeerCache(),
    // Istio's metadata exchange, for a proxy in a mesh (a workload certificate or a control plane).
    localMetadata: options.certificates || options.xds ? localPeerMetadata({
      id: nodeId,
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

  // Admin and agent ports come up first, so that readiness answers 503 (PRE_INITIALIZING) until the listeners are bound.
  const bound: { outbound?: Listener; inbound?: Listener } = {};
  let watcher: ConfigWatcher | undefined;
  let xds: XdsClient | undefined;
  let certificates: WorkloadCertificates | undefined;
  let closed = false;
  const closeAll = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    watcher?.stop();
    xds?.stop();
    certificates?.stop();
    dns.stop();
    pipeline.streamIdle.stop();
    await Promise.all([bound.outbound?.close(), bound.inbound?.close(), admin.close(), ...agentPorts.map((l) => l.close()), ...tcpListeners.map((l) => l.close()), ...boundHttp.map((b) => b.listener.close()), ...gatewayPorts.map((l) => l.close())]);
    await current.close();
  };
  const lifecycle = new Lifecycle([], settings, logger, async (code) => {
    await closeAll();
    options.onExit?.(code);
  });
  const ctx: AdminContext = {
    holder: current,
    telemetry,
    lifecycle,
    logger,
    reloads: updates.stats,
    staticResources: options.staticResources,
    certificate: () => certificates?.current,
    xds: () => (xds && options.xds ? { address: options.xds.address, protocol: xds.protocol, node: options.xds.node, raw: xds.applied } : undefined),
    listeners: () => Object.entries(bound).map(([name, l]) => ({ name, address: l.address, port: l.port, engine: l.engine })),
  };
  const admin = await startAdmin(settings.admin.address, settings.admin.port, ctx);
  const agentPorts = await startAgentPorts(ctx);
  for (const l of [admin, ...agentPorts]) pipeline.passthrough.selfPorts.add(l.port);

  const capturing = settings.outbound.capture || settings.inbound?.capture === true;
  if (capturing) {
    const why = captureUnavailable();
    if (why !== undefined) throw new Error(`instio: cannot capture traffic: ${why}`);
  }
  const outboundHandler: RequestHandler = (ds) => handleRequest(pipeline, outboundRuntime, ds);
  const outbound = (bound.outbound = settings.outbound.capture
    ? await listenCapture({
        address: settings.outbound.address,
        port: settings.outbound.port,
        http: settings.http,
        handler: outboundHandler,
        tcp: (socket, destination) => captureOutboundTcp(current, socket, destination),
        onInternalError: (err) => logger.error(`internal error in the capturing outbound listener (connection closed): ${err.stack ?? err.message}`),
      })
    : await listen(settings.outbound, settings.http, outboundHandler, logger, (req, done) => decideUpgrade(pipeline, req, done)));
  pipeline.passthrough.selfPorts.add(outbound.port);
  lifecycle.add({ runtime: outboundRuntime, listener: outbound });
  // Gateway server ports (ingress mode), on the outbound address: HTTPS terminates TLS; httpsRedirect answers 301.
  const gatewayPorts: Listener[] = [];
  for (const g of initial.gatewayListeners) {
    if (g.passthrough) continue; // an SNI listener among the TCP listeners below
    const handler: RequestHandler = g.httpsRedirect ? redirectToHttps : (ds) => handleRequest(pipeline, outboundRuntime, ds);
    const l = await listen({ ...settings.outbound, address: g.bind ?? settings.outbound.address, port: g.port, tls: g.tls, engine: g.tls ? "node" : settings.outbound.engine }, settings.http, handler, logger, (req, done) => decideUpgrade(pipeline, req, done));
    gatewayPorts.push(l);
    pipeline.passthrough.selfPorts.add(l.port);
    lifecycle.add({ runtime: outboundRuntime, listener: l });
    logger.info(`instio: gateway ${g.tls ? "HTTPS" : g.httpsRedirect ? "HTTP (redirect to HTTPS)" : "HTTP"} ${l.address}:${l.port}`);
  }

  // TCP proxy listeners from the Sidecar's egress listeners (from files they apply from startup, as the HTTP ones).
  const tcpListeners: Listener[] = [];
  /**
   * Over xDS, listeners come and go with LDS: TCP proxies, and HTTP listeners that bind a port of their
   * own (routing by it). The new ones are bound, the ones gone closed; a port that cannot be bound is logged.
   */
  const boundHttp: { address: string; port: number; listener: Listener }[] = [];
  const syncListeners = async (config: CompiledConfig): Promise<void> => {
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
      lifecycle.remove(b.listener);
      await b.listener.close();
      logger.info(`instio: HTTP ${key(b)} closed (its listener is gone)`);
    }
    try {
      for (const l of config.tcpListeners) {
        if (!wantedTcp.has(key(l)) || tcpListeners.some((t) => key(t) === key(l))) continue;
        tcpListeners.push(await listenTcp(l.address, l.port, current));
        logger.info(`instio: TCP ${key(l)}`);
      }
      for (const l of config.boundHttpListeners) {
        if (!wantedHttp.has(key(l)) || boundHttp.some((b) => key(b) === key(l))) continue;
        const runtime: ListenerRuntime = { direction: "outbound", inFlight: 0, draining: false, routePort: `:${l.port}` };
        const listener = await listen({ ...settings.outbound, address: l.address, port: l.port, tls: undefined }, settings.http, (ds) => handleRequest(pipeline, runtime, ds), logger, (req, done) => decideUpgrade(pipeline, req, done));
        boundHttp.push({ ...l, listener });
        pipeline.passthrough.selfPorts.add(listener.port);
        lifecycle.add({ runtime, listener });
        logger.info(`instio: HTTP ${key(l)} (routes of its own)`);
      }
    } catch (err) {
      logger.error(`instio: a listener cannot bind: ${(err as Error).message}`);
    }
  };
  await syncListeners(initial);
  let listenersSynced = Promise.resolve();

  if (settings.inbound) {
    const app = settings.inbound;
    const target: InboundApp = { origin: `http://${urlHost(app.appAddress)}:${app.appPort}`, clusterName: `inbound|${app.appPort}||`, address: app.appAddress, port: app.appPort };
    // Under capture, the app is where each connection was going (its pod address and port), reached from 127.0.0.6.
    const captured = new Map<string, InboundApp>();
    const capturedApp = (destination: string): InboundApp => {
      let a = captured.get(destination);
      if (!a) {
        const { address, port } = destinationParts(destination);
        a = { origin: `http://${destination}`, clusterName: `inbound|${port}||`, address, port, client: current.pools.inboundPassthrough() };
        if (captured.size >= MAX_CAPTURED_APPS) captured.clear();
        captured.set(destination, a);
      }
      return a;
    };
    const handler: RequestHandler = app.capture ? (ds) => handleInbound(pipeline, inboundRuntime, ds, capturedApp(ds.originalDestination!)) : (ds: Downstream) => handleInbound(pipeline, inboundRuntime, ds, target);
    let inbound: Listener;
    if (app.engine === "h1" && !app.tls) {
      // PeerAuthentication's mTLS for the app's port, per connection from the serving config.
      inbound = await listenInbound({
        address: app.address,
        port: app.port,
        http: settings.http,
        handler,
        mode: (port) => mtlsModeFor(current.current.config.inboundSecurity.mtls, port),
        capture: app.capture ? { tcp: (socket, destination) => relayTcp(socket, destination, INBOUND_PASSTHROUGH_SOURCE), ownPort: (port) => pipeline.passthrough.selfPorts.has(port) } : undefined,
        appPort: app.appPort,
        identity: () => certificates?.current,
        refused: (reason) => telemetry.metrics.inboundRefused.inc({ reason }),
        onInternalError: (err) => logger.error(`internal error in the inbound listener (connection closed): ${err.stack ?? err.message}`),
      });
    } else {
      if (initial.inboundSecurity.mtls.mode !== "PERMISSIVE" || initial.inboundSecurity.mtls.ports.length > 0) logger.error(`instio: PeerAuthentication needs the inbound listener's default engine (h1, without tls); the ${app.engine} engine serves ${app.tls ? "its own TLS" : "plaintext"} whatever the policy says`);
      inbound = await listen(app, settings.http, handler, logger);
    }
    bound.inbound = inbound;
    pipeline.passthrough.selfPorts.add(inbound.port);
    lifecycle.add({ runtime: inboundRuntime, listener: inbound });
  }

  if (options.configPath) {
    const w = (watcher = new ConfigWatcher(
      options.configPath,
      {
        applied: (loaded, diagnostics, origin) => void applyLoaded(loaded, diagnostics, origin),
        rejected: (diagnostics, origin) => updates.reject(origin, diagnostics),
      },
      () => dns.resolved,
    ));
    /**
     * A config that passed validation on the worker, compiled with the DNS answers known then. Names
     * it brings are resolved first; once some resolved, the worker compiles it again with them.
     */
    const applyLoaded = async (loaded: CompiledConfig, diagnostics: ConfigDiagnostic[], origin: string): Promise<void> => {
      const before = current.current.config.settings;
      const unresolved = loaded.dnsNames.filter((name) => !dns.resolved.has(name));
      try {
        await dns.track(loaded.dnsNames);
      } catch (err) {
        updates.reject(origin, [], `resolving its DNS names failed: ${(err as Error).message}`);
        return;
      }
      if (unresolved.some((name) => dns.resolved.has(name))) {
        void w.recompile();
        return;
      }
      try {
        await prepareModules(loaded.wasmPlugins);
      } catch (err) {
        updates.reject(origin, [], (err as Error).message);
        return;
      }
      const s = updates.apply(origin, () => loaded, diagnostics);
      const changed = (a: unknown, b: unknown): boolean => JSON.stringify(a) !== JSON.stringify(b);
      const now = s?.config.settings;
      if (now && (changed(before.outbound, now.outbound) || changed(before.inbound, now.inbound) || changed(before.admin, now.admin) || changed(before.agent, now.agent))) {
        logger.warn("config: listener, admin and agent addresses changed; they apply after a restart");
      }
    };
    watcher.start();
  }
  if (options.certificates) {
    // Not ready until the workload has its certificate; an expired one fails readiness again.
    lifecycle.setCertificateProblem("no workload certificate yet");
    const metrics = telemetry.metrics;
    // Loaded only here (gRPC, X.509): a proxy without certificates does not pay for them.
    const { WorkloadCertificates } = await import("../security/workload-certificates.js");
    certificates = new WorkloadCertificates(options.certificates, {
      renewed: (cert) => {
        metrics.certificateRenewals.inc({ result: "renewed" });
        metrics.certificateDays.set(Math.floor((cert.notAfter.getTime() - Date.now()) / 86_400_000));
      },
      expired: (problem) => lifecycle.setCertificateProblem(problem),
      failed: () => metrics.certificateRenewals.inc({ result: "failed" }),
    }, logger);
    const held = certificates;
    current.pools.workloadIdentity = () => held.current;
    void certificates.start();
  }
  if (options.xds) {
    // Readiness stays 503 until the control plane's first complete config is applied, as Envoy's
    // PRE_INITIALIZING lasts until its listeners and clusters are warm.
    const origin = `xds ${options.xds.address}`;
    let dnsTracked = "";
    // Loaded only here: a proxy configured by files does not pay for gRPC and Envoy's protos at start-up.
    const { XdsClient, updatedConfig } = await import("../xds/ads-client.js");
    xds = new XdsClient({
      ...options.xds,
      logger,
      metrics: telemetry.metrics,
      settings,
      apply: async (update) => {
        let config: CompiledConfig;
        try {
          config = updatedConfig(update, current.current.config);
          // Wasm filters: their modules are instrumented and compiled before the config serves.
          await prepareModules(config.wasmPlugins);
        } catch (err) {
          updates.reject(origin, [], (err as Error).message);
          return `the proxy cannot serve this config: ${updates.lastRejection}`;
        }
        const s = updates.apply(origin, () => config);
        if (!s) return `the proxy cannot serve this config: ${updates.lastRejection}`;
        // One sync at a time, in order: two updates in a row must not bind a port twice.
        listenersSynced = listenersSynced.then(() => syncListeners(s.config));
        // Names of STRICT_DNS and LOGICAL_DNS clusters: resolved, then kept resolved; new answers patch the endpoints.
        const names = s.config.dnsNames;
        if (names.join() !== dnsTracked) {
          dnsTracked = names.join();
          void dns.track(names).then(() => names.length > 0 && xds?.dnsChanged(dns.resolved), (err: Error) => logger.error(`dns: ${err.message}`));
        }
        lifecycle.markLive();
        return undefined;
      },
    });
    xds.start();
  } else lifecycle.markLive();

  return { holder: current, outbound, inbound: bound.inbound, admin, agentPorts, watcher, xds, certificates, telemetry, lifecycle, updates, close: closeAll };
}
