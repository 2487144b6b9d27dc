// `instio control-plane`: the composition root. Reads the mesh (Istio config and
// the Kubernetes registry), serves ADS on 15010 and metrics and debug on 15014,
// and pushes every change to the connected proxies.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { formatDiagnostic } from "../config/diagnostics.js";
import { ParseCache } from "../config/source.js";
import { watchConfigPath } from "../config/watch.js";
import { PUSH_ORDER, TYPE_SHORT_NAMES } from "../envoy/protos.js";
import { dynamicResourcesDump, type DumpedResource } from "../envoy/json.js";
import { Logger } from "../log.js";
import { Debouncer, ISTIO_DEBOUNCE, type DebounceOptions } from "./debounce.js";
import { loadMesh, Mesh, type MeshLoad, type MeshPaths, type MeshSnapshot } from "./mesh.js";
import { ControlPlaneMetrics } from "./metrics.js";
import { AdsServer, GRPC_SERVER_OPTIONS } from "./xds/ads-server.js";
import { CertificateAuthority } from "./ca/authority.js";
import { ISTIOD_NAME, registerCertificateService, type Authenticator } from "./ca/ca-service.js";
import type { FSWatcher } from "node:fs";
import type { KubeConfig } from "@kubernetes/client-node";
import type { InjectOptions } from "./injector/inject.js";
import { startInjectionWebhook } from "./injector/webhook.js";

export interface ControlPlaneOptions extends MeshPaths {
  /** gRPC xDS, plaintext (istiod: 15010); 0 picks a free port. */
  xdsAddress: string;
  xdsPort: number;
  /** /metrics and /debug (istiod: 15014). */
  monitoringAddress: string;
  monitoringPort: number;
  /** A live cluster to watch (Services, EndpointSlices, Pods, Namespaces and Istio's CRDs). */
  kube?: { config: KubeConfig; retryMs?: number; missingRetryMs?: number };
  /**
   * The certificate authority, and ADS and Istio's certificate API over TLS (istiod's 15012): the CA's
   * directory (a plug-in CA's files, or where a self-signed root is kept), and who may ask for which identity.
   */
  ca?: { dir: string; trustDomain?: string; address: string; port: number; authenticate?: Authenticator };
  /**
   * The injection webhook (istiod's /inject on 15017), over TLS with a certificate from the CA (so only with `ca`),
   * giving pods the sidecar inject.ts shapes.
   */
  injector?: { address: string; port: number; options: InjectOptions; webhookConfiguration?: string };
  debounce?: DebounceOptions;
  log?: Logger;
}

export interface ControlPlane {
  xdsPort: number;
  /** ADS and the certificate API over TLS (with `ca`). */
  securePort: number | undefined;
  /** The injection webhook's port (with `injector`). */
  webhookPort: number | undefined;
  ca: CertificateAuthority | undefined;
  monitoringPort: number;
  ads: AdsServer;
  mesh: Mesh;
  metrics: ControlPlaneMetrics;
  /** Reads the files again now (tests; the watcher does this on change). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export class MeshLoadError extends Error {}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.log ?? new Logger();
  const metrics = new ControlPlaneMetrics();
  let clusterChanged = (): void => {};
  // Loaded only when a cluster is watched: the client library is large.
  const cluster = options.kube
    ? await (await import("./registry/kube-cluster.js")).KubeClusterSource.start({ kubeConfig: options.kube.config, retryMs: options.kube.retryMs, missingRetryMs: options.kube.missingRetryMs, log, metrics, onChange: () => clusterChanged() })
    : undefined;
  const paths: MeshPaths = { config: options.config, kubeDir: options.kubeDir, cluster, parseCache: new ParseCache() };
  const reportHeldBack = (result: MeshLoad): void => {
    if (!result.heldBack) return;
    metrics.configRejected.inc();
    log.error(`cluster objects rejected; each keeps serving at its last good version (or not at all), the rest of the mesh updates:`);
    for (const d of result.heldBack) log.error(`  ${formatDiagnostic(d)}`);
  };
  const first = loadMesh(paths);
  reportHeldBack(first);
  for (const d of first.diagnostics) log.log(d.severity === "error" ? "error" : "warning", formatDiagnostic(d));
  if (!first.snapshot) {
    cluster?.close();
    throw new MeshLoadError(`the mesh config has ${first.diagnostics.filter((d) => d.severity === "error").length} error(s)`);
  }
  const mesh = new Mesh(first.snapshot);
  countMesh(metrics, first.snapshot);
  const ads = new AdsServer(mesh, metrics, log);

  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  ads.register(server);
  const xdsPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${options.xdsAddress}:${options.xdsPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
  // 15012: the same ADS, and Istio's certificate API, over TLS with a certificate from the mesh's CA.
  let ca: CertificateAuthority | undefined;
  let secure: grpc.Server | undefined;
  let securePort: number | undefined;
  /** istiod's serving certificate, for 15012 and the webhook's 15017 alike. */
  let serving: { cert: string; key: string } | undefined;
  if (options.ca) {
    ca = await CertificateAuthority.open(options.ca.dir, options.ca.trustDomain);
    serving = await ca.servingCertificate([ISTIOD_NAME, "istiod.istio-system", "istiod", "localhost"]);
    secure = new grpc.Server(GRPC_SERVER_OPTIONS);
    ads.register(secure);
    // Tokens the user issued, else the cluster's TokenReview, as istiod checks a pod's projected token.
    let authenticate = options.ca.authenticate;
    if (!authenticate && options.kube) authenticate = (await import("./ca/token-review.js")).tokenReview(options.kube.config, log);
    if (!authenticate) throw new MeshLoadError("the CA needs a way to check identities: per-workload tokens, or a cluster for TokenReview");
    registerCertificateService(secure, ca, authenticate, log, {
      issued: () => {
        metrics.csrs.inc();
        metrics.certsIssued.inc();
      },
      refused: (reason) => {
        metrics.csrs.inc();
        (reason === "authentication" ? metrics.authnErrors : metrics.csrErrors).inc();
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.key), cert_chain: Buffer.from(serving.cert) }], false);
    const port = options.ca.port;
    const address = options.ca.address;
    securePort = await new Promise<number>((resolve, reject) => secure!.bindAsync(`${address}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))));
    log.info(`control plane: CA (${options.ca.dir}, trust domain ${ca.trustDomain}) and xDS over TLS on ${address}:${securePort}`);
  }
  if (options.injector && !ca) throw new MeshLoadError("the injection webhook serves TLS with a certificate from the CA: give the CA a directory too");
  // In a live cluster with a CA: the root goes to every namespace and to the webhook's caBundle, as istiod writes them.
  const publisher = options.kube && ca ? new (await import("./registry/kube-publisher.js")).KubePublisher(options.kube.config, ca.rootPem, options.injector?.webhookConfiguration, log) : undefined;
  const publish = (snapshot: MeshSnapshot): void => void publisher?.sync(snapshot.kube.namespaces.map((n) => n.name));
  publish(mesh.snapshot);

  const reload = async (since: number): Promise<void> => {
    const result = loadMesh(paths);
    reportHeldBack(result);
    if (!result.snapshot) {
      metrics.configRejected.inc();
      log.error(`config rejected; the last good config keeps serving:`);
      for (const d of result.diagnostics) log.error(`  ${formatDiagnostic(d)}`);
      return;
    }
    const before = mesh.snapshot;
    const next = result.snapshot;
    publish(next); // namespaces come and go without changing what proxies are sent
    if (next.configDigest === before.configDigest && next.endpointsDigest === before.endpointsDigest) return;
    const endpointsOnly = next.configDigest === before.configDigest;
    metrics.pushTriggers.inc({ type: endpointsOnly ? "endpoint" : "config" });
    metrics.inboundUpdates.inc({ type: endpointsOnly ? "eds" : "config" });
    metrics.debounceTime.observe((Date.now() - since) / 1000);
    for (const d of result.diagnostics) log.warn(formatDiagnostic(d));
    mesh.update(next);
    countMesh(metrics, next);
    log.info(`mesh updated (${endpointsOnly ? "endpoints" : "config"}); pushing to ${ads.connections.size} proxies`);
    await ads.pushAll(since);
  };
  const debouncer = new Debouncer(options.debounce ?? ISTIO_DEBOUNCE, reload);
  const watchers: FSWatcher[] = [];
  for (const path of [options.config, options.kubeDir]) if (path !== undefined) watchers.push(watchConfigPath(path, () => debouncer.event()));
  clusterChanged = () => debouncer.event();

  const monitoring = createServer((req, res) => {
    serveMonitoring(req, res, { ads, mesh, metrics }).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`internal error: ${String(err)}\n`);
    });
  });
  const monitoringPort = await new Promise<number>((resolve, reject) => {
    monitoring.once("error", reject);
    monitoring.listen(options.monitoringPort, options.monitoringAddress, () => resolve((monitoring.address() as AddressInfo).port));
  });
  log.info(`control plane: xDS on ${options.xdsAddress}:${xdsPort}, monitoring on ${options.monitoringAddress}:${monitoringPort}`);
  let webhook: Awaited<ReturnType<typeof startInjectionWebhook>> | undefined;
  if (options.injector && serving) {
    const counters = { injected: metrics.injectionSuccess, skipped: metrics.injectionSkips, error: metrics.injectionFailures };
    webhook = await startInjectionWebhook({
      address: options.injector.address,
      port: options.injector.port,
      ...serving,
      inject: options.injector.options,
      namespaceLabels: (ns) => mesh.snapshot.kube.namespaces.find((n) => n.name === ns)?.labels,
      reviewed: (result) => {
        metrics.injectionRequests.inc();
        counters[result].inc();
      },
    });
    log.info(`control plane: injection webhook on https://${options.injector.address}:${webhook.port}/inject`);
  }

  return {
    xdsPort,
    securePort,
    webhookPort: webhook?.port,
    ca,
    monitoringPort,
    ads,
    mesh,
    metrics,
    reload: () => reload(Date.now()),
    close: async () => {
      debouncer.stop();
      cluster?.close();
      for (const w of watchers) w.close();
      await new Promise<void>((resolve) => monitoring.close(() => resolve()));
      monitoring.closeAllConnections();
      server.forceShutdown();
      secure?.forceShutdown();
      webhook?.server.closeAllConnections();
      await new Promise<void>((resolve) => (webhook ? webhook.server.close(() => resolve()) : resolve()));
    },
  };
}

function countMesh(metrics: ControlPlaneMetrics, snapshot: MeshSnapshot): void {
  metrics.services.set(snapshot.model.services.length);
  metrics.virtualServices.set(snapshot.model.virtualServices.length);
}

interface MonitoringContext {
  ads: AdsServer;
  mesh: Mesh;
  metrics: ControlPlaneMetrics;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body, null, 2)}\n`);
}

/** istiod's monitoring port: /metrics, and the debug endpoints istioctl and operators read. */
async function serveMonitoring(req: IncomingMessage, res: ServerResponse, ctx: MonitoringContext): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  switch (url.pathname) {
    case "/metrics":
      res.writeHead(200, { "content-type": ctx.metrics.registry.contentType }).end(await ctx.metrics.registry.metrics());
      return;
    case "/ready":
      res.writeHead(200).end("ok\n");
      return;
    case "/debug/syncz":
      // One entry per connected proxy: each type's state as istioctl proxy-status shows it.
      json(res, 200, [...ctx.ads.connections].map((c) => ({
        proxy: c.node.name,
        proxy_type: c.node.type,
        cluster_id: c.node.clusterId,
        istio_version: c.node.istioVersion,
        ...Object.fromEntries(PUSH_ORDER.map((t) => [TYPE_SHORT_NAMES[t], c.syncStatus(t)])),
        ...Object.fromEntries(PUSH_ORDER.flatMap((t) => [[`${TYPE_SHORT_NAMES[t]}_sent`, c.watches.get(t)?.nonceSent ?? ""], [`${TYPE_SHORT_NAMES[t]}_acked`, c.watches.get(t)?.nonceAcked ?? ""]])),
        last_error: Object.fromEntries([...c.watches].filter(([, w]) => w.lastError).map(([t, w]) => [TYPE_SHORT_NAMES[t] ?? t, w.lastError])),
      })));
      return;
    case "/debug/adsz":
      json(res, 200, { pushVersion: ctx.ads.pushVersion, connections: [...ctx.ads.connections].map((c) => c.describe()) });
      return;
    case "/debug/registryz":
      json(res, 200, ctx.mesh.snapshot.model.services.map((s) => ({ kind: s.kind, name: s.name, namespace: s.namespace, hosts: s.hosts, addresses: s.addresses, ports: s.ports, resolution: s.resolution, endpoints: s.endpoints })));
      return;
    case "/debug/config_dump": {
      // What the control plane would send a connected proxy, by POD.NAMESPACE.
      const id = url.searchParams.get("proxyID");
      const conn = [...ctx.ads.connections].find((c) => c.node.name === id);
      if (!conn) return json(res, 404, { error: `no connected proxy ${id ?? "(proxyID not given)"}` });
      const resources = ctx.mesh.resourcesFor(conn.node);
      // Envoy's ConfigDump shape (as istiod's): what this proxy is subscribed to at the current push version.
      const at = new Date();
      const held = new Map<string, Map<string, DumpedResource>>();
      for (const type of PUSH_ORDER) {
        const w = conn.watches.get(type);
        const names = w ? (w.wildcard ? [...resources.all(type)].map((r) => r.name) : [...w.names]) : [];
        const byName = new Map<string, DumpedResource>();
        for (const n of names) {
          const r = resources.get(type, n);
          if (r) byName.set(n, { any: r.any, version: ctx.ads.pushVersion, at });
        }
        held.set(type, byName);
      }
      return json(res, 200, { configs: dynamicResourcesDump(held, url.searchParams.has("include_eds")) });
    }
    default:
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: /metrics, /ready, /debug/syncz, /debug/adsz, /debug/registryz, /debug/config_dump?proxyID=POD.NAMESPACE\n");
  }
}
