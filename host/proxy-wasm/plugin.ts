// A WasmPlugin as the proxy runs it: its compiled module, the VM serving it
// (restarted after a failure), its configuration and what it gets of the proxy
// (logging, HTTP calls to clusters, metrics, shared state, node properties).
// PluginRegistry keeps plugins across config versions, as the cluster manager
// keeps clusters: a plugin whose module and configuration did not change keeps
// its VM (its timers, its in-memory state) through a reload.

import { pluginIdentity, type WasmPluginConfig } from "../config/wasm-plugin.js";
import { LOG_LEVELS, type Logger, type LogLevel } from "../log.js";
import { Status, type MetricType } from "./abi.js";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { packageFile, seaRoot } from "../package-root.js";
import { nodeProperty } from "./properties.js";
import { SharedState } from "./shared-state.js";
import { PluginVm, type HttpCallResult, type PluginEnvironment } from "./vm.js";
import type { PluginMetrics } from "./plugin-metrics.js";

/** How long one callback may run, and how much memory a VM may have. Envoy has 1 GiB; a sidecar's filters need far less. */
export const TIME_BUDGET_MS = 100;
export const MEMORY_LIMIT_BYTES = 128 << 20;
/** After a VM fails to start, requests wait this long before another start is tried (they get the fail strategy meanwhile). */
const RESTART_BACKOFF_MS = 1000;

/** What every plugin gets of the proxy. */
export interface PluginServices {
  readonly logger: Logger;
  readonly shared: SharedState;
  readonly metrics: PluginMetrics;
  readonly node: { id: string; metadata: Record<string, string | Record<string, string>> };
  /** An HTTP call to a cluster of the serving config; false when the cluster is unknown. */
  httpCall(cluster: string, headers: string[], body: Buffer, timeoutMs: number, done: (result: HttpCallResult | undefined) => void): boolean;
  /** Counts a VM failure (a trap, a budget, a start that failed). */
  failed(plugin: string): void;
}

/**
 * Instrumented, compiled modules by sha256: compiled once per process, shared by every plugin that loads the same
 * module (serving workers adopt the main thread's: a WebAssembly.Module crosses threads without compiling again).
 */
const modules = new Map<string, WebAssembly.Module>();

/** The compiled modules `plugins` use, for the other serving threads (adoptModules there). */
export function compiledModules(plugins: readonly WasmPluginConfig[]): [string, WebAssembly.Module][] {
  return [...new Set(plugins.map((p) => p.sha256))].flatMap((sha) => {
    const m = modules.get(sha);
    return m ? [[sha, m] as [string, WebAssembly.Module]] : [];
  });
}

/** Modules another thread instrumented and compiled: prepareModules finds them ready here. */
export function adoptModules(compiled: readonly [string, WebAssembly.Module][]): void {
  for (const [sha, m] of compiled) if (!modules.has(sha)) modules.set(sha, m);
}

/**
 * Instruments (in a child process) and compiles the modules of `plugins` that
 * are not compiled yet, before the config that names them is swapped in.
 * Throws with the plugin's file:line when a module cannot run.
 */
export async function prepareModules(plugins: readonly WasmPluginConfig[]): Promise<void> {
  const missing = [...new Map(plugins.filter((p) => !modules.has(p.sha256)).map((p) => [p.sha256, p])).values()];
  await Promise.all(
    missing.map(async (p) => {
      try {
        modules.set(p.sha256, new WebAssembly.Module((await instrumentInChild(p.code, MEMORY_LIMIT_BYTES)) as Uint8Array<ArrayBuffer>));
      } catch (err) {
        throw new Error(`${p.source.file}:${p.source.line}: WasmPlugin ${p.name}: the module cannot be loaded: ${(err as Error).message}`);
      }
    }),
  );
}

/**
 * instrument() in a process of its own (`instio instrument-module`): binaryen is 13 MB of JavaScript
 * with a heap of its own, and memory a process frees is not given back to the system; a child's is,
 * when it exits. Its work is off the serving thread too.
 */
function instrumentInChild(bytes: Uint8Array, memoryLimitBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const cli = fileURLToPath(packageFile("dist/host/cli.js"));
    const child = spawn(process.execPath, [...(seaRoot() ? [] : [cli]), "instrument-module", String(memoryLimitBytes)], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(new Uint8Array(Buffer.concat(out))) : reject(new Error(err.trim() || `instrument-module exited with ${code}`))));
    child.stdin.end(bytes);
  });
}

export class WasmPlugin implements PluginEnvironment {
  readonly name: string;
  readonly rootId: string;
  readonly vmId = ""; // Istio gives each plugin a VM of its own and no vm_id
  readonly vmConfiguration = Buffer.alloc(0);
  readonly pluginConfiguration: Buffer;
  readonly env: readonly [string, string][];
  readonly timeBudgetMs = TIME_BUDGET_MS;
  readonly memoryLimitBytes = MEMORY_LIMIT_BYTES;
  private vm: PluginVm | undefined;
  private retryAt = 0;
  /** Which callbacks the module exports, read once (they do not change across VM restarts). */
  readonly wants: { requestBody: boolean; responseHeaders: boolean; responseBody: boolean; responseTrailers: boolean };

  constructor(
    readonly config: WasmPluginConfig,
    private readonly module: WebAssembly.Module,
    private readonly services: PluginServices,
  ) {
    this.name = config.name;
    this.rootId = config.rootId;
    this.pluginConfiguration = Buffer.from(config.configuration);
    this.env = config.env;
    const exported = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
    this.wants = {
      requestBody: exported.has("proxy_on_request_body"),
      responseHeaders: exported.has("proxy_on_response_headers"),
      responseBody: exported.has("proxy_on_response_body"),
      responseTrailers: exported.has("proxy_on_response_trailers"),
    };
  }

  get shared(): SharedState {
    return this.services.shared;
  }

  /** Where the plugin is configured, for log lines. */
  get where(): string {
    return `${this.config.source.file}:${this.config.source.line}`;
  }

  /** The serving VM, started (or restarted after a failure) on demand; undefined while it cannot start. */
  acquire(): PluginVm | undefined {
    if (this.vm && this.vm.failure === undefined) return this.vm;
    if (this.vm) this.retire(this.vm);
    if (performance.now() < this.retryAt) return undefined;
    let vm: PluginVm | undefined;
    try {
      vm = new PluginVm(this.module, this);
      if (!vm.start()) throw new Error(vm.failure);
    } catch (err) {
      vm?.dispose();
      this.retryAt = performance.now() + RESTART_BACKOFF_MS;
      this.services.failed(this.name);
      this.services.logger.error(`wasm: plugin ${this.name} (${this.where}) failed to start: ${(err as Error).message}`);
      return undefined;
    }
    this.vm = vm;
    return vm;
  }

  /** A VM that failed: logged, counted and dropped; the next request starts a fresh one. */
  private retire(vm: PluginVm): void {
    this.services.failed(this.name);
    this.services.logger.error(`wasm: plugin ${this.name} (${this.where}) failed: ${vm.failure}; a new VM will serve the next request`);
    vm.dispose();
    this.vm = undefined;
  }

  /** The plugin left the config: its VM serves the requests in flight, then goes. */
  dispose(): void {
    this.vm?.retireWhenIdle();
    this.vm = undefined;
  }

  // ── PluginEnvironment ──

  log(level: number, message: string): void {
    this.services.logger.log(LOG_LEVELS[Math.min(level, 5)] as Exclude<LogLevel, "off">, `wasm log ${this.name} ${this.rootId}: ${message}`);
  }

  property(path: readonly string[]): Uint8Array | undefined {
    switch (path[0]) {
      case "plugin_name":
        return Buffer.from(this.name);
      case "plugin_root_id":
        return Buffer.from(this.rootId);
      case "plugin_vm_id":
        return Buffer.from(this.vmId);
    }
    return nodeProperty(this.services.node, path);
  }

  httpCall(cluster: string, headers: string[], body: Buffer, timeoutMs: number, done: (result: HttpCallResult | undefined) => void): boolean {
    return this.services.httpCall(cluster, headers, body, timeoutMs, done);
  }

  defineMetric(type: MetricType, name: string): number {
    return this.services.metrics.define(type, name);
  }
  metricAdd(id: number, delta: number): Status {
    return this.services.metrics.add(id, delta);
  }
  metricRecord(id: number, value: number): Status {
    return this.services.metrics.record(id, value);
  }
  metricValue(id: number): number | undefined {
    return this.services.metrics.value(id);
  }
}

/** Plugins by identity (name, module and configuration): one WasmPlugin each, kept while configs name it. */
export class PluginRegistry {
  private readonly plugins = new Map<string, WasmPlugin>();

  constructor(private readonly services: PluginServices) {}

  /** The plugins of a config version, reusing the running ones; plugins no config names any more are disposed. */
  bind(configs: readonly WasmPluginConfig[]): WasmPlugin[] {
    const next = new Map<string, WasmPlugin>();
    const bound = configs.map((c) => {
      const key = pluginIdentity(c);
      let plugin = this.plugins.get(key) ?? next.get(key);
      if (!plugin) {
        const module = modules.get(c.sha256);
        if (!module) throw new Error(`internal: the module of WasmPlugin ${c.name} was not prepared`);
        plugin = new WasmPlugin(c, module, this.services);
      }
      next.set(key, plugin);
      return plugin;
    });
    for (const [key, plugin] of this.plugins) if (!next.has(key)) plugin.dispose();
    this.plugins.clear();
    for (const [key, plugin] of next) this.plugins.set(key, plugin);
    return bound;
  }

  dispose(): void {
    for (const p of this.plugins.values()) p.dispose();
    this.plugins.clear();
  }
}
