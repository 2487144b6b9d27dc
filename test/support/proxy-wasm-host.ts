// What the Proxy-Wasm VM is given when a test drives it directly (no proxy
// around it): a stream whose maps and body are plain values, recording what
// the module did to it, and a plugin environment with the proxy's services
// reduced to answers a test can choose.

import { MapType, BufferType, type StreamType } from "../../host/proxy-wasm/abi.js";
import { SharedState } from "../../host/proxy-wasm/shared-state.js";
import type { PluginEnvironment, StreamHost } from "../../host/proxy-wasm/vm.js";

export class TestStream implements StreamHost {
  request: string[];
  response: string[] | undefined;
  body: Buffer | undefined;
  /** How many times a header map was edited. */
  edits = 0;
  readonly replies: { status: number; details: string; body: string; headers: string[] }[] = [];
  readonly continued: StreamType[] = [];
  /** What the module wrote with proxy_set_property, by dotted path. */
  readonly properties = new Map<string, string>();
  private readonly known: Readonly<Record<string, string>>;

  /** `properties`: what proxy_get_property finds, by dotted path ("request.path"). */
  constructor(request: string[], options: { response?: string[]; body?: Buffer; properties?: Record<string, string> } = {}) {
    this.request = request;
    this.response = options.response;
    this.body = options.body;
    this.known = options.properties ?? {};
  }

  headerMap(type: MapType): string[] | undefined {
    return type === MapType.HTTP_REQUEST_HEADERS ? this.request : type === MapType.HTTP_RESPONSE_HEADERS ? this.response : undefined;
  }
  headersEdited(): void {
    this.edits++;
  }
  setHeaderMap(type: MapType, flat: string[]): void {
    if (type === MapType.HTTP_REQUEST_HEADERS) this.request = flat;
    else if (type === MapType.HTTP_RESPONSE_HEADERS) this.response = flat;
  }
  buffer(type: BufferType): Buffer | undefined {
    return type === BufferType.HTTP_REQUEST_BODY ? this.body : undefined;
  }
  setBuffer(type: BufferType, data: Buffer): void {
    if (type === BufferType.HTTP_REQUEST_BODY) this.body = data;
  }
  bufferEnded(): boolean {
    return this.body !== undefined;
  }
  property(path: readonly string[]): Uint8Array | undefined {
    const value = this.known[path.join(".")];
    return value === undefined ? undefined : Buffer.from(value);
  }
  setProperty(path: string, value: Buffer): void {
    this.properties.set(path, value.toString());
  }
  sendLocalResponse(status: number, details: string, body: Buffer, headers: string[]): void {
    this.replies.push({ status, details, body: body.toString(), headers });
  }
  continueStream(type: StreamType): number {
    this.continued.push(type);
    return 0;
  }
  closeStream(): number {
    return 0;
  }
  vmFailed(): void {}

  /** A request header's first value, as the module left the map. */
  get(name: string): string | undefined {
    const i = this.request.findIndex((h, j) => j % 2 === 0 && h === name);
    return i < 0 ? undefined : this.request[i + 1];
  }
}

/** A plugin environment; `logs` has every line the module logged, as "LEVEL:message". */
export function testEnvironment(overrides: Partial<PluginEnvironment> = {}): PluginEnvironment & { logs: string[] } {
  const logs: string[] = [];
  return {
    name: "default.test",
    rootId: "root",
    vmId: "",
    vmConfiguration: Buffer.alloc(0),
    pluginConfiguration: Buffer.from("cfg"),
    env: [],
    shared: new SharedState(),
    timeBudgetMs: 100,
    memoryLimitBytes: 1 << 24,
    logs,
    log: (level, message) => logs.push(`${level}:${message}`),
    property: () => undefined,
    httpCall: () => false,
    defineMetric: () => 0,
    metricAdd: () => 0,
    metricRecord: () => 0,
    metricValue: () => undefined,
    ...overrides,
  };
}
