// `instio quickstart --mesh`: the control plane configuring clients, in one
// command. Three gRPC "reviews" pods run on loopback; `instio control-plane`
// serves examples/mesh-quickstart (Istio YAML, and Kubernetes objects in place
// of a cluster) on istiod's ports; two kinds of client take their config from
// it and print where their calls went:
//   - @grpc/grpc-js-xds clients, bootstrapped through GRPC_XDS_BOOTSTRAP as any
//     proxyless gRPC app is, calling xds:///reviews:9080;
//   - an instio sidecar (`instio proxy --xds`) on 127.0.0.1:15001, through
//     which a plain gRPC client calls reviews:9080.
// Edit the YAML while it runs: both splits follow.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { editableExample, selfCommand } from "../package-root.js";
import * as grpc from "@grpc/grpc-js";
import { startControlPlane } from "./control-plane.js";
import { defaultSettings } from "../config/settings.js";
import { startProxy } from "../proxy/server.js";
import { nodeIdentity } from "../xds/node-identity.js";
import { xdsStartingConfig } from "../xds/starting-config.js";


/** The pods of examples/mesh-quickstart/kube/reviews.yaml, on the ports its EndpointSlices name. */
const PODS = [
  { version: "v1", port: 19181 },
  { version: "v2", port: 19182 },
  { version: "v3", port: 19183 },
];

/** A gRPC method with JSON bodies, so the demo needs no .proto file. */
const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer): unknown => JSON.parse(b.toString("utf8")) };
const REVIEWS = {
  get: { path: "/bookinfo.Reviews/Get", requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
} as const;

async function startPod(version: string, port: number): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(REVIEWS, {
    get: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { service: "reviews", version, endUser: call.metadata.get("end-user")[0] ?? null }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(new Error(`reviews ${version} cannot listen on 127.0.0.1:${port}: ${err.message}`)) : resolve())));
  return server;
}

export interface MeshQuickstartOptions {
  xdsPort?: number;
  monitoringPort?: number;
  /** The instio sidecar's outbound and admin ports (15001, 15000). */
  sidecarPort?: number;
  sidecarAdminPort?: number;
  /** How often the clients report (ms). */
  reportEveryMs?: number;
  print?: (line: string) => void;
}

export async function runMeshQuickstart(options: MeshQuickstartOptions = {}): Promise<{ close(): Promise<void> }> {
  const print = options.print ?? ((l: string) => console.log(l));
  const pods = await Promise.all(PODS.map((p) => startPod(p.version, p.port)));
  const example = editableExample("mesh-quickstart");
  const istio = join(example, "istio");
  const kube = join(example, "kube");
  const cp = await startControlPlane({ config: istio, kubeDir: kube, xdsAddress: "127.0.0.1", xdsPort: options.xdsPort ?? 15010, monitoringAddress: "127.0.0.1", monitoringPort: options.monitoringPort ?? 15014 });

  // What a proxyless gRPC app is given in a pod (Istio's injector writes it for grpc-agent).
  const bootstrap = join(mkdtempSync(join(tmpdir(), "instio-mesh-quickstart-")), "grpc-bootstrap.json");
  writeFileSync(bootstrap, `${JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${cp.xdsPort}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
    node: { id: "sidecar~127.0.0.1~productpage-v1-6b746f74dc-9stvs.default~default.svc.cluster.local", locality: {}, metadata: { GENERATOR: "grpc", NAMESPACE: "default", ISTIO_VERSION: "1.28.0", LABELS: { app: "productpage", version: "v1" } } },
  }, null, 2)}\n`);
  process.env.GRPC_XDS_BOOTSTRAP = bootstrap;
  // Loaded after GRPC_XDS_BOOTSTRAP is set; registering the xds: scheme is what an app does once.
  const xds = await import("@grpc/grpc-js-xds");
  xds.register();
  const Reviews = grpc.makeGenericClientConstructor(REVIEWS, "Reviews");
  const client = new Reviews("xds:///reviews:9080", grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    get(req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { version: string }) => void): void;
  };
  // A second productpage pod, with an instio sidecar in front of a plain gRPC client: the sidecar takes its
  // routes from the control plane and speaks HTTP/2 (h2c) on its outbound port, as the app's calls do.
  const node = nodeIdentity({ podName: "productpage-v1-6b746f74dc-k8s2p", namespace: "default", ip: "127.0.0.1", serviceAccount: "bookinfo-productpage", labels: { app: "productpage", version: "v1" } }, {});
  const base = defaultSettings();
  const settings = {
    ...base,
    outbound: { ...base.outbound, port: options.sidecarPort ?? 15001, engine: "h2c" as const },
    admin: { ...base.admin, port: options.sidecarAdminPort ?? 15000 },
    agent: undefined,
  };
  const sidecar = await startProxy({ config: xdsStartingConfig(settings, node), xds: { address: `127.0.0.1:${cp.xdsPort}`, node }, log: () => {} });
  // The first report waits for the sidecar's first complete config (its readiness), as a pod's app waits for it.
  for (const until = Date.now() + 15_000; !sidecar.lifecycle.ready && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
  if (!sidecar.lifecycle.ready) print("instio sidecar: not ready after 15 s (no complete config from the control plane yet); its calls fail until it is");
  const viaSidecar = new Reviews(`127.0.0.1:${sidecar.outbound.port}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "reviews:9080" }) as unknown as typeof client;

  let lastError = "";
  const callWith = (c: typeof client) => (user?: string): Promise<string> => new Promise((resolve) => {
    const md = new grpc.Metadata();
    if (user) md.set("end-user", user);
    c.get({ id: 1 }, md, { deadline: Date.now() + 5000 }, (err, res) => {
      if (err) lastError = err.details;
      resolve(err ? `error ${grpc.status[err.code] ?? err.code}` : `reviews-${res!.version}`);
    });
  });
  const callers = [["proxyless gRPC", callWith(client)], ["via instio sidecar", callWith(viaSidecar)]] as const;

  const monitoring = `http://127.0.0.1:${cp.monitoringPort}`;
  print(`instio quickstart --mesh: control plane xDS on 127.0.0.1:${cp.xdsPort}, monitoring ${monitoring}`);
  print(`config: ${istio} (Istio) and ${kube} (Kubernetes objects); edit them: the clients follow`);
  print(`pods: ${PODS.map((p) => `reviews-${p.version} 127.0.0.1:${p.port}`).join(", ")}`);
  print(`gRPC clients: xds:///reviews:9080, GRPC_XDS_BOOTSTRAP=${bootstrap}`);
  print(`instio sidecar (${node.id}): outbound h2c 127.0.0.1:${sidecar.outbound.port}, admin 127.0.0.1:${sidecar.admin.port}, configured by the control plane over delta xDS`);
  print("\nTry, in another terminal:");
  print(`  ${selfCommand()} status --control-plane 127.0.0.1:${cp.monitoringPort}     # istioctl proxy-status`);
  print(`  curl -s '${monitoring}/debug/config_dump?proxyID=productpage-v1-6b746f74dc-9stvs.default' | head -40`);
  print(`  curl -s ${monitoring}/metrics | grep pilot_xds_pushes`);
  print(`  curl -s 127.0.0.1:${sidecar.admin.port}/config_dump | head -40                  # the sidecar's config, in Envoy's shape`);
  print(`  sed -i 's/weight: 80/weight: 50/; s/weight: 20/weight: 50/' ${join(istio, "reviews.yaml")}   # then watch the split`);
  print("\nEvery few seconds, from each kind of client, 50 calls and one as end-user jason:");

  let stopped = false;
  const report = async (): Promise<void> => {
    while (!stopped) {
      for (const [who, call] of callers) {
        const results = await Promise.all(Array.from({ length: 50 }, () => call()));
        const counts = new Map<string, number>();
        for (const r of results) counts.set(r, (counts.get(r) ?? 0) + 1);
        const split = [...counts].sort().map(([k, n]) => `${k} ${n}`).join(", ");
        print(`  ${who.padEnd(18)} 50 calls: ${split}   |   end-user jason: ${await call("jason")}`);
      }
      if (lastError) print(`  (last error: ${lastError})`);
      lastError = "";
      await new Promise((r) => setTimeout(r, options.reportEveryMs ?? 3000));
    }
  };
  const reporting = report();
  return {
    close: async () => {
      stopped = true;
      await reporting;
      client.close();
      viaSidecar.close();
      await sidecar.close();
      await cp.close();
      for (const p of pods) p.forceShutdown();
    },
  };
}
