// The main thread's side of `concurrency: N`: N − 1 serving workers
// (serving-worker.ts) beside the main thread's own listeners. Each config the
// main thread applies goes to every worker; the workload certificate follows
// each renewal; a scrape sums every thread's metrics; and the drain lifecycle
// sees each worker as two listeners (outbound, inbound) whose requests in flight
// and draining flag are shared memory.

import { Worker } from "node:worker_threads";
import { serialize } from "node:v8";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from "prom-client";
import type { CompiledConfig } from "../config/compile.js";
import type { Logger } from "../log.js";
import type { Listener } from "../listeners/listener.js";
import { RUNTIME_BLOCK_BYTES, SharedListenerRuntime } from "../listeners/listener-runtime.js";
import { workerScript } from "../worker-script.js";
import type { ManagedListener } from "./lifecycle.js";
import type { ConfigFollowers } from "./config-updates.js";
import { compiledModules } from "../proxy-wasm/plugin.js";
import type { ServingWorkerData, ServingWorkerMessage, WorkerReport } from "./serving-worker.js";

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/** How long a scrape waits for a worker's metrics before answering without them. */
const METRICS_TIMEOUT_MS = 2000;
/** How long close() waits for a worker to close its listeners and pools before terminating it. */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * A config as it crosses to a worker: v8-serialized (Maps, Sets and Buffers survive), without the model a worker
 * never reads, and with the Proxy-Wasm modules the main thread already instrumented and compiled.
 */
export interface ConfigForWorker {
  config: ArrayBuffer;
  modules: [string, WebAssembly.Module][];
}

export function encodeForWorker(config: CompiledConfig): ConfigForWorker {
  const bytes = serialize({ ...config, model: undefined });
  return { config: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer, modules: compiledModules(config.wasmPlugins) };
}

class ServingWorker {
  readonly worker: Worker;
  readonly managed: ManagedListener[];
  private nextId = 0;
  private readonly waiting = new Map<number, (metrics: Metrics | undefined) => void>();
  private closed: Promise<void> | undefined;
  readonly exited: Promise<void>;

  constructor(data: ServingWorkerData, logger: Logger, ready: (error: string | undefined) => void) {
    this.worker = new Worker(workerScript(import.meta.url, "serving-worker.js"), { workerData: data });
    this.exited = new Promise((resolve) => this.worker.once("exit", () => resolve()));
    const remote = (direction: "outbound" | "inbound"): Listener => ({
      engine: "h1",
      address: "",
      port: 0,
      stopAccepting: () => this.send({ type: "stop-accepting", direction }),
      close: () => this.close(),
    });
    this.managed = [
      { runtime: new SharedListenerRuntime(data.block, "outbound"), listener: remote("outbound") },
      { runtime: new SharedListenerRuntime(data.block, "inbound"), listener: remote("inbound") },
    ];
    this.worker.on("message", (r: WorkerReport) => {
      if (r.type === "ready") ready(undefined);
      else if (r.type === "failed") ready(r.error);
      else if (r.type === "log") logger.log(r.level, r.line);
      else if (r.type === "metrics") this.answer(r.id, r.metrics as Metrics);
    });
    this.worker.on("error", (err) => {
      logger.error(`worker ${data.index}: ${err.stack ?? err.message}`);
      ready(err.message);
    });
    this.worker.once("exit", (code) => {
      for (const id of [...this.waiting.keys()]) this.answer(id, undefined);
      if (this.closed) return;
      // Not asked to close: its listeners and the requests on them went with it. The other threads keep serving,
      // and the drain no longer waits for requests that cannot finish.
      logger.error(`worker ${data.index} exited (code ${code}): its listeners are closed; the other serving threads go on`);
      for (const m of this.managed) m.runtime.inFlight = 0;
    });
  }

  send(m: ServingWorkerMessage, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  metrics(): Promise<Metrics | undefined> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(id, undefined), METRICS_TIMEOUT_MS);
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.send({ type: "metrics", id });
    });
  }

  private answer(id: number, metrics: Metrics | undefined): void {
    this.waiting.get(id)?.(metrics);
    this.waiting.delete(id);
  }

  /** Closes the worker's listeners and pools, then ends it (terminated if it takes too long). */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.send({ type: "close" });
      const timer = setTimeout(() => void this.worker.terminate(), CLOSE_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.closed;
  }
}

export interface ServingWorkersOptions {
  /** Workers to start (concurrency − 1). */
  count: number;
  /** The config the main thread serves (encoded before its snapshot took the route image), and the ports its listeners bound. */
  config: ConfigForWorker;
  ports: ServingWorkerData["ports"];
  selfPorts: ServingWorkerData["selfPorts"];
  nodeId: string;
  inMesh: boolean;
  identity: ServingWorkerData["identity"];
  /** The circuit-breaker counts the main thread serves with, shared by every worker. */
  breakers: SharedArrayBuffer;
  logger: Logger;
}

/** The configs the main thread applies follow to every worker (ConfigUpdates' followers). */
export class ServingWorkers implements ConfigFollowers<ConfigForWorker> {
  private constructor(private readonly workers: ServingWorker[]) {}

  /** Starts the workers and waits until each has bound every listener; a worker that cannot is an error. */
  static async start(o: ServingWorkersOptions): Promise<ServingWorkers> {
    const { config, modules } = o.config;
    const workers: ServingWorker[] = [];
    const started: Promise<void>[] = [];
    for (let index = 1; index <= o.count; index++) {
      const data: ServingWorkerData = {
        index,
        config,
        modules,
        ports: o.ports,
        selfPorts: o.selfPorts,
        nodeId: o.nodeId,
        inMesh: o.inMesh,
        identity: o.identity,
        block: new SharedArrayBuffer(RUNTIME_BLOCK_BYTES),
        breakers: o.breakers,
        logLevel: o.logger.level,
      };
      started.push(new Promise((resolve, reject) => {
        workers.push(new ServingWorker(data, o.logger, (error) => (error === undefined ? resolve() : reject(new Error(`serving worker ${index} failed to start: ${error}`)))));
      }));
    }
    const set = new ServingWorkers(workers);
    try {
      await Promise.all(started);
    } catch (err) {
      await set.close();
      throw err;
    }
    return set;
  }

  /** Every worker's two drain entries (outbound, inbound), for the lifecycle. */
  get managed(): ManagedListener[] {
    return this.workers.flatMap((w) => w.managed);
  }

  encode(config: CompiledConfig): ConfigForWorker {
    return encodeForWorker(config);
  }

  /** A config the main thread is about to serve: each worker applies it in turn. */
  apply(encoded: ConfigForWorker, origin: string): void {
    for (const w of this.workers) w.send({ type: "config", ...encoded, origin });
  }

  /** Listeners follow the last config (xDS: LDS adds and removes TCP and port-routed HTTP listeners). */
  syncListeners(): void {
    for (const w of this.workers) w.send({ type: "sync-listeners" });
  }

  identity(identity: ServingWorkerData["identity"]): void {
    for (const w of this.workers) w.send({ type: "identity", identity });
  }

  logLevel(level: Logger["level"]): void {
    for (const w of this.workers) w.send({ type: "log-level", level });
  }

  /** One registry with every thread's series summed (gauges as each declares its aggregator); a worker that does not answer is left out. */
  async aggregate(own: Registry): Promise<Registry> {
    const all = await Promise.all([own.getMetricsAsJSON() as Promise<Metrics>, ...this.workers.map((w) => w.metrics())]);
    return AggregatorRegistry.aggregate(all.filter((m): m is Metrics => m !== undefined));
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
