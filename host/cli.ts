#!/usr/bin/env node
// The instio command line.

import { parseArgs } from "node:util";
import { requireConfig } from "./config/diagnostics.js";
import type { LoadResult } from "./config/load.js";
import { formatDiagnostic } from "./config/diagnostics.js";
import { loadOnWorker, logDiagnostics } from "./config/watch.js";
import { explain } from "./explain.js";
import { startProxy, type RunningProxy } from "./proxy/server.js";
import type { Settings } from "./config/model.js";
import { defaultSettings, MAX_CONCURRENCY, servingThreads } from "./config/settings.js";
import type { NodeIdentity } from "./xds/node-identity.js";
import type { CertificateSource } from "./security/workload-certificates.js";
import { readFileSync } from "node:fs";

const HELP = `instio: a service-mesh sidecar proxy configured with Istio YAML

Usage:
  instio proxy --config PATH          serve PATH (a YAML file or directory); reloads on change
  instio proxy ... [--concurrency N]  serving threads sharing the listeners (Envoy's --concurrency; 0: one per CPU)
  instio proxy ... [--ca HOST:15012 --ca-root FILE --token FILE | --cert-dir DIR]
                                      the workload certificate: from the control plane's CA (renewed at
                                      half-life), or from cert-chain.pem, key.pem, root-cert.pem
  instio proxy --bootstrap envoy.yaml [--config SETTINGS]
                                      start from an Envoy bootstrap: static_resources with no control
                                      plane, or dynamic_resources pointing at an ADS server
  instio proxy --xds HOST:PORT [--config SETTINGS] [--capture] [--pod-name P] [--namespace NS] [--ip IP]
               [--service-account SA] [--labels a=b,c=d] [--cluster-id ID]
                                      take routes, clusters and endpoints from a control plane (ADS);
                                      identity from the flags, else POD_NAME, POD_NAMESPACE, INSTANCE_IP,
                                      SERVICE_ACCOUNT, ISTIO_META_* as Istio's injector sets them
  instio validate PATH                check PATH; lists every error, exits 1 if any
  instio explain --config PATH 'METHOD URL' [-H 'name: value' ...]
                                      show the route decision for one request
  instio quickstart                   demo upstreams + the quickstart mesh (npm start)
  instio quickstart --mesh            the control plane configuring gRPC clients over xDS
  instio control-plane [--config PATH] [--kube-dir DIR | --kubeconfig FILE] [--xds-port 15010] [--monitoring-port 15014] [--address ADDR]
               [--ca-dir DIR --ca-tokens FILE [--trust-domain cluster.local] [--secure-port 15012]]
               [--webhook-port 15017 --inject-image IMAGE --native-sidecars false]
                                      serve Envoy v3 xDS (ADS) from Istio config and Kubernetes objects
                                      (a directory of YAML, or a live cluster; in a pod, its service account)
  instio bench --config PATH [--requests FILE]
                                      time the route decisions of PATH's routes (Wasm core and reference):
                                      percentiles, the route image's size, the slowest requests
  instio compile-table CONFIG [-o FILE] [--envoy [--filter-path PATH]]
                                      the route table of CONFIG as the plugin configuration of the route
                                      core's Proxy-Wasm filter for Envoy (build/route-filter.wasm);
                                      --envoy: a whole Envoy bootstrap that routes with it (the filter
                                      loaded from PATH, by default this install's build)
  instio inject -f FILE [-o OUT] [--image IMAGE] [--control-plane HOST] [--native-sidecars false]
                                      add the sidecar to the Pods and pod templates in FILE (istioctl kube-inject)
  instio wait [--url URL] [--timeout SECONDS]
                                      wait until the sidecar is ready (holdApplicationUntilProxyStarts)
  instio iptables [-p 15001 -z 15006 -u 1337 -b '*' -i '*' -d PORTS ...] [--dry-run | --cleanup-only]
                                      capture a pod's traffic for its sidecar (Istio's istio-iptables);
                                      instio iptables --help lists the flags
  instio status [--control-plane HOST:PORT]
                                      each connected proxy's xDS sync state (istioctl proxy-status)
  instio --help

Examples:
  instio validate examples/quickstart
  instio proxy --config examples/quickstart
  instio explain --config examples/quickstart 'GET http://reviews:9080/reviews/1' -H 'end-user: jason'
  curl -x http://127.0.0.1:15001 http://reviews:9080/reviews/1   (the proxy as an explicit HTTP proxy)
`;

/** Loads a config on this thread (the yaml parser is imported only by commands that read YAML here). */
async function loadConfigPath(path: string): Promise<LoadResult> {
  return (await import("./config/load.js")).loadConfigPath(path);
}

/**
 * The settings a proxy fed by xDS starts from: those of --config (a ProxySettings document; any Istio
 * resources there are ignored, the control plane's win), or the defaults.
 */
async function xdsSettings(path: string | undefined, capture: boolean): Promise<Settings> {
  if (!path) return capture ? withCapture(defaultSettings()) : defaultSettings();
  const result = await loadConfigPath(path);
  logDiagnostics(result.diagnostics, (l) => process.stderr.write(`${l}\n`));
  const loaded = requireConfig(result);
  const m = loaded.model!;
  const ignored = m.services.length + m.virtualServices.length + m.destinationRules.length + m.workloadEntries.length + m.sidecars.length + m.gateways.length;
  if (ignored > 0) process.stderr.write(`instio: ${path}: ${ignored} Istio resources ignored; with --xds the control plane configures routes, clusters and endpoints\n`);
  return capture ? withCapture(loaded.settings) : loaded.settings;
}

/**
 * --capture: the listeners of a sidecar in a pod behind `instio iptables`, as Istio's: 15001 and 15006 on every
 * address, each connection routed by its original destination; the agent's ports on every address (the kubelet
 * probes 15021), the admin on loopback.
 */
function withCapture(settings: Settings): Settings {
  return {
    ...settings,
    outbound: { address: "0.0.0.0", port: 15001, engine: "h1", tls: undefined, capture: true },
    inbound: { address: "0.0.0.0", port: 15006, engine: "h1", tls: undefined, capture: true, appAddress: "127.0.0.1", appPort: 0 },
    agent: settings.agent ? { ...settings.agent, address: "0.0.0.0" } : undefined,
  };
}

interface ProxyFlags {
  concurrency?: string;
  capture?: boolean;
  ca?: string;
  "ca-root"?: string;
  token?: string;
  "cert-dir"?: string;
  config?: string;
  xds?: string;
  bootstrap?: string;
  "pod-name"?: string;
  namespace?: string;
  ip?: string;
  "service-account"?: string;
  labels?: string;
  "cluster-id"?: string;
}

/**
 * Where the workload certificate comes from: the control plane's CA (--ca, with the mesh's root and the
 * workload's token at Istio's paths unless given), or files (--cert-dir, Istio's /etc/certs layout).
 */
function certificateSource(values: ProxyFlags): CertificateSource | undefined {
  if (values["cert-dir"]) return { kind: "files", dir: values["cert-dir"] };
  if (!values.ca) return undefined;
  let rootPem: string;
  const rootFile = values["ca-root"] ?? "/var/run/secrets/istio/root-cert.pem";
  try {
    rootPem = readFileSync(rootFile, "utf8");
  } catch (err) {
    return fail(`--ca-root ${rootFile}: ${(err as Error).message}`);
  }
  return { kind: "ca", ca: { address: values.ca, rootPem }, tokenFile: values.token ?? "/var/run/secrets/tokens/istio-token" };
}

/**
 * A proxy configured by a control plane (--xds, or an Envoy bootstrap's dynamic_resources) or by an Envoy
 * bootstrap's static_resources. Its modules are loaded only here: they bring Envoy's protos, which a proxy
 * configured by files does without. Undefined when the bootstrap has errors (printed).
 */
async function startWithoutFiles(values: ProxyFlags): Promise<RunningProxy | undefined> {
  const { nodeIdentity, parseLabels, withBootstrapNode } = await import("./xds/node-identity.js");
  const { xdsStartingConfig, staticBootstrapConfig } = await import("./xds/starting-config.js");
  const identity = (): NodeIdentity => {
    try {
      return nodeIdentity({ podName: values["pod-name"], namespace: values.namespace, ip: values.ip, serviceAccount: values["service-account"], labels: values.labels === undefined ? undefined : parseLabels(values.labels), clusterId: values["cluster-id"] });
    } catch (err) {
      return fail((err as Error).message);
    }
  };
  const onExit = (code: number): never => process.exit(code);
  if (values.xds) {
    if (!/^[^\s:]+:\d+$/.test(values.xds) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(values.xds)) fail(`--xds must be HOST:PORT, got "${values.xds}"`);
    const node = identity();
    const proxy = await startProxy({ config: xdsStartingConfig(await xdsSettings(values.config, values.capture === true), node), xds: { address: values.xds, node }, certificates: certificateSource(values), concurrency: concurrencyFlag(values), onExit });
    process.stderr.write(`instio: node ${node.id}, control plane ${values.xds}; ready once its first complete config is applied\n`);
    return proxy;
  }
  const { readBootstrap, BootstrapError } = await import("./envoy/bootstrap.js");
  try {
    const bootstrap = readBootstrap(values.bootstrap!);
    let settings = await xdsSettings(values.config, values.capture === true);
    if (bootstrap.admin) settings = { ...settings, admin: bootstrap.admin };
    if (bootstrap.ads) {
      const node = withBootstrapNode(identity(), bootstrap.node);
      const proxy = await startProxy({ config: xdsStartingConfig(settings, node), xds: { address: bootstrap.ads.address, node, protocol: bootstrap.ads.delta ? "delta" : "sotw" }, concurrency: concurrencyFlag(values), onExit });
      process.stderr.write(`instio: ${values.bootstrap}: node ${node.id}, ADS ${bootstrap.ads.address} (${bootstrap.ads.delta ? "delta" : "state of the world"}); ready once its first complete config is applied\n`);
      return proxy;
    }
    const { config, resources } = staticBootstrapConfig(bootstrap, settings);
    const proxy = await startProxy({ config, staticResources: resources, concurrency: concurrencyFlag(values), onExit });
    process.stderr.write(`instio: ${values.bootstrap}: ${bootstrap.listeners.length} static listeners, ${bootstrap.clusters.length} static clusters\n`);
    return proxy;
  } catch (err) {
    if (!(err instanceof BootstrapError)) throw err;
    for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
    process.stderr.write(`${values.bootstrap}: ${err.diagnostics.length} error(s)\n`);
    return undefined;
  }
}

/** --concurrency N: serving threads, as Envoy's flag (0: one per CPU); over the ProxySettings' concurrency. */
function concurrencyFlag(values: { concurrency?: string }): number | undefined {
  if (values.concurrency === undefined) return undefined;
  const n = Number(values.concurrency);
  if (!Number.isInteger(n) || n < 0 || n > MAX_CONCURRENCY) fail(`--concurrency must be an integer from 0 to ${MAX_CONCURRENCY}, got "${values.concurrency}"`);
  return servingThreads(n);
}

function fail(message: string): never {
  process.stderr.write(`instio: ${message}\n`);
  process.exit(2);
}

/** SIGTERM and SIGINT close `service` and exit 0 (the control plane has no drain of its own yet). */
function closeOnSignals(service: { close(): Promise<void> }): void {
  const quit = (): void => void service.close().then(() => process.exit(0));
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(HELP);
      return 0;
    case "validate": {
      const path = rest[0] ?? fail("validate needs a PATH");
      const result = await loadConfigPath(path);
      for (const d of result.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
      const errors = result.diagnostics.filter((d) => d.severity === "error").length;
      if (errors > 0 || !result.config) {
        process.stderr.write(`${path}: ${errors} error(s)\n`);
        return 1;
      }
      const c = result.config;
      process.stdout.write(`${path}: valid (${c.virtualHosts.length} virtual hosts, ${c.routes.length} routes, ${c.clusters.length} clusters)\n`);
      return 0;
    }
    case "explain": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string", short: "c" }, header: { type: "string", short: "H", multiple: true } } });
      if (!values.config) fail("explain needs --config PATH");
      const [spec] = positionals;
      if (!spec) fail("explain needs a request such as 'GET http://reviews:9080/path'");
      const m = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(spec) ?? fail(`cannot read request "${spec}"; expected 'METHOD URL'`);
      let url: URL;
      try {
        url = new URL(m[2]!);
      } catch {
        return fail(`"${m[2]}" is not an absolute URL`);
      }
      const headers = new Map<string, string>();
      for (const h of values.header ?? []) {
        const i = h.indexOf(":");
        if (i <= 0) fail(`header "${h}" must be 'name: value'`);
        headers.set(h.slice(0, i).trim().toLowerCase(), h.slice(i + 1).trim());
      }
      const result = await loadConfigPath(values.config);
      const config = requireConfig(result);
      const req = {
        method: m[1]!.toUpperCase(),
        authority: headers.get("host") ?? url.host,
        path: url.pathname,
        query: url.search ? url.search.slice(1) : undefined,
        scheme: url.protocol.slice(0, -1),
        header: (name: string) => headers.get(name),
      };
      process.stdout.write(explain(config, req) + "\n");
      return 0;
    }
    case "proxy": {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: "string", short: "c" },
          xds: { type: "string" },
          bootstrap: { type: "string" },
          "pod-name": { type: "string" },
          namespace: { type: "string" },
          ip: { type: "string" },
          "service-account": { type: "string" },
          labels: { type: "string" },
          "cluster-id": { type: "string" },
          ca: { type: "string" },
          "ca-root": { type: "string" },
          token: { type: "string" },
          "cert-dir": { type: "string" },
          capture: { type: "boolean" },
          concurrency: { type: "string" },
        },
      });
      if (values.ca && values["cert-dir"]) fail("the workload certificate comes from --ca or from --cert-dir, not both");
      if (!values.config && !values.xds && !values.bootstrap) fail("proxy needs --config PATH, --xds HOST:PORT or --bootstrap FILE");
      if (values.xds && values.bootstrap) fail("proxy takes its control plane from --xds or from the bootstrap's dynamic_resources, not both");
      let proxy: RunningProxy;
      if (values.xds || values.bootstrap) {
        const started = await startWithoutFiles(values);
        if (!started) return 1;
        proxy = started;
      } else {
        // Loaded on a worker that ends with the load: the serving thread never holds the YAML parser.
        const result = await loadOnWorker(values.config!);
        logDiagnostics(result.diagnostics, (l) => process.stderr.write(`${l}\n`));
        if (values.capture) fail("--capture goes with --xds or --bootstrap; with --config, set listeners.outbound.capture and listeners.inbound.capture in the ProxySettings");
        proxy = await startProxy({ config: requireConfig(result), configPath: values.config, certificates: certificateSource(values), concurrency: concurrencyFlag(values), onExit: (code) => process.exit(code) });
      }
      process.stderr.write(
        `instio: outbound ${proxy.outbound.address}:${proxy.outbound.port} (${proxy.outbound.engine})` +
          (proxy.inbound ? `, inbound ${proxy.inbound.address}:${proxy.inbound.port} (${proxy.inbound.engine})` : "") +
          `, admin ${proxy.admin.address}:${proxy.admin.port}, config version ${proxy.holder.current.version}\n`,
      );
      // SIGTERM drains as Istio's agent does; Ctrl-C quits at once; a second signal always quits.
      process.on("SIGTERM", () => void proxy.lifecycle.terminate());
      process.on("SIGINT", () => void proxy.lifecycle.quit());
      return -1; // keep running
    }
    case "quickstart": {
      const { values } = parseArgs({ args: rest, options: { mesh: { type: "boolean" } } });
      if (!values.mesh) {
        await (await import("./quickstart.js")).runQuickstart();
        return -1;
      }
      const { runMeshQuickstart } = await import("./control-plane/quickstart.js");
      const demo = await runMeshQuickstart();
      closeOnSignals(demo);
      return -1;
    }
    case "control-plane": {
      const { values } = parseArgs({ args: rest, options: { config: { type: "string", short: "c" }, "kube-dir": { type: "string" }, kubeconfig: { type: "string" }, "xds-port": { type: "string" }, "monitoring-port": { type: "string" }, "secure-port": { type: "string" }, address: { type: "string" }, "ca-dir": { type: "string" }, "ca-tokens": { type: "string" }, "trust-domain": { type: "string" }, "webhook-port": { type: "string" }, "inject-image": { type: "string" }, "native-sidecars": { type: "string" } } });
      if (values["ca-tokens"] && !values["ca-dir"]) fail("--ca-tokens needs --ca-dir (where the CA's root is kept, or Istio's plug-in CA files)");
      if (values["ca-dir"] && !values["ca-tokens"] && !values.kubeconfig && process.env.KUBERNETES_SERVICE_HOST === undefined) fail("--ca-dir needs --ca-tokens FILE (which token proves which identity), or a cluster whose TokenReview checks them");
      if (values["kube-dir"] && values.kubeconfig) fail("control-plane reads Kubernetes objects from --kube-dir or from a cluster (--kubeconfig), not both");
      // In a pod (and told of no directory), the cluster is the pod's own, as istiod finds it.
      const watchCluster = values.kubeconfig !== undefined || (!values["kube-dir"] && process.env.KUBERNETES_SERVICE_HOST !== undefined);
      if (!values.config && !values["kube-dir"] && !watchCluster) fail("control-plane needs --config PATH, --kube-dir DIR or --kubeconfig FILE");
      const port = (name: string, value: string | undefined, fallback: number): number => {
        const n = value === undefined ? fallback : Number(value);
        return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : fail(`--${name} must be a port number, got "${value}"`);
      };
      const address = values.address ?? "0.0.0.0";
      // Loaded here, not at the top: `instio proxy` should not pay for gRPC and the Envoy protos at start-up.
      const { startControlPlane } = await import("./control-plane/control-plane.js");
      const kube = watchCluster ? { config: (await import("./control-plane/registry/kube-cluster.js")).loadKubeConfig(values.kubeconfig) } : undefined;
      const cp = await startControlPlane({
        config: values.config,
        kubeDir: values["kube-dir"],
        kube,
        xdsAddress: address,
        xdsPort: port("xds-port", values["xds-port"], 15010),
        monitoringAddress: address,
        monitoringPort: port("monitoring-port", values["monitoring-port"], 15014),
        ca: values["ca-dir"]
          ? { dir: values["ca-dir"], trustDomain: values["trust-domain"], address, port: port("secure-port", values["secure-port"], 15012), authenticate: values["ca-tokens"] ? (await import("./control-plane/ca/ca-service.js")).tokenFile(values["ca-tokens"]) : undefined }
          : undefined,
        // With a CA, istiod's injection webhook on 15017 (its serving certificate comes from the CA).
        injector: values["ca-dir"]
          ? { address, port: port("webhook-port", values["webhook-port"], 15017), webhookConfiguration: "instio-sidecar-injector", options: { ...(await import("./control-plane/injector/inject.js")).defaultInjectOptions(), ...(values["inject-image"] ? { image: values["inject-image"] } : {}), ...(values["native-sidecars"] === "false" ? { native: false } : {}) } }
          : undefined,
      });
      closeOnSignals(cp);
      return -1;
    }
    case "bench": {
      const { values } = parseArgs({ args: rest, options: { config: { type: "string", short: "c" }, requests: { type: "string" }, samples: { type: "string" } } });
      if (!values.config) fail("bench needs --config PATH (the config whose routes to time)");
      const { benchCorpus, benchRoutes, renderBench } = await import("./route-bench.js");
      const result = await loadConfigPath(values.config);
      logDiagnostics(result.diagnostics.filter((d) => d.severity === "error"), (l) => process.stderr.write(`${l}\n`));
      const config = requireConfig(result);
      let corpus: ReturnType<typeof benchCorpus>;
      try {
        corpus = benchCorpus(config, values.requests);
      } catch (err) {
        return fail((err as Error).message);
      }
      if (corpus.cases.length === 0) fail("no requests to time: give --requests FILE (METHOD URL [name=value ...] per line)");
      const samples = Number(values.samples ?? 15);
      process.stdout.write(`${renderBench(config, benchRoutes(config, corpus.cases, { batch: 2000, samples }), corpus.what)}\n`);
      return 0;
    }
    case "compile-table": {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { output: { type: "string", short: "o" }, envoy: { type: "boolean" }, "filter-path": { type: "string" } } });
      const path = positionals[0] ?? fail("compile-table needs a CONFIG path (a YAML file or directory)");
      const result = await loadConfigPath(path);
      logDiagnostics(result.diagnostics.filter((d) => d.severity === "error"), (l) => process.stderr.write(`${l}\n`));
      const config = requireConfig(result);
      const { compileFilterTable, filterModulePath } = await import("./route-filter/filter-table.js");
      let table: ReturnType<typeof compileFilterTable>;
      try {
        table = compileFilterTable(config);
      } catch (err) {
        return fail((err as Error).message);
      }
      const { writeFileSync } = await import("node:fs");
      const out = values.envoy ? (await import("./route-filter/envoy-config.js")).envoyBootstrap(config, table, values["filter-path"] ?? filterModulePath()) : table.bytes;
      if (values.output) writeFileSync(values.output, out);
      else process.stdout.write(out);
      process.stderr.write(`instio: ${path}: ${table.routes} routes, ${table.clusters} clusters, ${table.endpoints} endpoints; table ${table.bytes.length} bytes${values.output ? ` written to ${values.output}` : ""}\n`);
      return 0;
    }
    case "inject": {
      const { values } = parseArgs({ args: rest, options: { filename: { type: "string", short: "f" }, output: { type: "string", short: "o" }, image: { type: "string" }, "control-plane": { type: "string" }, "native-sidecars": { type: "string" } } });
      if (!values.filename) fail("inject needs -f FILE (a YAML file of Kubernetes objects; - for standard input)");
      const { kubeInject } = await import("./control-plane/injector/kube-inject.js");
      const { defaultInjectOptions } = await import("./control-plane/injector/inject.js");
      const { readFileSync, writeFileSync } = await import("node:fs");
      const d = defaultInjectOptions();
      const native = values["native-sidecars"] === undefined ? d.native : values["native-sidecars"] !== "false";
      const text = readFileSync(values.filename === "-" ? 0 : values.filename, "utf8");
      const out = kubeInject(text, values.filename, { ...d, image: values.image ?? d.image, controlPlane: values["control-plane"] ?? d.controlPlane, native }, (line) => process.stderr.write(`${line}\n`));
      if (values.output) writeFileSync(values.output, out);
      else process.stdout.write(out);
      return 0;
    }
    case "wait": {
      const { values } = parseArgs({ args: rest, options: { url: { type: "string" }, timeout: { type: "string" } } });
      const { waitUntilReady } = await import("./proxy/wait.js");
      return waitUntilReady(values.url ?? "http://127.0.0.1:15021/healthz/ready", Number(values.timeout ?? 60) * 1000, (line) => process.stderr.write(`${line}\n`));
    }
    case "iptables": {
      const { runIptables } = await import("./capture/command.js");
      return runIptables(rest);
    }
    case "instrument-module": {
      // Internal: a plugin's module on stdin, instrumented on stdout (proxy-wasm/plugin.ts runs it as a child).
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const { instrument } = await import("./proxy-wasm/instrument.js");
      try {
        process.stdout.write(await instrument(new Uint8Array(Buffer.concat(chunks)), Number(rest[0])));
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
        return 1;
      }
      return 0;
    }
    case "status": {
      const { values } = parseArgs({ args: rest, options: { "control-plane": { type: "string" } } });
      const { fetchStatus, renderStatus } = await import("./control-plane/status.js");
      process.stdout.write(renderStatus(await fetchStatus(values["control-plane"] ?? "127.0.0.1:15014")));
      return 0;
    }
    default:
      return fail(`unknown command "${command}"; see instio --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`instio: ${err.message}\n`);
    process.exit(1);
  },
);
