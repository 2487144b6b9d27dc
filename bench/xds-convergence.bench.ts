// `npm run bench:xds`: how fast a change reaches instio sidecars configured by
// `instio control-plane`. One control plane and SIDECARS sidecars (each with
// its ADS stream and its translator worker) run in this process, on a mesh of
// SERVICES services with two subsets each and a VirtualService for every
// tenth. Timed from the control plane taking the change (reload(), which
// skips the watcher's debounce) until every sidecar serves it:
//   - a VirtualService edit (RDS: routes recompiled, a new route core);
//   - an endpoint added to a service (EDS: endpoints patched in place).
// Everything shares this process's two cores, so the figures are a pessimistic
// bound for sidecars that each have their own process.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { loadConfigText, requireConfig } from "../host/config/load.js";
import { startControlPlane } from "../host/control-plane/control-plane.js";
import { Logger } from "../host/log.js";
import { startProxy, type RunningProxy } from "../host/proxy/server.js";
import { nodeIdentity } from "../host/xds/node-identity.js";
import { xdsStartingConfig } from "../host/xds/starting-config.js";

const SERVICES = Number(process.env.SERVICES ?? 100);
const SIDECARS = Number(process.env.SIDECARS ?? 8);
const ROUNDS = Number(process.env.ROUNDS ?? 10);

function mesh(round: number, extraEndpoint: boolean): string {
  const docs: string[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const eps = [`{address: 10.0.${i >> 8}.${i & 255}, labels: {version: v1}}`, `{address: 10.1.${i >> 8}.${i & 255}, labels: {version: v2}}`];
    if (extraEndpoint && i === 0) eps.push(`{address: 10.2.0.${round & 255}, labels: {version: v1}}`);
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: default}
spec:
  hosts: [svc-${i}.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [${eps.join(", ")}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-${i}, namespace: default}
spec:
  host: svc-${i}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]`);
    if (i % 10 === 0) {
      // The edited VirtualService alternates between v1 and v2 for svc-0, by round.
      const subset = i === 0 && round % 2 === 1 ? "v2" : "v1";
      docs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-${i}, namespace: default}
spec:
  hosts: [svc-${i}]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: svc-${i}, subset: v2}}]
  - route: [{destination: {host: svc-${i}, subset: ${subset}}, weight: 90}, {destination: {host: svc-${i}, subset: v2}, weight: 10}]`);
    }
  }
  return `${docs.join("\n---\n")}\n`;
}

/** The subset svc-0's default route sends 90% to, in a sidecar's serving config. */
function svc0Subset(p: RunningProxy): string | undefined {
  const { table, clusters } = p.holder.current.config;
  const vh = table.virtualHosts.find((v) => v.domains.includes("svc-0:8080"));
  if (!vh) return undefined;
  const entry = table.entries[vh.entryStart + 1];
  const dest = entry && table.routes[entry.route]!.destinations[0];
  return dest && clusters[dest.cluster]?.subset;
}

function svc0Endpoints(p: RunningProxy): number {
  return p.holder.current.config.clusters.find((c) => c.name === "outbound|8080|v1|svc-0.default.svc.cluster.local")?.endpoints.length ?? 0;
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

function summary(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `${at(0.5).toFixed(1)} ms | ${at(0.99).toFixed(1)} ms | ${s.at(-1)!.toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "instio-xds-bench-"));
  const file = join(dir, "mesh.yaml");
  writeFileSync(file, mesh(0, false));
  const cp = await startControlPlane({ config: file, kubeDir: undefined, xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, log: new Logger("warning", () => {}) });
  const settings = requireConfig(loadConfigText("s.yaml", `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: bench}
spec:
  listeners: {outbound: {address: 127.0.0.1, port: 0}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
`)).settings;
  const started = performance.now();
  const sidecars = await Promise.all(Array.from({ length: SIDECARS }, (_, i) => {
    const node = nodeIdentity({ podName: `app-${i}`, namespace: "default", ip: "127.0.0.1", labels: { app: `app-${i}` } }, {});
    return startProxy({ config: xdsStartingConfig(settings, node), xds: { address: `127.0.0.1:${cp.xdsPort}`, node }, log: () => {} });
  }));
  await until(() => sidecars.every((s) => s.lifecycle.ready), "every sidecar ready");
  const readyMs = performance.now() - started;

  const rds: number[] = [];
  const eds: number[] = [];
  for (let round = 1; round <= ROUNDS * 2; round++) {
    const edit = round % 2 === 1 ? "routes" : "endpoints";
    writeFileSync(file, mesh(round, edit === "endpoints"));
    const t = performance.now();
    await cp.reload();
    if (edit === "routes") {
      const want = round % 2 === 1 ? "v2" : "v1";
      await until(() => sidecars.every((s) => svc0Subset(s) === want), "the route change everywhere");
      rds.push(performance.now() - t);
    } else {
      await until(() => sidecars.every((s) => svc0Endpoints(s) === 2), "the endpoint everywhere");
      eds.push(performance.now() - t);
      // Back to one endpoint for the next round, untimed.
      writeFileSync(file, mesh(round, false));
      await cp.reload();
      await until(() => sidecars.every((s) => svc0Endpoints(s) === 1), "the endpoint gone everywhere");
    }
  }
  const updates = sidecars[0]!.holder.current.update;
  console.log(`${SIDECARS} instio sidecars, ${SERVICES} services (${sidecars[0]!.holder.current.config.clusters.length} clusters), one process; from the control plane taking the change to every sidecar serving it, ${ROUNDS} rounds each:\n`);
  console.log(`| change | p50 | p99 | max |`);
  console.log(`|---|---:|---:|---:|`);
  console.log(`| every sidecar ready from start | ${readyMs.toFixed(0)} ms | | |`);
  console.log(`| VirtualService edit (RDS, new route core) | ${summary(rds)} |`);
  console.log(`| endpoint added (EDS, patched in place) | ${summary(eds)} |`);
  console.log(`\n(last update kind on a sidecar: ${updates})`);
  await Promise.all(sidecars.map((s) => s.close()));
  await cp.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
