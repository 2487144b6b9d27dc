// `npm run bench:updates`: what a config update costs the thread that serves
// requests, at each of Envoy's granularities, in one run:
//   - an endpoint update (EDS) in a 1 000-endpoint cluster: the serving core's
//     endpoint range is patched;
//   - the same config applied as a route change (RDS): a new core from an
//     image encoded ahead of time, the clusters attached to it (what every
//     update cost before the cluster manager);
//   - a route update in a 10 000-route table, the same way;
//   - over xDS (the sidecar fed by the control plane): an EDS update of a
//     1 000-endpoint cluster and an RDS update of a 1 000-route table, each
//     decoded and translated, assembled and swapped on the serving thread.
// Compiling (and encoding the image) happens on the config worker thread for
// file reloads; its time is printed apart, since requests do not wait for it.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { CompiledConfig } from "../host/config/compile.js";
import { loadConfigPath, requireConfig } from "../host/config/load.js";
import { encodeImageFor } from "../host/core/route-core.js";
import type { ListenerRuntime } from "../host/listeners/listener-runtime.js";
import { SnapshotHolder } from "../host/proxy/snapshot.js";
import { Telemetry } from "../host/telemetry/telemetry.js";
import { benchMesh } from "./mesh.js";
import { compile } from "../host/config/compile.js";
import { ProxyResources } from "../host/envoy/generate/resources.js";
import { ENDPOINT_TYPE, ROUTE_TYPE, type AnyMessage } from "../host/envoy/protos.js";
import { ResourceSet, SIDECAR_TYPES } from "../host/xds/resource-set.js";
import { patchEndpoints, type EndpointPatch } from "../host/envoy/translate/assemble.js";
import { deserialize, serialize } from "node:v8";

const ENDPOINTS = 1000;
const ROUTES = 10_000;
const XDS_ROUTES = 1000;
const ROUNDS = Number(process.env.UPDATE_ROUNDS ?? 40);

function endpointsYaml(count: number, shift: number): string {
  let eps = "";
  for (let i = 0; i < count; i++) {
    const n = i < shift ? i + 5000 : i; // the first `shift` endpoints replaced by others
    eps += `  - {address: 10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}, ports: {http: 8080}, labels: {version: v${n % 3}}}\n`;
  }
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: big}
spec:
  hosts: [big.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
${eps}`;
}

function routesYaml(count: number, generation: number): string {
  let routes = "";
  for (let i = 0; i < count; i++) routes += `  - match: [{uri: {prefix: /g${generation}/r${i}/}, headers: {x-user: {exact: u${i}}}}]\n    route: [{destination: {host: big}}]\n`;
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: big}
spec:
  hosts: [big]
  http:
${routes}  - route: [{destination: {host: big}}]
`;
}

/** Each config's image as the worker encoded it: a swap takes it from the config, the bench puts it back. */
const images = new Map<CompiledConfig, CompiledConfig["image"]>();

function writeTemp(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "instio-updates-"));
  writeFileSync(join(dir, "mesh.yaml"), yaml);
  return dir;
}

/** Loads `yaml` as the config worker would (with its image encoded), timing it. */
function load(yaml: string): { config: CompiledConfig; ms: number } {
  const dir = writeTemp(yaml);
  const t = performance.now();
  const config = requireConfig(loadConfigPath(dir));
  config.image = encodeImageFor(config.table);
  config.model = undefined; // as the worker sends it (no DNS names to compile again)
  images.set(config, config.image);
  return { config, ms: performance.now() - t };
}

function summary(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `${at(0.5).toFixed(2)} ms | ${at(0.99).toFixed(2)} ms`;
}

/** Times `holder.swap` alternating between configs `a` and `b` (their images restored each time). */
function timeSwaps(holder: SnapshotHolder, a: CompiledConfig, b: CompiledConfig, expect: string): number[] {
  const samples: number[] = [];
  for (let i = -10; i < ROUNDS; i++) {
    const next = i % 2 === 0 ? b : a;
    next.image = images.get(next);
    const t = performance.now();
    const s = holder.swap(next);
    if (i >= 0) samples.push(performance.now() - t); // the first ten warm up
    if (s.update !== expect) throw new Error(`expected a ${expect} update, got ${s.update}`);
  }
  return samples;
}

function main(): void {
  const mesh = benchMesh({ port: 0, upstreamPort: 9 });
  const listener: ListenerRuntime = { direction: "outbound", inFlight: 0, draining: false };
  const rows: [string, string, string][] = [];

  // 1 000 endpoints, a short route table.
  const base = load(`${mesh}---\n${endpointsYaml(ENDPOINTS, 0)}---\n${routesYaml(10, 0)}`);
  const oneMoved = load(`${mesh}---\n${endpointsYaml(ENDPOINTS, 1)}---\n${routesYaml(10, 0)}`);
  const tenthMoved = load(`${mesh}---\n${endpointsYaml(ENDPOINTS, 100)}---\n${routesYaml(10, 0)}`);
  const routeChanged = load(`${mesh}---\n${endpointsYaml(ENDPOINTS, 0)}---\n${routesYaml(10, 1)}`);
  const telemetry: Telemetry = new Telemetry(base.config.settings, () => holder.current, [listener]);
  const holder: SnapshotHolder = new SnapshotHolder(base.config, (config) => telemetry.statsFor(config));
  rows.push([`endpoint update, ${ENDPOINTS}-endpoint cluster: 1 endpoint replaced`, summary(timeSwaps(holder, base.config, oneMoved.config, "endpoints")), `${oneMoved.ms.toFixed(0)} ms`]);
  rows.push([`endpoint update, ${ENDPOINTS}-endpoint cluster: 100 endpoints replaced`, summary(timeSwaps(holder, base.config, tenthMoved.config, "endpoints")), `${tenthMoved.ms.toFixed(0)} ms`]);
  rows.push([`the same ${ENDPOINTS} endpoints, applied as a route change (new core)`, summary(timeSwaps(holder, base.config, routeChanged.config, "routes")), `${routeChanged.ms.toFixed(0)} ms`]);

  // 10 000 routes.
  const routesA = load(`${mesh}---\n${endpointsYaml(3, 0)}---\n${routesYaml(ROUTES, 0)}`);
  const routesB = load(`${mesh}---\n${endpointsYaml(3, 0)}---\n${routesYaml(ROUTES, 1)}`);
  const routesEndpoints = load(`${mesh}---\n${endpointsYaml(3, 1)}---\n${routesYaml(ROUTES, 0)}`);
  const holder2 = new SnapshotHolder(routesA.config, (config) => telemetry.statsFor(config));
  rows.push([`route update, ${ROUTES}-route table`, summary(timeSwaps(holder2, routesA.config, routesB.config, "routes")), `${routesB.ms.toFixed(0)} ms`]);
  rows.push([`endpoint update beside a ${ROUTES}-route table`, summary(timeSwaps(holder2, routesA.config, routesEndpoints.config, "endpoints")), `${routesEndpoints.ms.toFixed(0)} ms`]);

  rows.push(...xdsRows(mesh, telemetry));

  console.log(`Serving-thread cost of a config update (holder.swap with its telemetry binding), ${ROUNDS} alternating updates each; compile = parse, validate, compile and encode on the config worker.\n`);
  console.log("| update | serving thread p50 | p99 | compile (worker) |");
  console.log("|---|---:|---:|---:|");
  for (const [name, times, compile] of rows) console.log(`| ${name} | ${times.replace(" | ", " | ")} | ${compile} |`);
}

/** A config's Envoy resources as the control plane sends them (compiled with every cluster, as it does). */
function generated(yaml: string): ProxyResources {
  return new ProxyResources(compile(requireConfig(loadConfigPath(writeTemp(yaml))).model!, undefined, { everyCluster: true, digests: false }), "sidecar");
}

/**
 * The sidecar fed by xDS: what one EDS or RDS response costs, split as it runs.
 * The translator worker decodes and translates the resource, assembles the
 * config, encodes the image and serializes the result (or, for EDS, the
 * changed clusters' endpoints); the serving thread deserializes it and swaps.
 * Both run here in one thread, timed apart. Alternates between two versions.
 */
function xdsRows(mesh: string, telemetry: Telemetry): [string, string, string][] {
  const rows: [string, string, string][] = [];
  const run = (name: string, type: string, a: AnyMessage, b: AnyMessage, base: ProxyResources, expect: string): void => {
    const set = new ResourceSet();
    for (const t of SIDECAR_TYPES) set.apply(t, [...base.all(t)].map((r) => r.any), [], false);
    const holder = new SnapshotHolder(set.build(base.config.settings), (config) => telemetry.statsFor(config));
    const serving: number[] = [];
    const worker: number[] = [];
    for (let i = -10; i < ROUNDS; i++) {
      const t0 = performance.now();
      set.apply(type, [i % 2 === 0 ? b : a], [], false);
      let bytes: Buffer;
      if (type === ENDPOINT_TYPE) bytes = serialize(set.endpointPatches(holder.current.config));
      else {
        const built = set.build(holder.current.config.settings);
        built.image = encodeImageFor(built.table);
        bytes = serialize(built);
      }
      const t1 = performance.now();
      const received: unknown = deserialize(bytes);
      const config = type === ENDPOINT_TYPE ? patchEndpoints(holder.current.config, received as EndpointPatch[]) : (received as CompiledConfig);
      const s = holder.swap(config);
      const t2 = performance.now();
      if (s.update !== expect) throw new Error(`${name}: expected a ${expect} update, got ${s.update}`);
      if (i >= 0) {
        serving.push(t2 - t1);
        worker.push(t1 - t0);
      }
    }
    rows.push([name, summary(serving), `${summary(worker).split(" | ")[0]} (translator worker)`]);
  };
  const endpointsA = generated(`${mesh}---\n${endpointsYaml(ENDPOINTS, 0)}---\n${routesYaml(10, 0)}`);
  const endpointsB = generated(`${mesh}---\n${endpointsYaml(ENDPOINTS, 1)}---\n${routesYaml(10, 0)}`);
  const cla = (r: ProxyResources): AnyMessage => [...r.all(ENDPOINT_TYPE)].find((x) => x.name === "outbound|80||big.default.svc.cluster.local")!.any;
  run(`xDS: EDS update, ${ENDPOINTS}-endpoint cluster, 1 endpoint replaced`, ENDPOINT_TYPE, cla(endpointsA), cla(endpointsB), endpointsA, "endpoints");
  const routesA = generated(`${mesh}---\n${endpointsYaml(3, 0)}---\n${routesYaml(XDS_ROUTES, 0)}`);
  const routesB = generated(`${mesh}---\n${endpointsYaml(3, 0)}---\n${routesYaml(XDS_ROUTES, 1)}`);
  const rc = (r: ProxyResources): AnyMessage => [...r.all(ROUTE_TYPE)].find((x) => x.name === "80")!.any;
  run(`xDS: RDS update, ${XDS_ROUTES}-route table`, ROUTE_TYPE, rc(routesA), rc(routesB), routesA, "routes");
  return rows;
}

main();
