// A mesh on real sockets for control-plane tests: gRPC backends, the Kubernetes
// objects that register them (one EndpointSlice per backend, since each listens
// on its own port), the control plane, and @grpc/grpc-js-xds clients configured
// only by it.

import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { Logger } from "../../host/log.js";

xds.register();

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
export const ECHO_SERVICE = {
  call: { path: "/echo.Echo/Call", requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};
const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, "Echo");

/** What a backend does with the next calls; tests change it while clients run. */
export interface Behaviour {
  /** Fail this many of the next calls with `status`. */
  failNext: number;
  /** Fail every call with `status`. */
  failAll: boolean;
  status: grpc.status;
  /** Calls wait here until release() (time under the test's control). */
  hold: boolean;
}

export interface Backend {
  name: string;
  version: string;
  port: number;
  calls: number;
  /** Metadata of the calls received. */
  metadata: Record<string, unknown>[];
  behaviour: Behaviour;
  held(): number;
  release(): void;
  close(): void;
}

export async function startBackend(name: string, version: string): Promise<Backend> {
  const server = new grpc.Server();
  const waiting: (() => void)[] = [];
  const backend: Backend = {
    name,
    version,
    port: 0,
    calls: 0,
    metadata: [],
    behaviour: { failNext: 0, failAll: false, status: grpc.status.UNAVAILABLE, hold: false },
    held: () => waiting.length,
    release: () => {
      backend.behaviour.hold = false;
      for (const w of waiting.splice(0)) w();
    },
    close: () => server.forceShutdown(),
  };
  server.addService(ECHO_SERVICE, {
    call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      backend.calls++;
      backend.metadata.push(call.metadata.getMap());
      const answer = (): void => {
        const b = backend.behaviour;
        if (b.failAll || b.failNext > 0) {
          if (b.failNext > 0) b.failNext--;
          cb({ code: b.status, details: `${name} fails on purpose` });
          return;
        }
        cb(null, Buffer.from(JSON.stringify({ name, version })));
      };
      if (backend.behaviour.hold) waiting.push(answer);
      else answer();
    },
  });
  backend.port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  return backend;
}

/** A Kubernetes Service with its pods: each backend is a pod labelled app=SERVICE, version=its version. */
export function kubeService(service: string, port: number, backends: Backend[], namespace = "default"): string {
  const docs = [`apiVersion: v1
kind: Service
metadata: {name: ${service}, namespace: ${namespace}}
spec:
  clusterIP: 10.96.0.${10 + (port % 200)}
  ports: [{name: grpc, port: ${port}}]`];
  for (const b of backends) {
    docs.push(`apiVersion: v1
kind: Pod
metadata: {name: ${b.name}, namespace: ${namespace}, labels: {app: ${service}, version: ${b.version}}}
spec: {serviceAccountName: ${service}}
status: {podIP: 127.0.0.1}`);
    docs.push(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${b.name}, namespace: ${namespace}, labels: {kubernetes.io/service-name: ${service}}}
addressType: IPv4
ports: [{name: grpc, port: ${b.port}}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}, targetRef: {kind: Pod, name: ${b.name}, namespace: ${namespace}}}]`);
  }
  return `${docs.join("\n---\n")}\n`;
}

export interface TestMesh {
  dir: string;
  cp: ControlPlane;
  logs: string[];
  /** Replaces the Istio config (one file) and waits for the control plane to take it. */
  setIstio(yaml: string): Promise<void>;
  /** Replaces the Kubernetes objects (one file) and waits for the control plane to take them. */
  setKube(yaml: string): Promise<void>;
  client(target: string, proxy?: string): EchoCaller;
  /** Closes the clients made so far (each test starts with fresh ones). */
  closeClients(): void;
  close(): Promise<void>;
}

export interface EchoCaller {
  /** Calls and resolves to the answering backend's name; rejects with the gRPC error. */
  call(metadata?: Record<string, string>, deadlineMs?: number): Promise<string>;
  close(): void;
}

let clientCounter = 0;

export function grpcBootstrap(xdsPort: number, nodeName: string, namespace = "default"): object {
  return {
    xds_servers: [{ server_uri: `127.0.0.1:${xdsPort}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
    node: { id: `sidecar~127.0.0.1~${nodeName}.${namespace}~${namespace}.svc.cluster.local`, locality: {}, metadata: { GENERATOR: "grpc", NAMESPACE: namespace, ISTIO_VERSION: "1.28.0" } },
  };
}

export async function startMesh(istio: string, kube: string): Promise<TestMesh> {
  const dir = mkdtempSync(join(tmpdir(), "instio-mesh-"));
  const istioFile = join(dir, "istio", "config.yaml");
  const kubeFile = join(dir, "kube", "objects.yaml");
  for (const [file, text] of [[istioFile, istio], [kubeFile, kube]] as const) {
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, text);
  }
  const logs: string[] = [];
  const cp = await startControlPlane({ config: join(dir, "istio"), kubeDir: join(dir, "kube"), xdsAddress: "127.0.0.1", xdsPort: 0, monitoringAddress: "127.0.0.1", monitoringPort: 0, log: new Logger("info", (l) => logs.push(l)) });
  const clients: EchoCaller[] = [];
  const set = async (file: string, text: string): Promise<void> => {
    writeFileSync(file, text);
    // The watcher would pick it up within the debounce; reloading now keeps the test short, and is idempotent.
    await cp.reload();
  };
  return {
    dir,
    cp,
    logs,
    setIstio: (yaml) => set(istioFile, yaml),
    setKube: (yaml) => set(kubeFile, yaml),
    client(target, proxy = `client-${++clientCounter}`) {
      const client = new EchoClient(`xds:///${target}`, grpc.credentials.createInsecure(), { "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config": JSON.stringify(grpcBootstrap(cp.xdsPort, proxy)) }) as unknown as grpc.Client & {
        call(req: Buffer, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void;
      };
      const caller: EchoCaller = {
        call: (metadata = {}, deadlineMs = 10_000) => new Promise((resolve, reject) => {
          const md = new grpc.Metadata();
          for (const [k, v] of Object.entries(metadata)) md.set(k, v);
          client.call(Buffer.from("ping"), md, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve((JSON.parse(res!.toString()) as { name: string }).name)));
        }),
        close: () => client.close(),
      };
      clients.push(caller);
      return caller;
    },
    closeClients() {
      for (const c of clients.splice(0)) c.close();
    },
    async close() {
      for (const c of clients) c.close();
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns true (or throws its last error after `timeoutMs`). */
/** Waits for `check`; `what` names it in the timeout's message (a function: read then, for output gathered meanwhile). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what: string | (() => string) = "condition"): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
