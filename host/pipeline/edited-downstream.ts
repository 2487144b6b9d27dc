// A request as a Proxy-Wasm plugin left it: the listener's Downstream with the
// method, authority, path, query and headers taken from the plugins' map, and
// the body through the plugins' body callbacks. Routing and the upstream request
// read it like any Downstream; responses still go to the listener's. A plugin
// that changes the body's length removes content-length itself (as in Envoy):
// the headers go upstream as the plugins left them.

import { pipeline, type Readable, type Transform } from "node:stream";
import type { ConnectionPeer, Downstream } from "../listeners/downstream.js";

export class EditedDownstream implements Downstream {
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  readonly query: string | undefined;
  readonly headers: string[];

  /** `pluginHeaders`: the plugins' request map (pseudo-headers first); `bodyFilter`: the plugins' body callbacks, when any plugin reads bodies. */
  constructor(
    private readonly inner: Downstream,
    pluginHeaders: readonly string[],
    private readonly bodyFilter: Transform | undefined,
  ) {
    let method = inner.method;
    let authority = inner.authority;
    let target = inner.query === undefined ? inner.path : `${inner.path}?${inner.query}`;
    const headers: string[] = [];
    for (let i = 0; i < pluginHeaders.length; i += 2) {
      const name = pluginHeaders[i]!;
      const value = pluginHeaders[i + 1]!;
      if (name === ":method") method = value.toUpperCase();
      else if (name === ":authority") authority = value;
      else if (name === ":path") target = value;
      else if (!name.startsWith(":") && name !== "host") headers.push(name, value);
    }
    if (authority !== undefined) headers.unshift("host", authority);
    const q = target.indexOf("?");
    this.method = method;
    this.authority = authority;
    this.path = q < 0 ? target : target.slice(0, q);
    this.query = q < 0 ? undefined : target.slice(q + 1);
    this.headers = headers;
  }

  get remoteAddress(): string {
    return this.inner.remoteAddress;
  }
  get hasBody(): boolean {
    return this.inner.hasBody;
  }
  get scheme(): string {
    return this.inner.scheme;
  }
  get bodyBytes(): number {
    return this.inner.bodyBytes;
  }
  get localAddress(): string {
    return this.inner.localAddress;
  }
  get peer(): ConnectionPeer | undefined {
    return this.inner.peer;
  }
  get originalDestination(): string | undefined {
    return this.inner.originalDestination;
  }

  header(name: string): string | undefined {
    for (let i = 0; i < this.headers.length; i += 2) if (this.headers[i] === name) return this.headers[i + 1];
    return undefined;
  }

  body(): Readable {
    if (!this.bodyFilter) return this.inner.body();
    // The client's failures reach the upstream request through the filter, as they would without it.
    return pipeline(this.inner.body(), this.bodyFilter, () => undefined);
  }

  sendHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void {
    this.inner.sendHead(status, headers, contentLength, bodyless);
  }
  sendChunk(chunk: Buffer): boolean {
    return this.inner.sendChunk(chunk);
  }
  sendEnd(trailers?: Record<string, string | string[] | undefined>): void {
    this.inner.sendEnd(trailers);
  }
  sendLocal(status: number, headers: string[], body: string | Buffer): void {
    this.inner.sendLocal(status, headers, body);
  }
  reset(): void {
    this.inner.reset();
  }
}
