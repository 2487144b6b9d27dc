// A worker thread that serves (`concurrency: N`, one per worker beyond the main
// thread's): it binds every listener with SO_REUSEPORT beside the main thread's
// sockets and serves with its own route core, clusters and telemetry. The main
// thread owns the config source and sends each config it applies
// (serving-workers.ts); requests in flight and the draining flag are shared
// memory the main thread's lifecycle reads and sets. Messages are in
// ServingWorkerMessage and WorkerReport.

import { parentPort, workerData } from "node:worker_threads";
import { deserialize } from "node:v8";
import type { CompiledConfig } from "../config/compile.js";
import { Logger, LOG_LEVELS, type LogLevel } from "../log.js";
import type { Listener } from "../listeners/listener.js";
import { SharedListenerRuntime } from "../listeners/listener-runtime.js";
import type { ManagedListener } from "./lifecycle.js";
import { createServing } from "./serving.js";
import { adoptModules, prepareModules } from "../proxy-wasm/plugin.js";

/** What a serving worker starts from. */
export interface ServingWorkerData {
  /** 1.. (the main thread serves as 0). */
  index: number;
  /** The config the main thread serves, v8-serialized without its model. */
  config: ArrayBuffer;
  /** Its Proxy-Wasm modules, instrumented and compiled by the main thread. */
  modules: [string, WebAssembly.Module][];
  /** The ports the main thread bound (a 0 in the settings is the port the kernel picked there). */
  ports: { outbound: number; inbound: number | undefined };
  nodeId: string;
  inMesh: boolean;
  /** The main thread's own ports (admin, agent, listeners): passthrough from this worker never reaches them either. */
  selfPorts: number[];
  identity: { key: string; chain: string[] } | undefined;
  /** This worker's runtime cells (listener-runtime.ts SharedListenerRuntime): outbound, inbound. */
  block: SharedArrayBuffer;
  /** Every serving thread's circuit-breaker counts (cluster/shared-breakers.ts). */
  breakers: SharedArrayBuffer;
  logLevel: LogLevel;
}

export type ServingWorkerMessage =
  | { type: "config"; config: ArrayBuffer; modules: [string, WebAssembly.Module][]; origin: string }
  | { type: "sync-listeners" }
  | { type: "identity"; identity: { key: string; chain: string[] } | undefined }
  | { type: "metrics"; id: number }
  | { type: "stop-accepting"; direction: "outbound" | "inbound" }
  | { type: "log-level"; level: LogLevel }
  | { type: "close" };

export type WorkerReport =
  | { type: "ready" }
  | { type: "failed"; error: string }
  | { type: "log"; level: Exclude<LogLevel, "off">; line: string }
  | { type: "metrics"; id: number; metrics: unknown[] }
  | { type: "closed" };

/** Log lines go to the main thread's log, with the worker's number. */
class ForwardingLogger extends Logger {
  constructor(level: LogLevel, private readonly prefix: string) {
    super(level, () => {});
  }
  override log(level: Exclude<LogLevel, "off">, message: string): void {
    if (LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.level)) report({ type: "log", level, line: `${this.prefix}${message}` });
  }
}

function report(r: WorkerReport): void {
  parentPort!.postMessage(r);
}

async function main(data: ServingWorkerData): Promise<void> {
  const config = deserialize(Buffer.from(data.config)) as CompiledConfig;
  config.settings.outbound.port = data.ports.outbound;
  if (config.settings.inbound && data.ports.inbound !== undefined) config.settings.inbound.port = data.ports.inbound;
  const logger = new ForwardingLogger(data.logLevel, `worker ${data.index}: `);
  let identity = data.identity;
  const managed: ManagedListener[] = [];
  const outbound = new SharedListenerRuntime(data.block, "outbound");
  const inbound = new SharedListenerRuntime(data.block, "inbound");
  adoptModules(data.modules);
  await prepareModules(config.wasmPlugins);
  const serving = createServing({
    config,
    nodeId: data.nodeId,
    inMesh: data.inMesh,
    logger,
    runtimes: { outbound, inbound, bound: (routePort) => new SharedListenerRuntime(data.block, "outbound", routePort) },
    drain: {
      add: (l) => void managed.push(l),
      remove: (l: Listener) => void managed.splice(managed.findIndex((m) => m.listener === l) >>> 0, 1),
    },
    identity: () => identity,
    reusePort: true,
    thread: data.index,
    selfPorts: data.selfPorts,
    breakers: data.breakers,
  });
  // Configs apply in the order the main thread sent them, each after the one before (plugins prepare asynchronously).
  let applying = Promise.resolve();
  parentPort!.on("message", (m: ServingWorkerMessage) => {
    switch (m.type) {
      case "config":
        applying = applying.then(async () => {
          const next = deserialize(Buffer.from(m.config)) as CompiledConfig;
          adoptModules(m.modules);
          try {
            await prepareModules(next.wasmPlugins);
          } catch (err) {
            serving.updates.reject(m.origin, [], (err as Error).message);
            return;
          }
          serving.updates.apply(m.origin, () => next);
        });
        break;
      case "sync-listeners":
        applying = applying.then(() => serving.syncListeners(serving.holder.current.config));
        break;
      case "identity":
        identity = m.identity;
        break;
      case "metrics":
        void serving.telemetry.metrics.registry.getMetricsAsJSON().then((metrics) => report({ type: "metrics", id: m.id, metrics }));
        break;
      case "stop-accepting":
        for (const l of managed) if (l.runtime.direction === m.direction) l.listener.stopAccepting();
        break;
      case "log-level":
        logger.setLevel(m.level);
        break;
      case "close":
        void applying.then(() => serving.close()).finally(() => {
          report({ type: "closed" });
          parentPort!.close();
        });
        break;
    }
  });
  await serving.bind();
  report({ type: "ready" });
}

main(workerData as ServingWorkerData).catch((err: Error) => {
  report({ type: "failed", error: err.stack ?? err.message });
  parentPort!.close();
});
