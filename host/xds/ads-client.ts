// The sidecar's ADS client: one gRPC stream to the control plane carrying
// clusters, endpoints, listeners and routes, as Envoy's is to istiod.
//
//   - Delta xDS first (what Istio uses for Envoy); a control plane that does
//     not implement it (UNIMPLEMENTED) gets state of the world instead.
//   - Subscriptions: every cluster and listener (wildcard), then the endpoint
//     assignments the clusters name and the route configurations the
//     listeners name, as they learn of them.
//   - A response is ACKed only once translated and, when the resources are
//     warm (Envoy's warming: clusters with their endpoints, listeners with
//     their routes), applied; otherwise NACKed with the resource's name and the
//     field path in error_detail, and the previous resources stay. Translation
//     runs on a worker thread (translator.ts); responses are handled one at a
//     time, in order.
//   - The control plane gone: the proxy keeps serving what it has; the stream
//     is opened again with jittered exponential backoff and resubscribes,
//     telling a delta server the versions it holds.

import * as grpc from "@grpc/grpc-js";
import { adsServiceDefinition } from "../control-plane/xds/ads-server.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPE_SHORT_NAMES, type AnyMessage } from "../envoy/protos.js";
import type { Logger } from "../log.js";
import type { ProxyMetrics } from "../telemetry/metrics.js";
import { nodeMessage, type NodeIdentity } from "./node-identity.js";
import type { DumpedResource } from "../envoy/json.js";
import type { Settings } from "../config/model.js";
import type { CompiledConfig } from "../config/compile.js";
import { patchEndpoints } from "../envoy/translate/assemble.js";
import { Translator, type XdsUpdate } from "./translator.js";
import type { TranslateReply } from "./translate-worker.js";

/** The config an update makes of the one served: the update's own, or the served one with new endpoints patched in. */
export function updatedConfig(update: XdsUpdate, serving: CompiledConfig): CompiledConfig {
  return update.config ?? patchEndpoints(serving, update.endpoints);
}

/** Not an xDS type: the pending change when the proxy's DNS answers moved. */
const DNS_CHANGE = "dns";

/** google.rpc.Code INVALID_ARGUMENT, what Envoy puts in a NACK's error_detail. */
const INVALID_ARGUMENT = 3;

export interface XdsClientOptions {
  /** The control plane, host:port (istiod's plaintext xDS port is 15010). */
  address: string;
  node: NodeIdentity;
  logger: Logger;
  metrics: ProxyMetrics;
  /** The proxy's settings, which every config assembled from the resources carries. */
  settings: Settings;
  /**
   * Serves the warm resources: a whole config, or new endpoints for clusters of
   * the one served. Returns why the proxy could not serve them, or undefined.
   */
  apply(update: XdsUpdate): string | undefined | Promise<string | undefined>;
  /** The protocol to try first (delta unless told; an Envoy bootstrap's api_type GRPC is state of the world). */
  protocol?: "delta" | "sotw";
  /** Reconnect backoff: the first delay and the cap (Envoy's xDS retry: 500 ms to 30 s, jittered). */
  backoff?: { baseMs: number; maxMs: number };
}

interface Response {
  type_url: string;
  nonce: string;
  version_info?: string;
  system_version_info?: string;
  resources?: AnyMessage[] | { name: string; version?: string; resource?: AnyMessage }[];
  removed_resources?: string[];
}

type Stream = grpc.ClientDuplexStream<object, Response>;

const AdsClient = grpc.makeGenericClientConstructor(adsServiceDefinition(), "AggregatedDiscoveryService");

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A mesh's config can be large (istiod's default limit is 4 MiB per message it receives; what it sends is not bounded).
  "grpc.max_receive_message_length": 256 * 1024 * 1024,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  // instio reconnects itself, with its own backoff.
  "grpc.enable_retries": 0,
};

export class XdsClient {
  /** The resources as applied, as the control plane encoded them (for /config_dump). */
  readonly applied = new Map<string, Map<string, DumpedResource>>();
  private readonly translator = new Translator();
  /** Responses are handled one after the other (each waits for the translator). */
  private queue: Promise<void> = Promise.resolve();
  private readonly client: grpc.Client & Record<string, () => Stream>;
  private stream: Stream | undefined;
  private delta = true;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Names subscribed per type (endpoint and route names; the wildcard types have none). */
  private readonly subscribed = new Map<string, Set<string>>([[ENDPOINT_TYPE, new Set()], [ROUTE_TYPE, new Set()]]);
  /** Delta: the version the server gave each resource held, sent back on resubscription. */
  private readonly versions = new Map<string, Map<string, string>>();
  /** SotW: the last version and nonce per type, for ACKs and NACKs. */
  private readonly accepted = new Map<string, string>();
  /** Types changed since the config last served. */
  private readonly pending = new Set<string>();
  private nodeSent = false;
  /** Whether a complete config has been served (readiness). */
  served = false;

  constructor(private readonly options: XdsClientOptions) {
    this.delta = options.protocol !== "sotw";
    this.client = new AdsClient(options.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as unknown as grpc.Client & Record<string, () => Stream>;
  }

  get connected(): boolean {
    return this.stream !== undefined;
  }

  get protocol(): "delta" | "sotw" {
    return this.delta ? "delta" : "sotw";
  }

  start(): void {
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stream?.cancel();
    this.stream = undefined;
    this.client.close();
    this.translator.stop();
  }

  private get log(): Logger {
    return this.options.logger;
  }

  private open(): void {
    if (this.stopped) return;
    const stream = this.delta ? this.client.DeltaAggregatedResources!() : this.client.StreamAggregatedResources!();
    this.stream = stream;
    this.nodeSent = false;
    let answered = false;
    stream.on("data", (r: Response) => {
      if (!answered) {
        answered = true;
        this.attempt = 0;
        this.options.metrics.xdsConnected.set(1);
        this.log.info(`xds: connected to ${this.options.address} (${this.protocol})`);
      }
      this.queue = this.queue.then(() => this.onResponse(stream, r)).catch((err: unknown) => {
        this.log.error(`xds: internal error handling a ${TYPE_SHORT_NAMES[r.type_url] ?? r.type_url} response: ${(err as Error).stack ?? String(err)}`);
      });
    });
    stream.on("error", () => {}); // the status event says how the stream ended
    stream.on("status", (status: grpc.StatusObject) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.options.metrics.xdsConnected.set(0);
      if (this.stopped) return;
      if (this.delta && status.code === grpc.status.UNIMPLEMENTED) {
        this.log.warn(`xds: ${this.options.address} does not serve delta xDS; using state of the world`);
        this.delta = false;
        this.open();
        return;
      }
      const delay = this.backoffMs();
      this.log.warn(`xds: stream to ${this.options.address} ended (${grpc.status[status.code] ?? status.code}: ${status.details}); serving the last config, reconnecting in ${Math.round(delay)} ms`);
      this.timer = setTimeout(() => {
        this.options.metrics.xdsReconnects.inc();
        this.open();
      }, delay);
      this.timer.unref?.();
    });
    this.subscribeAll();
  }

  /** Full jitter over an exponential ceiling: reconnecting proxies do not arrive together. */
  private backoffMs(): number {
    const { baseMs, maxMs } = this.options.backoff ?? { baseMs: 500, maxMs: 30_000 };
    const ceiling = Math.min(maxMs, baseMs * 2 ** this.attempt++);
    return baseMs / 2 + Math.random() * (ceiling - baseMs / 2);
  }

  private send(request: Record<string, unknown>): void {
    if (!this.stream) return;
    if (!this.nodeSent) {
      request.node = nodeMessage(this.options.node);
      this.nodeSent = true;
    }
    this.stream.write(request);
  }

  /** A new stream: clusters and listeners by wildcard, then what the resources held name. */
  private subscribeAll(): void {
    for (const type of [CLUSTER_TYPE, LISTENER_TYPE]) {
      if (this.delta) this.send({ type_url: type, resource_names_subscribe: [], initial_resource_versions: Object.fromEntries(this.versions.get(type) ?? []) });
      else this.send({ type_url: type, resource_names: [], version_info: this.accepted.get(type) ?? "" });
    }
    for (const type of [ENDPOINT_TYPE, ROUTE_TYPE]) {
      const names = [...this.subscribed.get(type)!];
      if (names.length === 0) continue;
      if (this.delta) {
        const held = this.versions.get(type) ?? new Map<string, string>();
        this.send({ type_url: type, resource_names_subscribe: names, initial_resource_versions: Object.fromEntries([...held].filter(([n]) => names.includes(n))) });
      } else this.send({ type_url: type, resource_names: names, version_info: this.accepted.get(type) ?? "" });
    }
  }

  private async onResponse(stream: Stream, r: Response): Promise<void> {
    if (stream !== this.stream) return; // from a stream that has ended since
    const type = r.type_url;
    const short = TYPE_SHORT_NAMES[type];
    if (!short) {
      this.nack(r, `type ${r.type_url} is not one instio subscribes to`);
      return;
    }
    let anys: AnyMessage[];
    let versions: [string, string][] = [];
    if (this.delta) {
      const list = (r.resources ?? []) as { name: string; version?: string; resource?: AnyMessage }[];
      const missing = list.find((x) => !x.resource);
      if (missing) {
        this.nack(r, `${missing.name}: a delta resource without its resource`);
        return;
      }
      anys = list.map((x) => x.resource!);
      versions = list.map((x) => [x.name, x.version ?? ""]);
    } else {
      anys = (r.resources ?? []) as AnyMessage[];
    }
    const version = (this.delta ? r.system_version_info : r.version_info) ?? "";
    const removed = r.removed_resources ?? [];
    const reply = await this.translator.request({ kind: "apply", type, resources: anys, removed, replaceAll: !this.delta, settings: this.options.settings, endpointsOnly: this.endpointsOnlyWith(type) });
    if (reply.failure) return this.translatorFailed(reply.failure);
    if (stream !== this.stream) {
      // The stream ended while this was translated: nothing was acknowledged, so nothing is kept.
      await this.translator.request({ kind: "undo" });
      return;
    }
    if (reply.rejected) {
      this.nack(r, reply.rejected);
      return;
    }
    const problem = await this.serve(type, reply);
    if (problem) {
      this.nack(r, problem);
      return;
    }
    this.record(type, anys, reply.names ?? [], versions, removed, version);
    this.accepted.set(type, version);
    this.options.metrics.xdsUpdates.inc({ type: short, result: "applied" });
    this.ack(r);
    // What the new clusters and listeners name is subscribed to after the ACK, as Envoy does.
    if (type === CLUSTER_TYPE) await this.resubscribe(ENDPOINT_TYPE, reply.endpointNames);
    if (type === LISTENER_TYPE) await this.resubscribe(ROUTE_TYPE, reply.routeNames);
  }

  /** Whether serving after a change of `type` needs only the endpoints patched (EDS, or new DNS answers). */
  private endpointsOnlyWith(type: string): boolean {
    const endpointsOnly = (t: string): boolean => t === ENDPOINT_TYPE || t === DNS_CHANGE;
    return this.served && endpointsOnly(type) && [...this.pending].every(endpointsOnly);
  }

  /**
   * The proxy's DNS answers changed (a name of a STRICT_DNS or LOGICAL_DNS cluster): the clusters'
   * endpoints are resolved again and patched in, after the responses before it.
   */
  dnsChanged(resolved: ReadonlyMap<string, readonly string[]>): void {
    if (this.stopped) return;
    const answers = [...resolved].map(([name, addresses]): [string, string[]] => [name, [...addresses]]);
    this.queue = this.queue
      .then(async () => {
        const reply = await this.translator.request({ kind: "dns", resolved: answers, settings: this.options.settings, endpointsOnly: this.endpointsOnlyWith(DNS_CHANGE) });
        if (reply.failure) return this.translatorFailed(reply.failure);
        const problem = await this.serve(DNS_CHANGE, reply);
        if (problem) this.log.error(`xds: new DNS answers not applied: ${problem}`);
      })
      .catch((err: unknown) => this.log.error(`xds: internal error applying DNS answers: ${(err as Error).stack ?? String(err)}`));
  }

  /**
   * Serves what the translator made of a change (when warm), then commits it in
   * the translator, or undoes it there; returns why the proxy refused it.
   */
  private async serve(type: string, reply: TranslateReply): Promise<string | undefined> {
    this.pending.add(type);
    const update = reply.warm ? Translator.update(reply) : undefined;
    const problem = update ? await this.options.apply(update) : undefined;
    await this.translator.request({ kind: problem ? "undo" : "commit" });
    if (problem) {
      this.pending.delete(type);
      return problem;
    }
    if (update) {
      this.pending.clear();
      if (!this.served) this.log.info(`xds: first complete config from ${this.options.address} applied (${this.count(CLUSTER_TYPE)} clusters, ${this.count(LISTENER_TYPE)} listeners, ${this.count(ROUTE_TYPE)} route configurations)`);
      this.served = true;
    }
    return undefined;
  }

  private count(type: string): number {
    return this.applied.get(type)?.size ?? 0;
  }

  /** The applied resources and their versions: for the config dump, and a delta resubscription. */
  private record(type: string, anys: readonly AnyMessage[], names: readonly string[], versions: readonly [string, string][], removed: readonly string[], version: string): void {
    let held = this.versions.get(type);
    if (!held) this.versions.set(type, (held = new Map()));
    let applied = this.applied.get(type);
    if (!applied) this.applied.set(type, (applied = new Map()));
    // State of the world: listeners and clusters not listed are gone.
    const gone = !this.delta && (type === LISTENER_TYPE || type === CLUSTER_TYPE) ? [...applied.keys()].filter((n) => !names.includes(n)) : removed;
    for (const n of gone) {
      held.delete(n);
      applied.delete(n);
    }
    const at = new Date();
    anys.forEach((any, i) => applied.set(names[i]!, { any, version, at }));
    for (const [n, v] of versions) held.set(n, v);
  }

  /** The worker failed (a bug, or it died): its resources may be gone, so start over with a fresh stream. */
  private translatorFailed(failure: string): void {
    if (this.stopped) return;
    this.log.error(`xds: internal error in the translator; reconnecting for a full config: ${failure}`);
    this.versions.clear();
    this.accepted.clear();
    this.applied.clear();
    for (const names of this.subscribed.values()) names.clear();
    this.stream?.cancel();
  }

  private async resubscribe(type: typeof ENDPOINT_TYPE | typeof ROUTE_TYPE, names: string[]): Promise<void> {
    const now = this.subscribed.get(type)!;
    const added = names.filter((n) => !now.has(n));
    const removed = [...now].filter((n) => !names.includes(n));
    if (added.length === 0 && removed.length === 0) return;
    this.subscribed.set(type, new Set(names));
    if (this.delta) this.send({ type_url: type, resource_names_subscribe: added, resource_names_unsubscribe: removed });
    else this.send({ type_url: type, resource_names: names, version_info: this.accepted.get(type) ?? "" });
    if (removed.length === 0) return;
    // Resources no longer named are dropped now (state of the world does not say they are gone); that can make the
    // set warm (a listener whose route configuration never came is gone).
    for (const n of removed) {
      this.applied.get(type)?.delete(n);
      this.versions.get(type)?.delete(n);
    }
    const reply = await this.translator.request({ kind: "forget", type, names: removed, settings: this.options.settings, endpointsOnly: false });
    if (reply.failure) return this.translatorFailed(reply.failure);
    const problem = await this.serve(type, reply);
    if (problem) this.log.error(`xds: after unsubscribing from ${removed.length} ${TYPE_SHORT_NAMES[type]} resources: ${problem}`);
  }

  private ack(r: Response): void {
    if (this.delta) this.send({ type_url: r.type_url, response_nonce: r.nonce });
    else this.send({ type_url: r.type_url, response_nonce: r.nonce, version_info: r.version_info ?? "", resource_names: [...(this.subscribed.get(r.type_url) ?? [])] });
  }

  private nack(r: Response, message: string): void {
    const short = TYPE_SHORT_NAMES[r.type_url] ?? r.type_url;
    this.options.metrics.xdsUpdates.inc({ type: short, result: "rejected" });
    this.log.error(`xds: ${short} update rejected (NACK), still serving the previous config: ${message}`);
    const error_detail = { code: INVALID_ARGUMENT, message };
    if (this.delta) this.send({ type_url: r.type_url, response_nonce: r.nonce, error_detail });
    else this.send({ type_url: r.type_url, response_nonce: r.nonce, version_info: this.accepted.get(r.type_url) ?? "", resource_names: [...(this.subscribed.get(r.type_url) ?? [])], error_detail });
  }
}
