// proxy_http_call: a plugin's HTTP call to a cluster of the serving config,
// by Envoy's cluster name ("outbound|80||auth.default.svc.cluster.local"),
// through that cluster's own pool and load balancer, as Envoy's async client.
// The response comes back whole (headers with :status, body, trailers); a
// connection failure or reset gives no response (the plugin sees 0 headers),
// and a timeout gives Envoy's local 504, as its async client answers.

import type { Dispatcher } from "undici";
import type { HttpCallResult } from "../proxy-wasm/vm.js";
import type { SnapshotHolder } from "../proxy/snapshot.js";
import { random32 } from "./random.js";

/** A plugin's response, whole, is bounded like a buffered body. */
const CALL_RESPONSE_LIMIT = 1 << 20;

export function pluginHttpCall(holder: SnapshotHolder, cluster: string, headers: string[], body: Buffer, timeoutMs: number, done: (result: HttpCallResult | undefined) => void): boolean {
  const snapshot = holder.current;
  const index = snapshot.config.clusters.findIndex((c) => c.name === cluster);
  if (index < 0) return false;
  const endpoint = snapshot.endpoints[snapshot.core.pickEndpoint(index, random32())];
  let method = "GET";
  let path = "/";
  const sent: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name === ":method") method = headers[i + 1]!;
    else if (name === ":path") path = headers[i + 1]!;
    else if (name === ":authority") sent.push("host", headers[i + 1]!);
    else if (!name.startsWith(":")) sent.push(name, headers[i + 1]!);
  }
  if (!endpoint) {
    // Envoy's async client answers a cluster without a healthy host locally: 503.
    queueMicrotask(() => done({ headers: [":status", "503"], body: Buffer.from("no healthy upstream"), trailers: [] }));
    return true;
  }
  const call = new PluginCall(done, timeoutMs);
  try {
    snapshot.clusters[index]!.dispatcher.dispatch({ origin: endpoint.origin, method: method as Dispatcher.HttpMethod, path, headers: sent, body: body.length > 0 ? body : null, headersTimeout: 0, bodyTimeout: 0 }, call);
  } catch {
    queueMicrotask(() => call.finish(undefined));
  }
  return true;
}

class PluginCall implements Dispatcher.DispatchHandler {
  private headers: string[] = [];
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private over = false;

  constructor(
    private readonly done: (result: HttpCallResult | undefined) => void,
    timeoutMs: number,
  ) {
    // 0 is no timeout, as in Envoy.
    if (timeoutMs > 0) this.timer = setTimeout(() => this.timedOut(), timeoutMs);
  }

  private timedOut(): void {
    this.finish({ headers: [":status", "504"], body: Buffer.from("upstream request timeout"), trailers: [] });
    this.controller?.abort(new Error("plugin http call timeout"));
  }

  finish(result: HttpCallResult | undefined): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.done(result);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    this.headers = [":status", String(status)];
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) this.headers.push(name, v);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > CALL_RESPONSE_LIMIT) {
      controller.abort(new Error("plugin http call response too large"));
      return;
    }
    this.chunks.push(Buffer.from(chunk)); // borrowed from the client's read buffer
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    const t: string[] = [];
    for (const [name, value] of Object.entries(trailers ?? {})) if (typeof value === "string") t.push(name, value);
    this.finish({ headers: this.headers, body: Buffer.concat(this.chunks), trailers: t });
  }

  onResponseError(_c: Dispatcher.DispatchController, _err: Error): void {
    this.finish(undefined);
  }
}
