// One plugin's HTTP context for one request: what its host calls read and
// change. The request's header maps and bodies are shared by every plugin of
// the request (HttpMessages), as Envoy's filters share the stream's maps; the
// pipeline's Wasm stage (host/pipeline/wasm-stage.ts) drives the callbacks and
// is told of local replies and continues through StreamOwner.

import { BufferType, MapType, Status, StreamType } from "./abi.js";
import type { WasmPlugin } from "./plugin.js";
import { streamProperty, type PropertyFacts } from "./properties.js";
import type { PluginVm, StreamHost } from "./vm.js";

/** The request and response as the plugins see and edit them: flat [name, value, ...] maps, pseudo-headers first. */
export class HttpMessages {
  requestHeaders: string[] = [];
  requestEdited = false;
  requestBody: Buffer | undefined;
  responseHeaders: string[] | undefined;
  responseEdited = false;
  responseBody: Buffer | undefined;
  responseTrailers: string[] | undefined;
  /** proxy_set_property values (Envoy keeps them as filter state), by dotted path. */
  readonly properties = new Map<string, Buffer>();
}

/** What a plugin's context reports back to the stage driving it. */
export interface StreamOwner {
  readonly messages: HttpMessages;
  facts(): PropertyFacts;
  localResponse(from: PluginStream, status: number, details: string, body: Buffer, headers: string[], grpcStatus: number): void;
  continueStream(from: PluginStream, type: StreamType): void;
  /** proxy_close_stream: Envoy resets the stream. */
  resetStream(from: PluginStream): void;
  /** The stream was stopped, waiting for a continue, and its VM failed: it will never get one. */
  pausedStreamFailed(from: PluginStream): void;
}

export class PluginStream implements StreamHost {
  readonly contextId: number;
  /** The stream stopped at a callback and waits for proxy_continue_stream (or a local reply). */
  paused = false;

  constructor(
    readonly plugin: WasmPlugin,
    readonly vm: PluginVm,
    private readonly owner: StreamOwner,
  ) {
    this.contextId = vm.createStream(this);
  }

  headerMap(type: MapType): string[] | undefined {
    const m = this.owner.messages;
    if (type === MapType.HTTP_REQUEST_HEADERS) return m.requestHeaders;
    if (type === MapType.HTTP_RESPONSE_HEADERS) return m.responseHeaders;
    if (type === MapType.HTTP_RESPONSE_TRAILERS) return m.responseTrailers;
    return undefined;
  }

  setHeaderMap(type: MapType, flat: string[]): void {
    const m = this.owner.messages;
    if (type === MapType.HTTP_REQUEST_HEADERS) m.requestHeaders = flat;
    else if (type === MapType.HTTP_RESPONSE_HEADERS) m.responseHeaders = flat;
    else if (type === MapType.HTTP_RESPONSE_TRAILERS) m.responseTrailers = flat;
  }

  headersEdited(type: MapType): void {
    if (type === MapType.HTTP_REQUEST_HEADERS) this.owner.messages.requestEdited = true;
    else if (type === MapType.HTTP_RESPONSE_HEADERS) this.owner.messages.responseEdited = true;
  }

  buffer(type: BufferType): Buffer | undefined {
    if (type === BufferType.HTTP_REQUEST_BODY) return this.owner.messages.requestBody;
    if (type === BufferType.HTTP_RESPONSE_BODY) return this.owner.messages.responseBody;
    return undefined;
  }

  setBuffer(type: BufferType, data: Buffer): void {
    if (type === BufferType.HTTP_REQUEST_BODY) this.owner.messages.requestBody = data;
    else if (type === BufferType.HTTP_RESPONSE_BODY) this.owner.messages.responseBody = data;
  }

  /** Bodies are delivered whole (buffered), so a body a plugin can see is always complete. */
  bufferEnded(type: BufferType): boolean {
    return this.buffer(type) !== undefined;
  }

  property(path: readonly string[]): Uint8Array | undefined {
    return this.owner.messages.properties.get(path.join(".")) ?? streamProperty(this.owner.facts(), path);
  }

  setProperty(path: string, value: Buffer): void {
    this.owner.messages.properties.set(path, value);
  }

  sendLocalResponse(status: number, details: string, body: Buffer, headers: string[], grpcStatus: number): void {
    this.owner.localResponse(this, status, details, body, headers, grpcStatus);
  }

  continueStream(type: StreamType): Status {
    if (type > StreamType.UPSTREAM) return Status.BAD_ARGUMENT;
    if (type !== StreamType.HTTP_REQUEST && type !== StreamType.HTTP_RESPONSE) return Status.UNIMPLEMENTED;
    this.owner.continueStream(this, type);
    return Status.OK;
  }

  closeStream(type: StreamType): Status {
    if (type > StreamType.UPSTREAM) return Status.BAD_ARGUMENT;
    this.owner.resetStream(this);
    return Status.OK;
  }

  vmFailed(): void {
    if (this.paused) this.owner.pausedStreamFailed(this);
  }

  finish(): void {
    this.vm.finishStream(this.contextId);
  }
}
