// One Proxy-Wasm VM: an instance of a plugin's module, the host functions it
// imports (env.proxy_* and WASI, under both wasi_snapshot_preview1 and
// wasi_unstable, as Envoy's cpp-host registers them) and the callbacks it
// exports. Contexts follow cpp-host (../shared/reference/proxy-wasm-abi.md
// §1.7): the root context is created, started and configured once; each HTTP
// stream gets a context under it; host calls act on the "effective" context.
//
// Containment: every callback runs with a time budget (instrument.ts's fuel
// calls back here) and the module's memory is capped. A trap, a proc_exit, an
// exceeded budget or a host-call misuse marks the VM failed; the plugin
// (plugin.ts) applies its fail strategy and starts a fresh VM.

import { randomFillSync } from "node:crypto";
import { ABI_VERSIONS, BufferType, decodePairs, encodePairs, pairsSize, Errno, MapType, MetricType, Status, StreamType, type AbiVersion } from "./abi.js";
import { FUEL_GLOBAL, REFUEL_MODULE, REFUEL_NAME } from "./instrument.js";
import type { SharedState, QueueOwner } from "./shared-state.js";
import { removeHeader } from "../http/headers.js";

/** What an HTTP context reads and writes of its request and response (http-stream.ts). */
export interface StreamHost {
  /** The live flat [name, value, ...] map (pseudo-headers first); undefined: not available in this phase. */
  headerMap(type: MapType): string[] | undefined;
  /** The map was changed (entries edited in place or replaced through setHeaderMap). */
  headersEdited(type: MapType): void;
  setHeaderMap(type: MapType, flat: string[]): void;
  buffer(type: BufferType): Buffer | undefined;
  setBuffer(type: BufferType, data: Buffer): void;
  bufferEnded(type: BufferType): boolean;
  property(path: readonly string[]): Uint8Array | undefined;
  setProperty(path: string, value: Buffer): void;
  sendLocalResponse(status: number, details: string, body: Buffer, headers: string[], grpcStatus: number): void;
  continueStream(type: StreamType): Status;
  closeStream(type: StreamType): Status;
  /** The VM failed (this stream's callback, or another's): a stream waiting for a continue will not get one. */
  vmFailed(): void;
}

export interface HttpCallResult {
  headers: string[];
  body: Buffer;
  trailers: string[];
}

/** What a VM gets from its plugin: configuration, identity, and the proxy's services. */
export interface PluginEnvironment {
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly vmConfiguration: Buffer;
  readonly pluginConfiguration: Buffer;
  readonly env: readonly [string, string][];
  readonly shared: SharedState;
  /** Milliseconds a callback may run. */
  readonly timeBudgetMs: number;
  /** Bytes of linear memory a VM may have (a module that imports its memory gets one of this maximum). */
  readonly memoryLimitBytes: number;
  log(level: number, message: string): void;
  /** Properties of the plugin and the node (plugin_name, node.metadata, …); undefined: not found. */
  property(path: readonly string[]): Uint8Array | undefined;
  /** Starts an HTTP call to a cluster; `done` gets the response, or undefined on failure or timeout. false: unknown cluster. */
  httpCall(cluster: string, headers: string[], body: Buffer, timeoutMs: number, done: (result: HttpCallResult | undefined) => void): boolean;
  defineMetric(type: MetricType, name: string): number;
  metricAdd(id: number, delta: number): Status;
  metricRecord(id: number, value: number): Status;
  metricValue(id: number): number | undefined;
}

/** Raised inside host calls to unwind the module: the VM is failed from then on. */
export class VmFailure extends Error {}

/** Fuel between two time checks: about a millisecond of tight loop. */
const FUEL_QUANTUM = 1_000_000;
/** The root context's id; stream contexts count up from 2 and are never reused. */
export const ROOT_CONTEXT = 1;

type Fn = (...args: number[]) => number;
type HostFns = Record<string, (...args: never[]) => number | void | bigint>;

export class PluginVm implements QueueOwner {
  readonly abi: AbiVersion;
  private readonly instance: WebAssembly.Instance;
  private readonly exports: Record<string, Fn>;
  private memory!: WebAssembly.Memory;
  private bytes = new Uint8Array(0);
  private allocate!: Fn;
  private fuel: WebAssembly.Global | undefined;
  private deadline = 0;
  /** Why the VM failed; undefined while it is healthy. */
  failure: string | undefined;
  private nextContextId = 2;
  private readonly streams = new Map<number, StreamHost>();
  private effective = ROOT_CONTEXT;
  private tickTimer: NodeJS.Timeout | undefined;
  private readonly calls = new Map<number, number>(); // http call token → context that made it
  private nextToken = 1;
  private callResponse: HttpCallResult | undefined;
  private depth = 0;

  constructor(
    module: WebAssembly.Module,
    private readonly env: PluginEnvironment,
  ) {
    const marker = WebAssembly.Module.exports(module).find((e) => e.name.startsWith("proxy_abi_version_"));
    const version = marker?.name.slice("proxy_abi_version_".length);
    if (!ABI_VERSIONS.includes(version as AbiVersion)) throw new Error("Missing or unknown Proxy-Wasm ABI version (the module exports no proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)");
    this.abi = version as AbiVersion;
    const imports = this.linkImports(module);
    this.instance = new WebAssembly.Instance(module, imports);
    this.exports = this.instance.exports as unknown as Record<string, Fn>;
    const mem = this.instance.exports.memory;
    if (mem instanceof WebAssembly.Memory) this.memory = mem;
    else if (!this.memory) throw new Error("the module exports no memory");
    const alloc = this.exports.malloc ?? this.exports.proxy_on_memory_allocate;
    if (typeof alloc !== "function") throw new Error("Wasm module is missing malloc function (exports neither malloc nor proxy_on_memory_allocate)");
    this.allocate = alloc;
    this.fuel = this.instance.exports[FUEL_GLOBAL] as WebAssembly.Global | undefined;
  }

  /** Starts the VM and its root context: _initialize (or _start), then context create, vm start and configure. false: failed (see failure). */
  start(): boolean {
    const init = this.exports._initialize ?? this.exports._start;
    if (init && !this.run(() => init())) return false;
    if (this.exports.main && this.exports._initialize && !this.run(() => this.exports.main!(0, 0))) return false;
    this.callback("proxy_on_context_create", ROOT_CONTEXT, 0);
    if (this.failure) return false;
    if (this.exports.proxy_on_vm_start && this.callback("proxy_on_vm_start", ROOT_CONTEXT, this.env.vmConfiguration.length) === 0) {
      this.failure ??= "proxy_on_vm_start returned false";
      return false;
    }
    if (this.exports.proxy_on_configure && this.callback("proxy_on_configure", ROOT_CONTEXT, this.env.pluginConfiguration.length) === 0) {
      this.failure ??= "proxy_on_configure returned false (the plugin rejected its configuration)";
      return false;
    }
    return this.failure === undefined;
  }

  has(callback: string): boolean {
    return typeof this.exports[callback] === "function";
  }

  /** A new HTTP context for `stream`; its id for the callbacks. */
  createStream(stream: StreamHost): number {
    const id = this.nextContextId++;
    this.streams.set(id, stream);
    this.callback("proxy_on_context_create", id, ROOT_CONTEXT);
    return id;
  }

  /** Ends a stream's context: on_done, on_log (when done), on_delete. */
  finishStream(id: number): void {
    if (!this.streams.has(id)) return;
    if (!this.failure && this.callback("proxy_on_done", id) !== 0 && !this.failure) this.callback("proxy_on_log", id);
    if (!this.failure) this.callback("proxy_on_delete", id);
    this.streams.delete(id);
    if (this.retiring && this.streams.size === 0) this.dispose();
  }

  private retiring = false;

  /**
   * The plugin left the config: no new streams come, its timer stops, and the
   * streams in flight finish on this VM (as Envoy keeps a filter config for the
   * streams that started with it); then it is disposed.
   */
  retireWhenIdle(): void {
    this.retiring = true;
    clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    if (this.streams.size === 0) this.dispose();
  }

  /**
   * Calls an exported callback (0 when the module does not export it) with the
   * effective context set to `context`. A failure inside leaves `failure` set
   * and returns 0.
   */
  callback(name: string, context: number, a = 0, b = 0, c = 0, d = 0): number {
    const fn = this.exports[name];
    if (fn === undefined || this.failure !== undefined) return 0;
    const saved = this.effective;
    this.effective = context;
    if (this.depth++ === 0) this.arm();
    let result = 0;
    try {
      // Arguments past a callback's own are ignored by Wasm: one call shape, no spread per call.
      result = fn(context, a, b, c, d) >>> 0;
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err));
    } finally {
      this.depth--;
      this.effective = saved;
    }
    return result;
  }

  private run(body: () => void): boolean {
    if (this.depth++ === 0) this.arm();
    try {
      body();
      return true;
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err));
      return false;
    } finally {
      this.depth--;
    }
  }

  /**
   * A top-level call starts with a full tank. The clock is read only when the
   * fuel first runs out (refuel), so a callback that returns within a quantum
   * never reads it; its budget then counts from that first refuel.
   */
  private arm(): void {
    this.deadline = 0;
    if (this.fuel) this.fuel.value = FUEL_QUANTUM;
  }

  fail(reason: string): void {
    if (this.failure !== undefined) return;
    this.failure = reason;
    clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    for (const stream of this.streams.values()) stream.vmFailed();
  }

  /** Stops timers; the VM is not called again. */
  dispose(): void {
    this.fail("disposed");
    this.streams.clear();
  }

  queueReady(queueId: number): void {
    this.callback("proxy_on_queue_ready", ROOT_CONTEXT, queueId);
  }

  private onTick(): void {
    this.callback("proxy_on_tick", ROOT_CONTEXT);
  }

  private refuel(): void {
    // Still instantiating: the start function used up the fuel the module starts with.
    if (this.fuel === undefined) throw new VmFailure("the module's start function ran past its budget");
    const now = performance.now();
    if (this.deadline === 0) this.deadline = now + this.env.timeBudgetMs;
    else if (now > this.deadline) throw new VmFailure(`a callback ran past its time budget (${this.env.timeBudgetMs} ms)`);
    this.fuel.value = FUEL_QUANTUM;
  }

  // ── memory ───────────────────────────────────────────────────────────────

  private view(): Uint8Array {
    if (this.bytes.buffer !== this.memory.buffer) this.bytes = new Uint8Array(this.memory.buffer);
    return this.bytes;
  }

  private read(ptr: number, len: number): Buffer {
    const mem = this.view();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > mem.length) throw new VmFailure(`host call read outside the module's memory (${ptr}+${len})`);
    return Buffer.from(mem.buffer, mem.byteOffset + ptr, len);
  }

  private string(ptr: number, len: number): string {
    return this.read(ptr, len).toString("utf8");
  }

  private writeU32(ptr: number, value: number): void {
    const mem = this.view();
    if ((ptr >>> 0) + 4 > mem.length) throw new VmFailure("host call wrote outside the module's memory");
    new DataView(mem.buffer).setUint32(ptr >>> 0, value >>> 0, true);
  }

  private writeU64(ptr: number, value: bigint): void {
    const mem = this.view();
    if ((ptr >>> 0) + 8 > mem.length) throw new VmFailure("host call wrote outside the module's memory");
    new DataView(mem.buffer).setBigUint64(ptr >>> 0, BigInt.asUintN(64, value), true);
  }

  /** Copies `data` into a block the module allocates, and writes its address and size to the out-params (ownership passes to the module). */
  private give(data: Uint8Array, ptrOut: number, sizeOut: number): Status {
    if (data.length === 0) {
      this.writeU32(ptrOut, 0);
      this.writeU32(sizeOut, 0);
      return Status.OK;
    }
    const ptr = this.allocate(data.length) >>> 0;
    if (ptr === 0) throw new VmFailure(`the module's allocator failed for ${data.length} bytes`);
    const mem = this.view(); // the allocation may have grown the memory
    if (ptr + data.length > mem.length) throw new VmFailure("the module's allocator returned a block outside its memory");
    mem.set(data, ptr);
    this.writeU32(ptrOut, ptr);
    this.writeU32(sizeOut, data.length);
    return Status.OK;
  }

  private stream(): StreamHost | undefined {
    return this.streams.get(this.effective);
  }

  // ── imports ──────────────────────────────────────────────────────────────

  private linkImports(module: WebAssembly.Module): WebAssembly.Imports {
    const tables: Record<string, HostFns> = { env: this.proxyFunctions(), wasi_snapshot_preview1: this.wasiFunctions(), wasi_unstable: this.wasiFunctions(), [REFUEL_MODULE]: { [REFUEL_NAME]: () => this.refuel() } };
    const imports: WebAssembly.Imports = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.kind === "memory" && imp.module === "env" && imp.name === "memory") {
        this.memory = new WebAssembly.Memory({ initial: 1, maximum: Math.floor(this.env.memoryLimitBytes / 65536) });
        (imports.env ??= {}).memory = this.memory;
        continue;
      }
      const fn = imp.kind === "function" ? tables[imp.module]?.[imp.name] : undefined;
      if (!fn) throw new Error(`Failed to load Wasm module due to a missing import: ${imp.module}.${imp.name}`);
      (imports[imp.module] ??= {})[imp.name] = fn as unknown as WebAssembly.ImportValue;
    }
    return imports;
  }

  private headers(type: number): string[] | undefined {
    if (type === MapType.HTTP_CALL_RESPONSE_HEADERS) return this.callResponse?.headers;
    if (type === MapType.HTTP_CALL_RESPONSE_TRAILERS) return this.callResponse?.trailers;
    return this.stream()?.headerMap(type);
  }

  private buffer(type: number): Buffer | undefined {
    if (type === BufferType.VM_CONFIGURATION) return this.env.vmConfiguration;
    if (type === BufferType.PLUGIN_CONFIGURATION) return this.env.pluginConfiguration;
    if (type === BufferType.HTTP_CALL_RESPONSE_BODY) return this.callResponse?.body;
    return this.stream()?.buffer(type);
  }

  private proxyFunctions(): HostFns {
    const edit = (type: number, change: (map: string[]) => void): number => {
      if (type > MapType.HTTP_CALL_RESPONSE_TRAILERS) return Status.BAD_ARGUMENT;
      const map = this.headers(type);
      if (!map || type >= MapType.GRPC_INITIAL_METADATA) return Status.NOT_FOUND;
      change(map);
      this.stream()!.headersEdited(type);
      return Status.OK;
    };
    const fns: HostFns = {
      proxy_log: (level: number, ptr: number, len: number) => {
        if (level > 5) return Status.BAD_ARGUMENT;
        this.env.log(level, this.string(ptr, len));
        return Status.OK;
      },
      proxy_get_log_level: (out: number) => (this.writeU32(out, 2), Status.OK),
      proxy_get_current_time_nanoseconds: (out: number) => (this.writeU64(out, BigInt(Date.now()) * 1_000_000n), Status.OK),
      proxy_set_tick_period_milliseconds: (ms: number) => {
        clearInterval(this.tickTimer);
        this.tickTimer = ms > 0 ? setInterval(() => this.onTick(), ms).unref() : undefined;
        return Status.OK;
      },
      proxy_get_buffer_bytes: (type: number, start: number, max: number, ptrOut: number, sizeOut: number) => {
        if (type > BufferType.CALL_DATA) return Status.BAD_ARGUMENT;
        const buf = this.buffer(type);
        if (!buf) return Status.NOT_FOUND;
        if (start > buf.length) return Status.BAD_ARGUMENT;
        return this.give(buf.subarray(start, Math.min(buf.length, start + (max >>> 0))), ptrOut, sizeOut);
      },
      proxy_set_buffer_bytes: (type: number, start: number, size: number, ptr: number, len: number) => {
        const s = this.stream();
        if (type > BufferType.CALL_DATA) return Status.BAD_ARGUMENT;
        const buf = s?.buffer(type);
        if (!s || !buf) return Status.NOT_FOUND;
        const value = Buffer.from(this.read(ptr, len));
        // start 0 and size 0 prepends; start at or past the end appends; otherwise [start, start+size) is replaced.
        if (start >= buf.length) s.setBuffer(type, Buffer.concat([buf, value]));
        else s.setBuffer(type, Buffer.concat([buf.subarray(0, start), value, buf.subarray(Math.min(buf.length, start + size))]));
        return Status.OK;
      },
      proxy_get_buffer_status: (type: number, sizeOut: number, flagsOut: number) => {
        if (type > BufferType.CALL_DATA) return Status.BAD_ARGUMENT;
        const buf = this.buffer(type);
        if (!buf) return Status.NOT_FOUND;
        this.writeU32(sizeOut, buf.length);
        this.writeU32(flagsOut, this.stream()?.bufferEnded(type) ? 1 : 0);
        return Status.OK;
      },
      proxy_get_header_map_size: (type: number, out: number) => {
        const map = this.headers(type);
        if (!map) return Status.NOT_FOUND;
        this.writeU32(out, pairsSize(map));
        return Status.OK;
      },
      proxy_get_header_map_pairs: (type: number, ptrOut: number, sizeOut: number) => {
        if (type > MapType.HTTP_CALL_RESPONSE_TRAILERS) return Status.BAD_ARGUMENT;
        const map = this.headers(type);
        if (!map) return Status.NOT_FOUND;
        return map.length === 0 ? this.give(new Uint8Array(0), ptrOut, sizeOut) : this.give(encodePairs(map), ptrOut, sizeOut);
      },
      proxy_set_header_map_pairs: (type: number, ptr: number, len: number) => {
        const pairs = decodePairs(this.read(ptr, len)) ?? [];
        for (let i = 0; i < pairs.length; i += 2) pairs[i] = pairs[i]!.toLowerCase();
        const s = this.stream();
        if (!s || type > MapType.HTTP_RESPONSE_TRAILERS || !s.headerMap(type)) return Status.NOT_FOUND;
        s.setHeaderMap(type, pairs);
        s.headersEdited(type);
        return Status.OK;
      },
      proxy_get_header_map_value: (type: number, kPtr: number, kLen: number, ptrOut: number, sizeOut: number) => {
        if (type > MapType.HTTP_CALL_RESPONSE_TRAILERS) return Status.BAD_ARGUMENT;
        const map = this.headers(type);
        const key = this.string(kPtr, kLen).toLowerCase();
        for (let i = 0; map && i < map.length; i += 2) if (map[i] === key) return this.give(Buffer.from(map[i + 1]!), ptrOut, sizeOut);
        return this.abi === "0_1_0" ? this.give(new Uint8Array(0), ptrOut, sizeOut) : Status.NOT_FOUND;
      },
      proxy_add_header_map_value: (type: number, kPtr: number, kLen: number, vPtr: number, vLen: number) => {
        const key = this.string(kPtr, kLen).toLowerCase();
        const value = this.string(vPtr, vLen);
        return edit(type, (map) => map.push(key, value));
      },
      proxy_replace_header_map_value: (type: number, kPtr: number, kLen: number, vPtr: number, vLen: number) => {
        const key = this.string(kPtr, kLen).toLowerCase();
        const value = this.string(vPtr, vLen);
        return edit(type, (map) => {
          removeHeader(map, key);
          map.push(key, value);
        });
      },
      proxy_remove_header_map_value: (type: number, kPtr: number, kLen: number) => {
        const key = this.string(kPtr, kLen).toLowerCase();
        return edit(type, (map) => removeHeader(map, key));
      },
      proxy_get_property: (pPtr: number, pLen: number, ptrOut: number, sizeOut: number) => {
        const path = this.string(pPtr, pLen).split("\0");
        const value = this.env.property(path) ?? this.stream()?.property(path);
        return value === undefined ? Status.NOT_FOUND : this.give(value, ptrOut, sizeOut);
      },
      proxy_set_property: (pPtr: number, pLen: number, vPtr: number, vLen: number) => {
        const s = this.stream();
        if (!s) return Status.NOT_FOUND;
        s.setProperty(this.string(pPtr, pLen).split("\0").join("."), Buffer.from(this.read(vPtr, vLen)));
        return Status.OK;
      },
      proxy_continue_stream: (type: number) => this.stream()?.continueStream(type) ?? Status.NOT_FOUND,
      proxy_close_stream: (type: number) => this.stream()?.closeStream(type) ?? Status.NOT_FOUND,
      proxy_continue_request: () => this.stream()?.continueStream(StreamType.HTTP_REQUEST) ?? Status.NOT_FOUND,
      proxy_continue_response: () => this.stream()?.continueStream(StreamType.HTTP_RESPONSE) ?? Status.NOT_FOUND,
      proxy_clear_route_cache: () => Status.OK, // header edits re-route by themselves
      proxy_get_configuration: (ptrOut: number, sizeOut: number) => this.give(this.env.pluginConfiguration, ptrOut, sizeOut),
      proxy_send_local_response: (status: number, dPtr: number, dLen: number, bPtr: number, bLen: number, hPtr: number, hLen: number, grpc: number) => {
        const s = this.stream();
        if (!s) return Status.NOT_FOUND;
        const headers = decodePairs(this.read(hPtr, hLen)) ?? [];
        for (let i = 0; i < headers.length; i += 2) headers[i] = headers[i]!.toLowerCase();
        s.sendLocalResponse(status, this.string(dPtr, dLen), Buffer.from(this.read(bPtr, bLen)), headers, grpc | 0);
        return Status.OK;
      },
      proxy_http_call: (uPtr: number, uLen: number, hPtr: number, hLen: number, bPtr: number, bLen: number, _tPtr: number, _tLen: number, timeoutMs: number, tokenOut: number) => {
        const headers = decodePairs(this.read(hPtr, hLen));
        if (!headers) return Status.BAD_ARGUMENT;
        for (let i = 0; i < headers.length; i += 2) headers[i] = headers[i]!.toLowerCase();
        const has = (name: string): boolean => headers.some((h, i) => i % 2 === 0 && h === name);
        if (!has(":method") || !has(":path") || !has(":authority")) return Status.BAD_ARGUMENT;
        const token = this.nextToken++;
        const started = this.env.httpCall(this.string(uPtr, uLen), headers, Buffer.from(this.read(bPtr, bLen)), timeoutMs >>> 0, (result) => this.onCallResponse(token, result));
        if (!started) return Status.BAD_ARGUMENT;
        this.calls.set(token, this.effective);
        this.writeU32(tokenOut, token);
        return Status.OK;
      },
      proxy_get_status: (codeOut: number, ptrOut: number, sizeOut: number) => {
        this.writeU32(codeOut, this.callResponse && this.callResponse.headers.length > 0 ? 0 : 14 /* gRPC UNAVAILABLE */);
        return this.give(new Uint8Array(0), ptrOut, sizeOut);
      },
      proxy_grpc_call: () => Status.UNIMPLEMENTED,
      proxy_grpc_stream: () => Status.UNIMPLEMENTED,
      proxy_grpc_send: () => Status.UNIMPLEMENTED,
      proxy_grpc_cancel: () => Status.UNIMPLEMENTED,
      proxy_grpc_close: () => Status.UNIMPLEMENTED,
      proxy_get_shared_data: (kPtr: number, kLen: number, ptrOut: number, sizeOut: number, casOut: number) => {
        const entry = this.env.shared.getData(this.string(kPtr, kLen));
        if (!entry) return Status.NOT_FOUND;
        this.writeU32(casOut, entry.cas);
        return this.give(entry.value, ptrOut, sizeOut);
      },
      proxy_set_shared_data: (kPtr: number, kLen: number, vPtr: number, vLen: number, cas: number) => this.env.shared.setData(this.string(kPtr, kLen), Buffer.from(this.read(vPtr, vLen)), cas >>> 0),
      proxy_register_shared_queue: (nPtr: number, nLen: number, idOut: number) => {
        this.writeU32(idOut, this.env.shared.registerQueue(this.env.vmId, this.string(nPtr, nLen), this));
        return Status.OK;
      },
      proxy_resolve_shared_queue: (vPtr: number, vLen: number, nPtr: number, nLen: number, idOut: number) => {
        const id = this.env.shared.resolveQueue(this.string(vPtr, vLen), this.string(nPtr, nLen));
        if (id === undefined) return Status.NOT_FOUND;
        this.writeU32(idOut, id);
        return Status.OK;
      },
      proxy_enqueue_shared_queue: (id: number, vPtr: number, vLen: number) => this.env.shared.enqueue(id, Buffer.from(this.read(vPtr, vLen))),
      proxy_dequeue_shared_queue: (id: number, ptrOut: number, sizeOut: number) => {
        const item = this.env.shared.dequeue(id);
        return typeof item === "number" ? item : this.give(item, ptrOut, sizeOut);
      },
      proxy_define_metric: (type: number, nPtr: number, nLen: number, idOut: number) => {
        if (type > MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
        this.writeU32(idOut, this.env.defineMetric(type, this.string(nPtr, nLen)));
        return Status.OK;
      },
      proxy_increment_metric: (id: number, delta: bigint) => this.env.metricAdd(id, Number(delta)),
      proxy_record_metric: (id: number, value: bigint) => this.env.metricRecord(id, Number(value)),
      proxy_get_metric: (id: number, out: number) => {
        const value = this.env.metricValue(id);
        if (value === undefined) return Status.NOT_FOUND;
        this.writeU64(out, BigInt(Math.trunc(value)));
        return Status.OK;
      },
      proxy_set_effective_context: (id: number) => {
        if (id !== ROOT_CONTEXT && !this.streams.has(id)) return Status.BAD_ARGUMENT;
        this.effective = id;
        return Status.OK;
      },
      proxy_done: () => Status.NOT_FOUND,
      proxy_call_foreign_function: () => Status.NOT_FOUND,
      // What C++ SDK (emscripten) builds import besides the ABI, as cpp-host provides them.
      pthread_equal: (a: number, b: number) => (a === b ? 1 : 0),
      emscripten_notify_memory_growth: () => undefined,
    };
    // The version-specific calls exist only for the ABI the module declares (cpp-host registers them so).
    const only010 = ["proxy_get_configuration", "proxy_continue_request", "proxy_continue_response", "proxy_clear_route_cache"];
    const from020 = ["proxy_continue_stream", "proxy_close_stream"];
    for (const name of this.abi === "0_1_0" ? [...from020, "proxy_get_log_level"] : only010) delete fns[name];
    if (this.abi === "0_2_0") delete fns.proxy_get_log_level;
    return fns;
  }

  private onCallResponse(token: number, result: HttpCallResult | undefined): void {
    const caller = this.calls.get(token);
    this.calls.delete(token);
    if (caller === undefined || this.failure || (caller !== ROOT_CONTEXT && !this.streams.has(caller))) return;
    this.callResponse = result ?? { headers: [], body: Buffer.alloc(0), trailers: [] };
    const r = this.callResponse;
    // Envoy delivers the response to the root context; SDKs switch to the stream with proxy_set_effective_context.
    this.callback("proxy_on_http_call_response", ROOT_CONTEXT, token, r.headers.length / 2, r.body.length, r.trailers.length / 2);
    this.callResponse = undefined;
  }

  /** WASI as cpp-host provides it: stdout and stderr are logged, clocks and randomness work, the rest is NOTSUP. */
  private wasiFunctions(): HostFns {
    const notsup = (): number => Errno.NOTSUP;
    const fns: HostFns = {
      fd_write: (fd: number, iovs: number, count: number, writtenOut: number) => {
        if (fd !== 1 && fd !== 2) return Errno.BADF;
        const mem = this.view();
        const dv = new DataView(mem.buffer);
        const parts: Buffer[] = [];
        let total = 0;
        for (let i = 0; i < count; i++) {
          const ptr = dv.getUint32(iovs + i * 8, true);
          const len = dv.getUint32(iovs + i * 8 + 4, true);
          parts.push(this.read(ptr, len));
          total += len;
        }
        this.writeU32(writtenOut, total);
        this.env.log(fd === 1 ? 2 : 4, Buffer.concat(parts).toString("utf8").replace(/\n$/, ""));
        return Errno.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, out: number) => {
        if (id === 0) this.writeU64(out, BigInt(Date.now()) * 1_000_000n);
        else if (id === 1) this.writeU64(out, process.hrtime.bigint());
        else return Errno.NOTSUP;
        return Errno.SUCCESS;
      },
      clock_res_get: (_id: number, out: number) => (this.writeU64(out, 1n), Errno.SUCCESS),
      random_get: (ptr: number, len: number) => {
        if (len > 65536) return Errno.INVAL;
        randomFillSync(this.read(ptr, len));
        return Errno.SUCCESS;
      },
      environ_sizes_get: (countOut: number, sizeOut: number) => {
        this.writeU32(countOut, this.env.env.length);
        this.writeU32(sizeOut, this.env.env.reduce((n, [k, v]) => n + Buffer.byteLength(`${k}=${v}`) + 1, 0));
        return Errno.SUCCESS;
      },
      environ_get: (ptrs: number, buf: number) => {
        let at = buf;
        this.env.env.forEach(([k, v], i) => {
          const bytes = Buffer.from(`${k}=${v}\0`);
          this.writeU32(ptrs + i * 4, at);
          if (at + bytes.length > this.view().length) throw new VmFailure("environ_get wrote outside the module's memory");
          this.view().set(bytes, at);
          at += bytes.length;
        });
        return Errno.SUCCESS;
      },
      args_sizes_get: (countOut: number, sizeOut: number) => (this.writeU32(countOut, 0), this.writeU32(sizeOut, 0), Errno.SUCCESS),
      args_get: () => Errno.SUCCESS,
      proc_exit: (code: number) => {
        throw new VmFailure(`the module called proc_exit(${code})`);
      },
      sched_yield: () => Errno.SUCCESS,
      poll_oneoff: (_in: number, _out: number, _n: number, eventsOut: number) => (this.writeU32(eventsOut, 0), Errno.SUCCESS),
    };
    for (const name of WASI_NOTSUP) fns[name] = notsup;
    return fns;
  }
}

/** The rest of the WASI set cpp-host registers, every one answering NOTSUP: a plugin has no files or sockets. */
const WASI_NOTSUP = [
  "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_advise", "fd_allocate", "fd_datasync",
  "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell",
  "path_create_directory", "path_filestat_set_times", "path_link", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
  "path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown", "path_open", "fd_prestat_get", "fd_prestat_dir_name",
  "path_filestat_get", "fd_filestat_get",
];
