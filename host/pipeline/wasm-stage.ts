// The Proxy-Wasm plugins of a request (Istio's WasmPlugin), run where Istio's
// HCM puts them: every phase before fault, CORS and the router (mesh.md §B.6,
// §J.2), so before the route is chosen; a plugin's header edits then route the
// request, as Envoy clears its route cache when a filter changes the headers.
// Inbound, the AUTHN and AUTHZ plugins run before AuthorizationPolicy, STATS
// and unspecified ones after it.
//
// Request: on_request_headers for each plugin in order; a plugin may stop
// (until proxy_continue_stream) or answer (a local reply). Bodies stream, as in
// Envoy: each chunk goes through on_request_body / on_response_body with the
// plugin's own buffer; a plugin that returns StopIterationAndBuffer keeps the
// data (up to BODY_LIMIT) and sees it again, grown, with the next chunk; the
// last call has end_of_stream set. A plugin that changes a body's length
// removes content-length in its header callback, as with Envoy.
// Response: the same callbacks in reverse order, as Envoy runs encoder filters,
// trailers included. Request trailers never reach a plugin: instio's listeners
// do not carry them (they are dropped, as the proxy forwards none).
//
// Failure: a plugin whose VM traps, overruns its budget or cannot start fails
// the request with 503 wasm_fail_stream (FAIL_CLOSE, the default), or is
// skipped (FAIL_OPEN); either way the VM is restarted for the next request.

import { Action, StreamType } from "../proxy-wasm/abi.js";
import { HttpMessages, PluginStream, type StreamOwner } from "../proxy-wasm/http-stream.js";
import type { WasmPlugin } from "../proxy-wasm/plugin.js";
import type { PropertyFacts } from "../proxy-wasm/properties.js";
import { matchesTraffic, type WasmPhase } from "../config/wasm-plugin.js";
import type { Downstream } from "../listeners/downstream.js";
import type { LocalReply } from "../http/local-reply.js";
import { Transform, type TransformCallback } from "node:stream";
import { EditedDownstream } from "./edited-downstream.js";
import type { ExchangeRecord } from "../telemetry/record.js";

/** Envoy's per-connection buffer limit (1 MiB), over which a buffered request gets 413 and a buffered response 500. */
export const BODY_LIMIT = 1 << 20;

const FAIL_STREAM: LocalReply = { status: 503, flag: "-", body: "", details: "wasm_fail_stream" };
const REQUEST_TOO_LARGE: LocalReply = { status: 413, flag: "-", body: "Payload Too Large", details: "request_payload_too_large" };
const RESPONSE_TOO_LARGE: LocalReply = { status: 500, flag: "-", body: "Internal Server Error", details: "response_payload_too_large" };

/** What the stage needs of the Exchange running it. */
export interface WasmExchange extends ExchangeRecord {
  ds: Downstream;
  readonly over: boolean;
  localReply(reply: LocalReply, extraHeaders?: string[]): void;
  /** Drops the downstream connection (proxy_close_stream) and ends the exchange. */
  resetDownstream(): void;
  /** Abandons the upstream request (a plugin answered in its place while its response was arriving). */
  abandonUpstream(reason: string): void;
  /** Send what a plugin held until its continue: the head, then data, then the end. */
  sendPluginHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void;
  sendPluginData(chunk: Buffer): void;
  sendPluginEnd(trailers: Record<string, string> | undefined): void;
}

/** The plugins of `plugins` that apply to this traffic and phase set, in order. */
export function pluginsFor(plugins: readonly WasmPlugin[], direction: "outbound" | "inbound", port: number, phases?: readonly WasmPhase[]): WasmPlugin[] {
  const out: WasmPlugin[] = [];
  for (const p of plugins) if ((!phases || phases.includes(p.config.phase)) && matchesTraffic(p.config.match, direction, port)) out.push(p);
  return out;
}

export class WasmStage implements StreamOwner, PropertyFacts {
  readonly messages = new HttpMessages();
  private readonly streams: PluginStream[] = [];
  /** Plugins that failed open on this request: skipped from then on. */
  private readonly skipped = new Set<WasmPlugin>();
  private plugins: WasmPlugin[] = [];
  private next = 0;
  private phase: "request" | "response" | "done" = "done";
  private then: (() => void) | undefined;
  private replied = false;
  private responseStatus = 0;
  /** Response data that arrived while a plugin held the response headers (until its continue). */
  private held: Buffer[] | undefined;
  private heldEnd: { trailers: Record<string, string> | undefined } | undefined;
  private heldHead: { headers: string[]; bodyless: boolean } | undefined;
  endedAt = 0;

  constructor(private readonly ex: WasmExchange) {
    const ds = ex.ds;
    const m = this.messages.requestHeaders;
    m.push(":authority", ds.authority ?? "", ":path", ds.query === undefined ? ds.path : `${ds.path}?${ds.query}`, ":method", ds.method, ":scheme", ds.scheme);
    for (let i = 0; i < ds.headers.length; i += 2) if (ds.headers[i] !== "host" && !ds.headers[i]!.startsWith(":")) m.push(ds.headers[i]!, ds.headers[i + 1]!);
  }

  get record(): ExchangeRecord {
    return this.ex;
  }
  get requestHeaders(): readonly string[] {
    return this.messages.requestHeaders;
  }
  get responseHeaders(): readonly string[] | undefined {
    return this.messages.responseHeaders;
  }
  facts(): PropertyFacts {
    return this;
  }
  /** The response status as the plugins left it. */
  get status(): number {
    return this.responseStatus;
  }

  /** A stream is waiting for a continue or a response is being held: the request is in the stage's hands. */
  get pending(): boolean {
    return this.phase !== "done" || this.held !== undefined;
  }

  /** Whether responses go through the plugins (any that ran exports a response callback). */
  get filtersResponse(): boolean {
    return this.streams.some((s) => s.plugin.wants.responseHeaders || s.plugin.wants.responseBody || s.plugin.wants.responseTrailers);
  }

  /** Runs `plugins`' request header callbacks; `then` continues the pipeline once every one continued (not called after a local reply). */
  runRequest(plugins: WasmPlugin[], then: () => void): void {
    this.plugins = plugins;
    this.next = 0;
    this.then = then;
    this.phase = "request";
    this.advance();
  }

  private advance(): void {
    while (!this.ex.over && !this.replied && this.phase === "request") {
      if (this.next >= this.plugins.length) {
        this.finishRequest();
        return;
      }
      const plugin = this.plugins[this.next]!;
      if (this.skipped.has(plugin)) {
        this.next++;
        continue;
      }
      const stream = this.open(plugin);
      if (!stream) {
        if (this.failed(plugin)) return;
        this.next++;
        continue;
      }
      const n = this.messages.requestHeaders.length / 2;
      const vm = stream.vm;
      const action = vm.abi === "0_1_0" ? vm.callback("proxy_on_request_headers", stream.contextId, n) : vm.callback("proxy_on_request_headers", stream.contextId, n, this.ex.ds.hasBody ? 0 : 1);
      if (vm.failure !== undefined) {
        if (this.failed(plugin)) return;
        this.next++;
        continue;
      }
      if (this.replied) return;
      this.next++;
      if (action !== Action.CONTINUE) {
        stream.paused = true;
        return;
      }
    }
  }

  private open(plugin: WasmPlugin): PluginStream | undefined {
    const vm = plugin.acquire();
    if (!vm) return undefined;
    const stream = new PluginStream(plugin, vm, this);
    this.streams.push(stream);
    return vm.failure === undefined ? stream : undefined;
  }

  /** The plugin could not run: FAIL_OPEN skips it for this request; otherwise the request fails (true). */
  private failed(plugin: WasmPlugin): boolean {
    plugin.acquire(); // logs and counts the failure, and restarts the VM for the next request
    if (plugin.config.failStrategy === "FAIL_OPEN") {
      this.skipped.add(plugin);
      return false;
    }
    const duringResponse = this.phase === "response";
    this.replied = true;
    this.phase = "done";
    if (!this.ex.over) this.ex.localReply(FAIL_STREAM);
    if (duringResponse) this.ex.abandonUpstream("a Wasm plugin failed the response");
    return true;
  }

  private finishRequest(): void {
    this.phase = "done";
    const m = this.messages;
    const bodies = this.ex.ds.hasBody && this.streams.some((s) => s.plugin.wants.requestBody);
    if (m.requestEdited || bodies) this.ex.ds = new EditedDownstream(this.ex.ds, m.requestHeaders, bodies ? new RequestBodyFilter(this) : undefined);
    const then = this.then!;
    this.then = undefined;
    then();
  }

  // ── bodies ──

  /** The plugins' buffers for a body in flight (stream index → data held by a StopIterationAndBuffer). */
  private readonly buffered = new Map<PluginStream, Buffer>();

  /**
   * Runs `data` through the body callbacks (request: in order; response: in
   * reverse) and returns what comes out of the last plugin, possibly nothing
   * yet. undefined: the request was answered or failed meanwhile.
   */
  filterBody(response: boolean, data: Buffer, end: boolean): Buffer | undefined {
    const m = this.messages;
    const count = this.streams.length;
    for (let k = 0; k < count; k++) {
      const stream = this.streams[response ? count - 1 - k : k]!;
      const wants = response ? stream.plugin.wants.responseBody : stream.plugin.wants.requestBody;
      if (!wants || this.skipped.has(stream.plugin) || stream.vm.failure !== undefined) continue;
      const before = this.buffered.get(stream);
      let body = before === undefined ? data : Buffer.concat([before, data]);
      if (body.length > BODY_LIMIT) {
        this.bodyTooLarge(response);
        return undefined;
      }
      if (response) m.responseBody = body;
      else m.requestBody = body;
      const action = stream.vm.callback(response ? "proxy_on_response_body" : "proxy_on_request_body", stream.contextId, body.length, end ? 1 : 0);
      if (stream.vm.failure !== undefined) {
        if (this.failed(stream.plugin)) return undefined;
        continue;
      }
      if (this.replied) return undefined;
      body = (response ? m.responseBody : m.requestBody) ?? body;
      if (action !== Action.CONTINUE && !end) {
        this.buffered.set(stream, body);
        return EMPTY;
      }
      this.buffered.delete(stream);
      data = body;
    }
    return data;
  }

  private bodyTooLarge(response: boolean): void {
    this.replied = true;
    this.phase = "done";
    if (!this.ex.over) this.ex.localReply(response ? RESPONSE_TOO_LARGE : REQUEST_TOO_LARGE);
  }

  // ── StreamOwner ──

  continueStream(from: PluginStream, type: StreamType): void {
    if (!from.paused) return;
    from.paused = false;
    // Never re-entered from inside the plugin's own call: the next plugin runs once this call has returned.
    if (type === StreamType.HTTP_REQUEST && this.phase === "request") queueMicrotask(() => this.advance());
    else if (type === StreamType.HTTP_RESPONSE && this.phase === "response") queueMicrotask(() => this.resumeResponse());
  }

  localResponse(_from: PluginStream, status: number, details: string, body: Buffer, headers: string[], grpcStatus: number): void {
    if (this.replied || this.ex.over) return;
    const duringResponse = this.phase === "response";
    this.replied = true;
    this.phase = "done";
    this.held = undefined;
    const extra = [...headers];
    if (grpcStatus >= 0 && grpcStatus <= 16) extra.push("grpc-status", String(grpcStatus));
    // Envoy replaces whitespace in the details with "_" and sets no response flag.
    const reply: LocalReply = { status, flag: "-", body, details: details.replace(/\s/g, "_") };
    // After the plugin's call returns: the VM must not be re-entered by the reply's own callbacks.
    queueMicrotask(() => {
      if (this.ex.over) return;
      this.ex.localReply(reply, extra);
      // The upstream's response is not wanted any more: its connection is not kept reading it.
      if (duringResponse) this.ex.abandonUpstream("the response was answered by a Wasm plugin");
    });
  }

  pausedStreamFailed(from: PluginStream): void {
    from.paused = false;
    // Not from inside the failing VM's call: the fail strategy applies once it has returned.
    queueMicrotask(() => {
      if (this.ex.over || this.replied || this.failed(from.plugin)) return;
      if (this.phase === "request") this.advance();
      else if (this.phase === "response") this.resumeResponse();
    });
  }

  resetStream(_from: PluginStream): void {
    this.replied = true;
    this.phase = "done";
    queueMicrotask(() => this.ex.resetDownstream());
  }

  // ── response ──

  /**
   * The upstream's response head, through the plugins' on_response_headers in
   * reverse order. `headers` comes back as the plugins left it (content-length
   * included when it stays). Returns false when the head may go out now; true
   * when the stage took the response over (a plugin stopped it until its
   * continue, answered locally, or failed the request).
   */
  responseHead(status: number, headers: string[], contentLength: number, bodyless: boolean): boolean {
    this.responseStatus = status;
    const m = (this.messages.responseHeaders = [":status", String(status), ...headers]);
    if (contentLength >= 0) m.push("content-length", String(contentLength));
    this.phase = "response";
    this.next = this.streams.length - 1;
    if (!this.runResponseHeaders()) {
      if (!this.replied) this.heldHead = { headers, bodyless };
      this.held = [];
      return true;
    }
    this.phase = "done";
    this.takeResponseHeaders(headers);
    return false;
  }

  /** on_response_headers from `next` down; false when a plugin stopped, answered or failed the request. */
  private runResponseHeaders(): boolean {
    for (; this.next >= 0; this.next--) {
      const stream = this.streams[this.next]!;
      if (this.skipped.has(stream.plugin) || !stream.plugin.wants.responseHeaders || stream.vm.failure !== undefined) continue;
      const n = this.messages.responseHeaders!.length / 2;
      const vm = stream.vm;
      const action = vm.abi === "0_1_0" ? vm.callback("proxy_on_response_headers", stream.contextId, n) : vm.callback("proxy_on_response_headers", stream.contextId, n, 0);
      if (vm.failure !== undefined) {
        if (this.failed(stream.plugin)) return false;
        continue;
      }
      if (this.replied) return false;
      if (action !== Action.CONTINUE) {
        stream.paused = true;
        this.next--;
        return false;
      }
    }
    return true;
  }

  /** A plugin continued the response it held: the rest of the header callbacks, then the head and what arrived meanwhile. */
  private resumeResponse(): void {
    if (this.ex.over || this.replied || !this.heldHead) return;
    if (!this.runResponseHeaders()) return;
    this.phase = "done";
    const { headers, bodyless } = this.heldHead;
    this.heldHead = undefined;
    const status = this.takeResponseHeaders(headers);
    const held = this.held ?? [];
    this.held = undefined;
    this.ex.sendPluginHead(status, headers, this.contentLength(headers), bodyless);
    for (const chunk of held) {
      const out = this.filterBody(true, chunk, false);
      if (out === undefined) return;
      if (out.length > 0) this.ex.sendPluginData(out);
    }
    if (this.heldEnd) this.ex.sendPluginEnd(this.heldEnd.trailers);
  }

  /** The content-length the plugins left (-1: none, the body is sent chunked), taken out of the header list. */
  contentLength(headers: string[]): number {
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] !== "content-length") continue;
      const n = Number(headers[i + 1]);
      headers.splice(i, 2);
      return Number.isInteger(n) && n >= 0 ? n : -1;
    }
    return -1;
  }

  /** The plugins' response map back into the listener's flat headers; returns the status. */
  private takeResponseHeaders(headers: string[]): number {
    const m = this.messages.responseHeaders!;
    let status = this.responseStatus;
    headers.length = 0;
    for (let i = 0; i < m.length; i += 2) {
      if (m[i] === ":status") status = Number(m[i + 1]) || status;
      else if (!m[i]!.startsWith(":")) headers.push(m[i]!, m[i + 1]!);
    }
    this.responseStatus = status;
    return status;
  }

  /**
   * The upstream's trailers through the plugins' on_response_trailers, in reverse order; what they
   * left. undefined: a plugin failed the request meanwhile (the exchange has ended).
   */
  responseTrailers(trailers: Record<string, string | string[] | undefined> | undefined): Record<string, string | string[] | undefined> | undefined | false {
    if (!trailers || !this.streams.some((s) => s.plugin.wants.responseTrailers)) return trailers;
    const flat: string[] = [];
    for (const [name, value] of Object.entries(trailers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) flat.push(name, v);
    }
    if (flat.length === 0) return trailers;
    this.messages.responseTrailers = flat;
    for (let i = this.streams.length - 1; i >= 0; i--) {
      const stream = this.streams[i]!;
      if (this.skipped.has(stream.plugin) || !stream.plugin.wants.responseTrailers || stream.vm.failure !== undefined) continue;
      stream.vm.callback("proxy_on_response_trailers", stream.contextId, this.messages.responseTrailers.length / 2);
      if (stream.vm.failure !== undefined && this.failed(stream.plugin)) return false;
      if (this.replied) return false;
    }
    const out: Record<string, string | string[]> = {};
    const m = this.messages.responseTrailers;
    for (let i = 0; i < m.length; i += 2) {
      const prior = out[m[i]!];
      out[m[i]!] = prior === undefined ? m[i + 1]! : [...(Array.isArray(prior) ? prior : [prior]), m[i + 1]!];
    }
    return out;
  }

  /** Response data while the head is held: kept (copied: the listener's chunk is borrowed) until the plugin continues. */
  hold(chunk: Buffer | undefined, end: { trailers: Record<string, string> | undefined } | undefined): void {
    if (chunk) this.held?.push(Buffer.from(chunk));
    if (end) this.heldEnd = end;
  }

  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Ends every plugin context of the request: on_done, on_log (STATS plugins record here), on_delete. */
  finish(): void {
    this.endedAt = performance.now();
    this.held = undefined;
    for (const s of this.streams) if (s.vm.failure === undefined) s.finish();
  }
}

const EMPTY = Buffer.alloc(0);

/** The request body on its way upstream, chunk by chunk through the plugins' on_request_body. */
class RequestBodyFilter extends Transform {
  constructor(private readonly stage: WasmStage) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = this.stage.filterBody(false, Buffer.from(chunk), false);
    if (out === undefined) return done(new Error("the request was answered by a Wasm plugin"));
    if (out.length > 0) this.push(out);
    done();
  }
  override _flush(done: TransformCallback): void {
    const out = this.stage.filterBody(false, EMPTY, true);
    if (out === undefined) return done(new Error("the request was answered by a Wasm plugin"));
    if (out.length > 0) this.push(out);
    done();
  }
}
