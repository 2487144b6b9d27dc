// Starts a proxy: what belongs to the process (the config source and its
// reloads, DNS, the workload certificate, admin and agent ports, the shutdown
// lifecycle) around its serving threads (serving.ts: listeners, pipeline,
// clusters, telemetry), the main thread's own and, with `concurrency` above 1,
// the workers' (serving-workers.ts).

import { compile, withEndpointsFrom, type CompiledConfig } from "../config/compile.js";
import type { ConfigDiagnostic } from "../config/diagnostics.js";
import { DnsDiscovery } from "../discovery/dns.js";
import { startAdmin, startAgentPorts, type AdminContext } from "../admin/admin.js";
import { ConfigWatcher, loadOnWorker } from "../config/watch.js";
import { requireConfig } from "../config/diagnostics.js";
import { concurrencyProblem } from "../config/settings.js";
import { Logger } from "../log.js";
import type { Telemetry } from "../telemetry/telemetry.js";
import { Lifecycle } from "./lifecycle.js";
import type { Listener } from "../listeners/listener.js";
import type { ConfigUpdates } from "./config-updates.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { SnapshotHolder } from "./snapshot.js";
import type { XdsClient } from "../xds/ads-client.js";
import type { NodeIdentity } from "../xds/node-identity.js";
import type { DumpedResource } from "../envoy/json.js";
import type { CertificateSource, WorkloadCertificates } from "../security/workload-certificates.js";
import { prepareModules } from "../proxy-wasm/plugin.js";
import { createServing } from "./serving.js";
import { SharedBreakerTable } from "../cluster/shared-breakers.js";
import { encodeForWorker, ServingWorkers } from "./serving-workers.js";

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
  /** Serving threads, over the settings' `concurrency` (the CLI's --concurrency). */
  concurrency?: number;
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

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const logger = new Logger("info", options.log);
  const settings = options.config.settings;
  const concurrency = options.concurrency ?? settings.concurrency;
  const problem = concurrencyProblem(concurrency, settings);
  if (problem) throw new Error(`instio: ${problem}`);
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
    // A config loaded on the worker (the CLI's) has no model here: the worker compiles it again with the answers.
    if (initial.model) initial = compile(initial.model, dns.resolved);
    else if (options.configPath) initial = requireConfig(await loadOnWorker(options.configPath, dns.resolved));
    else throw new Error("instio: a config with DNS names needs its model or its path to compile again with their addresses");
  }
  // Envoy's node id: the control plane's, or Istio's form for this workload.
  const nodeId = options.xds?.node.id ?? `sidecar~${settings.inbound?.address ?? "127.0.0.1"}~${settings.workload.name}.${settings.namespace}~${settings.namespace}.svc.cluster.local`;
  // Proxy-Wasm plugins: their modules are instrumented and compiled before the config that names them serves.
  await prepareModules(initial.wasmPlugins);
  const inMesh = options.certificates !== undefined || options.xds !== undefined;
  const outboundRuntime: ListenerRuntime = { direction: "outbound", inFlight: 0, draining: false };
  const inboundRuntime: ListenerRuntime = { direction: "inbound", inFlight: 0, draining: false };
  // Admin and agent ports come up first, so that readiness answers 503 (PRE_INITIALIZING) until the listeners are bound.
  let watcher: ConfigWatcher | undefined;
  let xds: XdsClient | undefined;
  let certificates: WorkloadCertificates | undefined;
  let workers: ServingWorkers | undefined;
  let closed = false;
  const closeAll = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    watcher?.stop();
    xds?.stop();
    certificates?.stop();
    dns.stop();
    await Promise.all([serving.close(), workers?.close(), admin.close(), ...agentPorts.map((l) => l.close())]);
  };
  const lifecycle = new Lifecycle([], settings, logger, async (code) => {
    await closeAll();
    options.onExit?.(code);
  });
  // With concurrency above 1 the main thread serves as one of the workers, its sockets bound with SO_REUSEPORT beside
  // theirs, and every thread counts circuit-breaker limits in the same shared table, as Envoy's workers share them.
  // The config for the workers is encoded before the main thread's snapshot consumes its route image, so that the
  // workers do not encode the image again.
  const threads = concurrency > 1 ? { breakers: new SharedBreakerTable().block, config: encodeForWorker(initial) } : undefined;
  const serving = createServing({
    config: initial,
    nodeId,
    inMesh,
    logger,
    runtimes: { outbound: outboundRuntime, inbound: inboundRuntime, bound: (routePort) => ({ direction: "outbound", inFlight: 0, draining: false, routePort }) },
    drain: lifecycle,
    identity: () => certificates?.current,
    reusePort: concurrency > 1,
    thread: 0,
    breakers: threads?.breakers,
  });
  const { holder: current, updates, telemetry, pipeline } = serving;
  const ctx: AdminContext = {
    holder: current,
    telemetry,
    lifecycle,
    logger,
    reloads: updates.stats,
    staticResources: options.staticResources,
    certificate: () => certificates?.current,
    xds: () => (xds && options.xds ? { address: options.xds.address, protocol: xds.protocol, node: options.xds.node, raw: xds.applied } : undefined),
    listeners: () => serving.listeners(),
    metrics: () => (workers ? workers.aggregate(telemetry.metrics.registry) : Promise.resolve(telemetry.metrics.registry)),
    logLevel: (level) => workers?.logLevel(level),
  };
  const admin = await startAdmin(settings.admin.address, settings.admin.port, ctx);
  const agentPorts = await startAgentPorts(ctx);
  const selfPorts = pipeline.passthrough.selfPorts;
  for (const l of [admin, ...agentPorts]) selfPorts.add(l.port);
  await serving.bind();
  const outbound = serving.outbound!;
  if (threads) {
    workers = await ServingWorkers.start({
      count: concurrency - 1,
      config: threads.config,
      ports: { outbound: outbound.port, inbound: serving.inbound?.port },
      selfPorts: [...selfPorts],
      nodeId,
      inMesh,
      identity: undefined,
      breakers: threads.breakers,
      logger,
    });
    for (const m of workers.managed) lifecycle.add(m);
    updates.followers = workers;
    logger.info(`instio: ${concurrency} serving threads (concurrency ${concurrency}), listeners shared with SO_REUSEPORT`);
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
      if (now && (changed(before.outbound, now.outbound) || changed(before.inbound, now.inbound) || changed(before.admin, now.admin) || changed(before.agent, now.agent) || before.concurrency !== now.concurrency)) {
        logger.warn("config: listener, admin or agent addresses or the concurrency changed; these apply after a restart");
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
        workers?.identity({ key: cert.key, chain: cert.chain });
        metrics.certificateRenewals.inc({ result: "renewed" });
        metrics.certificateDays.set(Math.floor((cert.notAfter.getTime() - Date.now()) / 86_400_000));
      },
      expired: (problem) => lifecycle.setCertificateProblem(problem),
      failed: () => metrics.certificateRenewals.inc({ result: "failed" }),
    }, logger);
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
        void serving.syncListeners(s.config);
        workers?.syncListeners();
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

  return { holder: current, outbound, inbound: serving.inbound, admin, agentPorts, watcher, xds, certificates, telemetry, lifecycle, updates, close: closeAll };
}
