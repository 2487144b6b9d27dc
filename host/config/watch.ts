// Hot reload: watch the config path; on change parse → validate → compile (on
// the config worker thread) → swap. A config with errors never replaces the one
// serving; each error is logged.

import { statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { deserialize } from "node:v8";
import { Worker } from "node:worker_threads";
import { workerScript } from "../worker-script.js";
import type { CompiledConfig } from "./compile.js";
import { configDigest } from "./digest.js";
import { formatDiagnostic, type ConfigDiagnostic } from "./diagnostics.js";
import type { LoadResult, ResolvedNames } from "./load.js";
import type { LoadReply, LoadRequest } from "./load-worker.js";

export interface ReloadEvents {
  /** `origin` says why it was loaded: "file reload", or "DNS addresses changed" (recompile()). */
  applied(config: CompiledConfig, diagnostics: ConfigDiagnostic[], origin: string): void;
  rejected(diagnostics: ConfigDiagnostic[], origin: string): void;
}

const DEBOUNCE_MS = 100;
/**
 * The config worker ends after this long without a load: its isolate, the yaml module and what parsing left
 * behind are about 15 MB a proxy does not need between reloads. The next reload starts a new one.
 */
const WORKER_IDLE_MS = 30_000;

/** Runs loads on the config worker thread, one at a time, in order. */
class WorkerLoader {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly waiting = new Map<number, (reply: LoadReply) => void>();
  private idle: NodeJS.Timeout | undefined;

  load(path: string, unless: string, resolved: ResolvedNames): Promise<LoadReply> {
    clearTimeout(this.idle);
    if (!this.worker) {
      const worker = (this.worker = new Worker(workerScript(import.meta.url, "load-worker.js")));
      worker.unref();
      worker.on("message", (reply: LoadReply) => {
        this.waiting.get(reply.id)?.(reply);
        this.waiting.delete(reply.id);
        if (this.waiting.size === 0) this.idle = setTimeout(() => this.stop(), WORKER_IDLE_MS).unref();
      });
      // Only the current worker's end fails the loads: one stopped while idle exits a moment later, when a
      // reload may already be waiting on its successor.
      worker.on("error", (err) => this.worker === worker && this.failAll(err));
      worker.on("exit", () => this.worker === worker && this.failAll(new Error("the config worker exited")));
    }
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.worker!.postMessage({ id, path, unless, resolved: [...resolved].map(([name, addresses]) => [name, [...addresses]]) } satisfies LoadRequest);
    });
  }

  private failAll(err: Error): void {
    this.worker = undefined; // the next load starts a new one
    for (const [id, resolve] of this.waiting) resolve({ id, digest: "", result: undefined, failure: err.stack ?? err.message });
    this.waiting.clear();
  }

  stop(): void {
    clearTimeout(this.idle);
    void this.worker?.terminate();
    this.worker = undefined;
  }
}

/**
 * Loads `path` once on a worker thread that ends with the load, so that what parsing YAML brings (the yaml
 * module, the parse's garbage) never stays on the serving thread: the proxy's first load. DNS-resolved names
 * get the addresses in `resolved`. The config comes without its model (the worker keeps that).
 */
export async function loadOnWorker(path: string, resolved: ResolvedNames = new Map()): Promise<LoadResult> {
  const loader = new WorkerLoader();
  try {
    const reply = await loader.load(path, "", resolved);
    if (reply.failure !== undefined) throw new Error(`internal error while loading ${path}: ${reply.failure}`);
    return deserialize(new Uint8Array(reply.result!)) as LoadResult;
  } finally {
    loader.stop();
  }
}


export class ConfigWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastDigest: string;

  constructor(
    private readonly path: string,
    private readonly events: ReloadEvents,
    /** The DNS answers each load compiles with. */
    private readonly resolved: () => ResolvedNames = () => new Map(),
  ) {
    this.lastDigest = configDigest(path);
  }

  /** Compiles the config again with the current DNS answers, on the worker, whether or not the files changed. */
  recompile(): Promise<boolean> {
    this.recompiling = true;
    return this.reload();
  }

  private recompiling = false;

  start(): void {
    this.watcher = watchConfigPath(this.path, () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reload(), DEBOUNCE_MS);
    });
  }

  /**
   * Reloads now if the files changed; resolves to whether a new config was applied.
   * Reading, parsing and compiling happen on the worker thread; reloads run one at a
   * time, and a change during one is picked up by the next.
   */
  async reload(): Promise<boolean> {
    if (this.running) {
      this.again = true;
      return false;
    }
    this.running = true;
    try {
      let applied = false;
      do {
        this.again = false;
        applied = (await this.reloadOnce()) || applied;
      } while (this.again);
      return applied;
    } finally {
      this.running = false;
    }
  }

  private running = false;
  private again = false;
  private readonly loader = new WorkerLoader();

  private async reloadOnce(): Promise<boolean> {
    const origin = this.recompiling ? "DNS addresses changed" : "file reload";
    const unless = this.recompiling ? "" : this.lastDigest;
    this.recompiling = false;
    const reply = await this.loader.load(this.path, unless, this.resolved());
    if (reply.failure !== undefined) {
      // A bug in loading or compiling must not take down a proxy that is serving.
      this.events.rejected([{ file: this.path, line: 1, column: 1, path: "", message: `internal error while loading: ${reply.failure}`, severity: "error" }], origin);
      return false;
    }
    if (reply.result === undefined || this.stopped) return false;
    this.lastDigest = reply.digest;
    const result = deserialize(new Uint8Array(reply.result)) as LoadResult;
    if (!result.config) {
      this.events.rejected(result.diagnostics, origin);
      return false;
    }
    this.events.applied(result.config, result.diagnostics, origin);
    return true;
  }

  private stopped = false;

  stop(): void {
    this.stopped = true;
    this.loader.stop();
    clearTimeout(this.timer);
    this.watcher?.close();
  }
}

/**
 * Calls `changed` when a file of the config at `path` (a file or a directory,
 * recursively) may have changed. The directory is watched, not the file:
 * editors and Kubernetes ConfigMaps replace files by rename.
 */
export function watchConfigPath(path: string, changed: () => void): FSWatcher {
  const isDir = statSync(path).isDirectory();
  const target = isDir ? path : dirname(path);
  const name = basename(path);
  return watch(target, { recursive: isDir, persistent: false }, (_event, file) => {
    if (!isDir && file !== null && file !== name && !file.startsWith("..")) return;
    changed();
  });
}

export function logDiagnostics(diagnostics: ConfigDiagnostic[], log: (line: string) => void): void {
  for (const d of diagnostics) log(formatDiagnostic(d));
}
