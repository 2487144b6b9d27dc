// Bookinfo-like apps on real sockets, each reaching the others only through its
// own instio sidecar, every sidecar configured only by `instio control-plane`
// from Istio YAML and Kubernetes objects: productpage → reviews v1/v2/v3 →
// ratings. Under continuous traffic, a VirtualService edit reaches both
// sidecars, an endpoint is added and one removed, and the control plane is
// killed and started again: no request fails, and the sidecars resynchronise.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { Logger } from "../../host/log.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { nodeIdentity } from "../../host/xds/node-identity.js";
import { xdsStartingConfig } from "../../host/xds/starting-config.js";
import { eventually } from "../support/mesh.js";
import { freePort, get, settingsYaml } from "../support/proxy.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface App {
  name: string;
  port: number;
  server: Server;
}

/** An app that answers JSON, calling `next` (through its sidecar) when given. */
async function app(name: string, answer: () => Promise<Record<string, unknown>>): Promise<App> {
  const server = createServer((req, res) => {
    req.resume();
    answer().then(
      (body) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ app: name, ...body })),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { name, port: (server.address() as { port: number }).port, server };
}

/** A call from an app to a service, through the app's sidecar (an explicit HTTP proxy on its outbound port). */
async function call(sidecar: () => RunningProxy, authority: string, path: string): Promise<Record<string, unknown>> {
  const r = await get(`http://127.0.0.1:${sidecar().outbound.port}`, authority, path);
  if (r.status !== 200) throw new Error(`${authority}${path} through the sidecar: ${r.status} ${r.text.slice(0, 200)}`);
  return JSON.parse(r.text) as Record<string, unknown>;
}

function kubeObjects(pods: { name: string; app: string; version: string; port: number }[]): string {
  const docs: string[] = [];
  for (const service of [...new Set(pods.map((p) => p.app))]) {
    docs.push(`apiVersion: v1
kind: Service
metadata: {name: ${service}, namespace: default}
spec:
  clusterIP: 10.96.1.${docs.length + 10}
  ports: [{name: http, port: 9080}]`);
  }
  for (const p of pods) {
    docs.push(`apiVersion: v1
kind: Pod
metadata: {name: ${p.name}, namespace: default, labels: {app: ${p.app}, version: ${p.version}}}
spec: {serviceAccountName: bookinfo-${p.app}}
status: {podIP: 127.0.0.1}`);
    docs.push(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${p.name}, namespace: default, labels: {kubernetes.io/service-name: ${p.app}}}
addressType: IPv4
ports: [{name: http, port: ${p.port}}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}, targetRef: {kind: Pod, name: ${p.name}, namespace: default}}]`);
  }
  return `${docs.join("\n---\n")}\n`;
}

function istioConfig(reviewsSubset: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: ${reviewsSubset}}}]
`;
}

/** The cluster a sidecar's route for reviews:9080 sends to. */
function reviewsRoute(p: RunningProxy): string | undefined {
  const { table, clusters } = p.holder.current.config;
  const vh = table.virtualHosts.find((v) => v.domains.includes("reviews:9080"));
  const entry = vh && table.entries[vh.entryStart];
  const dest = entry && table.routes[entry.route]!.destinations[0];
  return dest && clusters[dest.cluster]?.name;
}

describe("Bookinfo over instio sidecars configured by the control plane", () => {
  it("serves productpage → reviews → ratings through the sidecars; a VirtualService edit, endpoint changes and a control-plane restart fail no request", { timeout: 60_000 }, async () => {
    const sidecars: Record<string, RunningProxy> = {};
    const ratings1 = await app("ratings-v1", async () => ({ stars: 5 }));
    const ratings2 = await app("ratings-v1-b", async () => ({ stars: 5 }));
    // reviews v2 and v3 call ratings, through the reviews pods' sidecar.
    const reviews = await Promise.all(["v1", "v2", "v3"].map((v) => app(`reviews-${v}`, async () => (v === "v1" ? { version: v } : { version: v, ratings: await call(() => sidecars.reviews!, "ratings:9080", "/ratings/0") }))));
    const productpage = await app("productpage", async () => ({ reviews: await call(() => sidecars.productpage!, "reviews:9080", "/reviews/0") }));

    const dir = mkdtempSync(join(tmpdir(), "instio-bookinfo-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    for (const d of ["istio", "kube"]) mkdirSync(join(dir, d));
    const pods = (ratingsPods: App[]) => [
      ...reviews.map((r, i) => ({ name: `reviews-v${i + 1}-0`, app: "reviews", version: `v${i + 1}`, port: r.port })),
      ...ratingsPods.map((r, i) => ({ name: `ratings-v1-${i}`, app: "ratings", version: "v1", port: r.port })),
      { name: "productpage-v1-0", app: "productpage", version: "v1", port: productpage.port },
    ];
    writeFileSync(join(dir, "istio", "bookinfo.yaml"), istioConfig("v1"));
    writeFileSync(join(dir, "kube", "bookinfo.yaml"), kubeObjects(pods([ratings1])));
    const xdsPort = await freePort();
    const cpLogs: string[] = [];
    const startCp = (): Promise<ControlPlane> => startControlPlane({ config: join(dir, "istio"), kubeDir: join(dir, "kube"), xdsAddress: "127.0.0.1", xdsPort, monitoringAddress: "127.0.0.1", monitoringPort: 0, debounce: { quietMs: 10, maxMs: 50 }, log: new Logger("info", (l) => cpLogs.push(l)) });
    let cp = await startCp();
    cleanups.push(() => cp.close());

    const settings = requireConfig(loadConfigText("settings.yaml", settingsYaml("h1"))).settings;
    for (const [name, pod, labels] of [["productpage", "productpage-v1-0", { app: "productpage", version: "v1" }], ["reviews", "reviews-v2-0", { app: "reviews", version: "v2" }]] as const) {
      const node = nodeIdentity({ podName: pod, namespace: "default", ip: "127.0.0.1", serviceAccount: `bookinfo-${name}`, labels: { ...labels } }, {});
      const proxy = await startProxy({ config: xdsStartingConfig(settings, node), xds: { address: `127.0.0.1:${xdsPort}`, node, backoff: { baseMs: 50, maxMs: 200 } }, log: () => {} });
      cleanups.push(() => proxy.close());
      sidecars[name] = proxy;
    }
    await eventually(() => Object.values(sidecars).every((s) => s.lifecycle.ready), 10_000, "both sidecars ready");
    const page = async (): Promise<Record<string, unknown>> => JSON.parse((await get(`http://127.0.0.1:${productpage.port}`, "productpage", "/productpage")).text) as Record<string, unknown>;
    expect(await page()).toMatchObject({ app: "productpage", reviews: { app: "reviews-v1", version: "v1" } });

    // Continuous traffic from here on.
    const statuses = new Map<number, number>();
    const seen = new Set<string>();
    let running = true;
    const load = (async () => {
      while (running) {
        const r = await get(`http://127.0.0.1:${productpage.port}`, "productpage", "/productpage").catch(() => ({ status: 0, text: "{}" }));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          const body = JSON.parse(r.text) as { reviews: { app: string; ratings?: { app: string } } };
          seen.add(body.reviews.app);
          if (body.reviews.ratings) seen.add(body.reviews.ratings.app);
        }
      }
    })();

    // The VirtualService edit: reviews to v2, which calls ratings through the other sidecar.
    writeFileSync(join(dir, "istio", "bookinfo.yaml"), istioConfig("v2"));
    await cp.reload();
    await eventually(async () => ((await page()).reviews as { app: string }).app === "reviews-v2", 5000, "the route to v2");
    // Both sidecars have it: productpage's routes to v2, and the reviews sidecar took the same push.
    expect(Object.values(sidecars).map(reviewsRoute)).toEqual(["outbound|9080|v2|reviews.default.svc.cluster.local", "outbound|9080|v2|reviews.default.svc.cluster.local"]);

    // An endpoint added (a second ratings pod) and one removed (the first): EDS, in place.
    writeFileSync(join(dir, "kube", "bookinfo.yaml"), kubeObjects(pods([ratings1, ratings2])));
    await cp.reload();
    await eventually(() => seen.has("ratings-v1-b"), 5000, "traffic to the new ratings pod");
    writeFileSync(join(dir, "kube", "bookinfo.yaml"), kubeObjects(pods([ratings2])));
    await cp.reload();
    await eventually(() => sidecars.reviews!.holder.current.config.clusters.filter((c) => c.host === "ratings.default.svc.cluster.local").every((c) => c.endpoints.every((e) => e.port === ratings2.port)), 5000, "the old ratings pod gone");
    expect(sidecars.reviews!.holder.current.update).toBe("endpoints");

    // The control plane killed: traffic flows on the last config; started again with a change, both resynchronise.
    await cp.close();
    await eventually(() => Object.values(sidecars).every((s) => !s.xds!.connected), 5000, "the sidecars to notice");
    for (let i = 0; i < 5; i++) expect(((await page()).reviews as { app: string }).app).toBe("reviews-v2");
    writeFileSync(join(dir, "istio", "bookinfo.yaml"), istioConfig("v3"));
    cp = await startCp();
    await eventually(async () => ((await page()).reviews as { app: string }).app === "reviews-v3", 10_000, "the route to v3 after the restart");
    await eventually(() => Object.values(sidecars).every((s) => s.xds!.connected), 5000, "both sidecars reconnected");

    running = false;
    await load;
    expect([...statuses.keys()]).toEqual([200]);
    expect(statuses.get(200)).toBeGreaterThan(20);
    expect([...seen].sort()).toEqual(expect.arrayContaining(["reviews-v2", "ratings-v1-b"]));
  });
});
