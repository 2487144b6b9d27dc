// `npm run bench:control-plane`: istiod's published scale point — 1 000
// services and 2 000 sidecars — on `instio control-plane`, in one run:
//   - the control plane in its own process (`instio control-plane`, Kubernetes
//     objects from a directory, Istio config from another), 2 000 simulated
//     sidecars in another (bench/ads-clients.ts: Delta ADS, Envoy's subscriptions);
//   - time for every sidecar to get its first complete config;
//   - the control plane's RSS and CPU at rest with 2 000 proxies connected;
//   - convergence after a VirtualService change (RDS) and after an endpoint
//     change (EDS): from the file write to each sidecar's receipt of the push,
//     p50 / p99 / max. That includes istiod's 100 ms debounce and the file watch.
// istiod's figure for the same mesh: 1 vCPU and 1.5 GB.
//
// SERVICES, CLIENTS, ROUNDS in the environment shrink it (a quick look: SERVICES=100 CLIENTS=200).

import { fork, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ENDPOINT_TYPE, ROUTE_TYPE } from "../host/envoy/protos.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SERVICES = Number(process.env.SERVICES ?? 1000);
const CLIENTS = Number(process.env.CLIENTS ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const NAMESPACES = 10;
/** One service in ten has a DestinationRule with two subsets and a 90/10 VirtualService. */
const ROUTED_EVERY = 10;

function kubeObjects(i: number, endpointShift = 0): string {
  const ns = `ns-${i % NAMESPACES}`;
  const name = `svc-${i}`;
  const docs = [`apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec:
  clusterIP: 10.96.${i >> 8}.${i & 255}
  ports: [{name: http, port: 8080}]`];
  const endpoints: string[] = [];
  for (let p = 0; p < 3; p++) {
    const pod = `${name}-${p}`;
    const ip = `10.${10 + p}.${i >> 8}.${(i + endpointShift) & 255}`;
    docs.push(`apiVersion: v1
kind: Pod
metadata: {name: ${pod}, namespace: ${ns}, labels: {app: ${name}, version: v${(p % 2) + 1}}}
spec: {serviceAccountName: ${name}}
status: {podIP: ${ip}}`);
    endpoints.push(`  - {addresses: ["${ip}"], conditions: {ready: true}, targetRef: {kind: Pod, name: ${pod}, namespace: ${ns}}}`);
  }
  docs.push(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-abcde, namespace: ${ns}, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
${endpoints.join("\n")}`);
  return docs.join("\n---\n");
}

function istioObjects(i: number, canaryWeight: number): string {
  const ns = `ns-${i % NAMESPACES}`;
  const name = `svc-${i}`;
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: ${ns}}
spec:
  host: ${name}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: ${ns}}
spec:
  hosts: [${name}]
  http:
  - route:
    - {destination: {host: ${name}, subset: v1}, weight: ${100 - canaryWeight}}
    - {destination: {host: ${name}, subset: v2}, weight: ${canaryWeight}}`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** RSS (bytes) and CPU seconds (user + system) of a process, from /proc. */
function usage(pid: number): { rss: number; cpu: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { rss, cpu: (Number(fields[11]) + Number(fields[12])) / 100 };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "instio-cp-bench-"));
  const kubeDir = join(dir, "kube");
  const configDir = join(dir, "istio");
  mkdirSync(kubeDir);
  mkdirSync(configDir);
  // The objects that change in the run are in their own files, as a user (or a cluster) changes one object.
  const rest: string[] = [];
  for (let i = 1; i < SERVICES; i++) rest.push(kubeObjects(i));
  writeFileSync(join(kubeDir, "services.yaml"), `${rest.join("\n---\n")}\n`);
  writeFileSync(join(kubeDir, "svc-0.yaml"), `${kubeObjects(0)}\n`);
  const routed: string[] = [];
  for (let i = ROUTED_EVERY; i < SERVICES; i += ROUTED_EVERY) routed.push(istioObjects(i, 10));
  writeFileSync(join(configDir, "routes.yaml"), `${routed.join("\n---\n")}\n`);
  writeFileSync(join(configDir, "svc-0.yaml"), `${istioObjects(0, 10)}\n`);

  const xdsPort = await freePort();
  const monitoringPort = await freePort();
  const cp = spawn(process.execPath, [...(process.env.CP_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.CP_PROFILE}`] : []), join(ROOT, "dist/host/cli.js"), "control-plane", "--config", configDir, "--kube-dir", kubeDir, "--xds-port", String(xdsPort), "--monitoring-port", String(monitoringPort), "--address", "127.0.0.1"], { stdio: ["ignore", "ignore", "inherit"] });
  const startedAt = Date.now();
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${monitoringPort}/ready`)).ok) break;
    } catch {
      await sleep(50);
    }
    if (Date.now() - startedAt > 120_000) throw new Error("the control plane did not start");
  }
  const startup = Date.now() - startedAt;
  const empty = usage(cp.pid!);

  const clients = fork(join(ROOT, "dist/bench/ads-clients.js"), [], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const next = (event: string): Promise<Record<string, unknown>> => new Promise((resolve) => {
    const on = (m: Record<string, unknown>): void => {
      if (m.event !== event) return;
      clients.off("message", on);
      resolve(m);
    };
    clients.on("message", on);
  });
  await next("ready");
  const cpuBeforeSync = usage(cp.pid!).cpu;
  clients.send({ cmd: "start", port: xdsPort, clients: CLIENTS, namespaces: NAMESPACES });
  const synced = (await next("synced")) as { ms: number };
  const cpuSync = usage(cp.pid!).cpu - cpuBeforeSync;

  await sleep(3000);
  const restStart = usage(cp.pid!);
  await sleep(10_000);
  const restEnd = usage(cp.pid!);

  const converge = async (type: string, change: (round: number) => void): Promise<number[]> => {
    const all: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const since = Date.now();
      change(round);
      clients.send({ cmd: "expect", type, since, timeoutMs: 60_000 });
      const { latencies } = (await next("converged")) as { latencies: number[] };
      const missed = latencies.filter((l) => l < 0).length;
      if (missed > 0) throw new Error(`${missed} sidecars got no ${type} push within 60 s`);
      all.push(...latencies);
      await sleep(1000);
    }
    return all.sort((a, b) => a - b);
  };
  // The simulated sidecars' process too: on this machine it shares the two cores with the control plane, and
  // receiving a push (every byte through its HTTP/2 stack) is part of each convergence time.
  const cpuBeforeRoutes = usage(cp.pid!).cpu;
  const clientCpuBeforeRoutes = usage(clients.pid!).cpu;
  const routeLatencies = await converge(ROUTE_TYPE, (round) => writeFileSync(join(configDir, "svc-0.yaml"), `${istioObjects(0, 10 + round)}\n`));
  const cpuRoutes = usage(cp.pid!).cpu - cpuBeforeRoutes;
  const clientCpuRoutes = usage(clients.pid!).cpu - clientCpuBeforeRoutes;
  const cpuBeforeEndpoints = usage(cp.pid!).cpu;
  const clientCpuBeforeEndpoints = usage(clients.pid!).cpu;
  const endpointLatencies = await converge(ENDPOINT_TYPE, (round) => writeFileSync(join(kubeDir, "svc-0.yaml"), `${kubeObjects(0, round)}\n`));
  const cpuEndpoints = usage(cp.pid!).cpu - cpuBeforeEndpoints;
  const clientCpuEndpoints = usage(clients.pid!).cpu - clientCpuBeforeEndpoints;
  const peak = readFileSync(`/proc/${cp.pid}/status`, "utf8").match(/VmHWM:\s+(\d+) kB/)![1];

  // Mean response size per type (istiod's pilot_xds_config_size_bytes).
  const metrics = await (await fetch(`http://127.0.0.1:${monitoringPort}/metrics`)).text();
  const meanBytes: Record<string, number> = {};
  for (const type of ["cds", "eds", "lds", "rds"]) {
    const sum = Number(new RegExp(`pilot_xds_config_size_bytes_sum\\{type="${type}"\\} (\\S+)`).exec(metrics)?.[1] ?? 0);
    const count = Number(new RegExp(`pilot_xds_config_size_bytes_count\\{type="${type}"\\} (\\S+)`).exec(metrics)?.[1] ?? 0);
    meanBytes[type] = count > 0 ? Math.round(sum / count) : 0;
  }
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, "m").exec(metrics)?.[1] ?? 0);
  const memory = { heapUsed: gauge("nodejs_heap_size_used_bytes"), external: gauge("nodejs_external_memory_bytes") };
  clients.send({ cmd: "stop" });
  cp.kill("SIGTERM");

  const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(0)} MB`;
  const row = (name: string, l: number[]): string => `${name.padEnd(34)} p50 ${String(percentile(l, 50)).padStart(5)} ms   p99 ${String(percentile(l, 99)).padStart(5)} ms   max ${String(l[l.length - 1]).padStart(5)} ms`;
  const result = {
    services: SERVICES,
    sidecars: CLIENTS,
    rounds: ROUNDS,
    startupMs: startup,
    initialSyncMs: synced.ms,
    initialSyncCpuSeconds: cpuSync,
    rssEmptyBytes: empty.rss,
    rssAtRestBytes: restEnd.rss,
    peakRssBytes: Number(peak) * 1024,
    cpuAtRestPercent: ((restEnd.cpu - restStart.cpu) / 10) * 100,
    cpuPerRouteRoundSeconds: cpuRoutes / ROUNDS,
    cpuPerEndpointRoundSeconds: cpuEndpoints / ROUNDS,
    sidecarsCpuPerRouteRoundSeconds: clientCpuRoutes / ROUNDS,
    sidecarsCpuPerEndpointRoundSeconds: clientCpuEndpoints / ROUNDS,
    meanResponseBytes: meanBytes,
    heapUsedBytes: memory.heapUsed,
    externalBytes: memory.external,
    routeConvergenceMs: { p50: percentile(routeLatencies, 50), p99: percentile(routeLatencies, 99), max: routeLatencies[routeLatencies.length - 1] },
    endpointConvergenceMs: { p50: percentile(endpointLatencies, 50), p99: percentile(endpointLatencies, 99), max: endpointLatencies[endpointLatencies.length - 1] },
  };
  console.log(`instio control-plane: ${SERVICES} services (${SERVICES * 3} pods), ${CLIENTS} sidecars (Delta ADS), ${ROUNDS} rounds per change`);
  console.log(`  start-up to ready                 ${startup} ms`);
  console.log(`  every sidecar's first full config ${synced.ms} ms (${cpuSync.toFixed(1)} CPU s in the control plane)`);
  console.log(`  RSS: before clients ${mb(empty.rss)}, at rest with ${CLIENTS} connected ${mb(restEnd.rss)}, peak ${mb(Number(peak) * 1024)}`);
  console.log(`  of which JS heap in use ${mb(memory.heapUsed)}, external (buffers) ${mb(memory.external)}`);
  console.log(`  mean response size                 ${Object.entries(meanBytes).map(([t, b]) => `${t} ${(b / 1024).toFixed(0)} KiB`).join(", ")}`);
  console.log(`  CPU at rest                       ${result.cpuAtRestPercent.toFixed(1)} % of a core`);
  console.log(`  ${row("VirtualService change → RDS", routeLatencies)}   (${result.cpuPerRouteRoundSeconds.toFixed(2)} CPU s per change; the simulated sidecars ${result.sidecarsCpuPerRouteRoundSeconds.toFixed(2)})`);
  console.log(`  ${row("EndpointSlice change → EDS", endpointLatencies)}   (${result.cpuPerEndpointRoundSeconds.toFixed(2)} CPU s per change; the simulated sidecars ${result.sidecarsCpuPerEndpointRoundSeconds.toFixed(2)})`);
  console.log(`  (istiod's published figure for 1 000 services and 2 000 sidecars: 1 vCPU, 1.5 GB)`);
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  writeFileSync(join(ROOT, "bench/results/control-plane.json"), `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
