// One ADS stream: its subscriptions per type, what was sent and acknowledged,
// and its own push queue. The protocol rules are xds_protocol's, run the way
// istiod runs them (pkg/xds/server.go ShouldRespond, pilot/pkg/xds/delta.go).

import { randomUUID } from "node:crypto";
import type { ProxyResources, EncodedResource } from "../../envoy/generate/resources.js";
import { CLUSTER_TYPE, LISTENER_TYPE, PUSH_ORDER, TYPE_SHORT_NAMES } from "../../envoy/protos.js";
import { encodeDeltaResponse, encodeSotwResponse } from "./wire.js";
import type { ProxyNode } from "./node.js";

/** Listener and Cluster are the types with wildcard subscriptions (and full-state SotW responses). */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === LISTENER_TYPE || typeUrl === CLUSTER_TYPE;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: unknown;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface DeltaDiscoveryRequest {
  node?: unknown;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

interface SendPlan {
  /** Everything the watch covers, when computed. */
  wanted: EncodedResource[] | undefined;
  changed: EncodedResource[];
  gone: string[];
  missing: string[];
}

/** Per type: what the client asked for and where the exchange stands. */
export class Watch {
  readonly names = new Set<string>();
  wildcard = false;
  nonceSent: string | undefined;
  nonceAcked: string | undefined;
  versionSent: string | undefined;
  versionAcked: string | undefined;
  sentAt: number | undefined;
  ackedAt: number | undefined;
  lastError: string | undefined;
  /** What the client holds, as far as we know: resource name → version. */
  readonly held = new Map<string, string>();
  /** Delta: subscribed names already reported as not existing (in removed_resources). */
  readonly reportedMissing = new Set<string>();
  /** The proxy resources the client was last brought up to date with, for this type and these names. */
  syncedWith: ProxyResources | undefined;
}

/** What the stream reports to the server (metrics, logs). */
export interface ConnectionEvents {
  nack(conn: AdsConnection, typeUrl: string, detail: string): void;
  expiredNonce(conn: AdsConnection, typeUrl: string): void;
  pushed(conn: AdsConnection, typeUrl: string, resources: number, seconds: number, bytes: number): void;
  /** Every type this connection watches has acknowledged the push that started at `since`. */
  converged(conn: AdsConnection, since: number): void;
}

export interface Outbound {
  /** Writes an encoded response; false: the stream's buffer is full, wait for drain(). */
  write(message: Buffer): boolean;
  drain(): Promise<void>;
}

export class AdsConnection {
  readonly watches = new Map<string, Watch>();
  readonly connectedAt = Date.now();
  private pushing = false;
  private dirty = false;
  /** When the config change behind the oldest unacknowledged push happened. */
  private pendingSince: number | undefined;
  private closed = false;

  constructor(
    readonly id: string,
    readonly node: ProxyNode,
    readonly peer: string,
    readonly delta: boolean,
    private readonly out: Outbound,
    private readonly resources: () => ProxyResources,
    private readonly version: () => string,
    private readonly events: ConnectionEvents,
  ) {}

  close(): void {
    this.closed = true;
  }

  // ── State of the world ────────────────────────────────────────────────────

  onRequest(req: DiscoveryRequest): void {
    const type = req.type_url ?? "";
    const names = req.resource_names ?? [];
    let w = this.watches.get(type);
    if (req.error_detail) {
      // A NACK: keep what the client has; do not push again until something changes (istiod).
      this.nack(w, type, req.error_detail);
      return;
    }
    if (w && req.response_nonce && req.response_nonce !== w.nonceSent) {
      this.events.expiredNonce(this, type);
      return;
    }
    if (!w || !req.response_nonce) {
      // First request for the type, or a reconnect: answer with everything asked for.
      w ??= new Watch();
      this.watches.set(type, w);
      this.subscribeSotw(w, type, names);
      w.held.clear();
      this.send(type, w, true);
      return;
    }
    this.ack(w, req.version_info);
    const before = new Set(w.names);
    const wasWildcard = w.wildcard;
    this.subscribeSotw(w, type, names);
    const added = [...w.names].some((n) => !before.has(n)) || (w.wildcard && !wasWildcard);
    const removed = [...before].some((n) => !w.names.has(n));
    if (added) w.syncedWith = undefined; // names the diff between versions knows nothing of: compare in full
    // Full-state types answer any change of names; the others only names added.
    if (added || (removed && isWildcardType(type))) this.send(type, w, false);
  }

  /** SotW subscription rules: empty names on a wildcard type that never named one is the legacy wildcard. */
  private subscribeSotw(w: Watch, type: string, names: string[]): void {
    const everNamed = w.names.size > 0 || (w.nonceSent !== undefined && !w.wildcard);
    w.names.clear();
    for (const n of names) if (n !== "*") w.names.add(n);
    w.wildcard = isWildcardType(type) && (names.includes("*") || (names.length === 0 && !everNamed));
  }

  // ── Delta ─────────────────────────────────────────────────────────────────

  onDeltaRequest(req: DeltaDiscoveryRequest): void {
    const type = req.type_url ?? "";
    let w = this.watches.get(type);
    const first = !w;
    w ??= new Watch();
    this.watches.set(type, w);
    if (req.response_nonce) {
      if (req.error_detail) this.nack(w, type, req.error_detail);
      else if (req.response_nonce === w.nonceSent) this.ack(w, undefined);
    }
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    let added = false;
    if (first) {
      // The versions a reconnecting client already holds count as subscriptions (delta.go deltaWatchedResources).
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) {
        w.held.set(name, version);
        if (name !== "*") w.names.add(name);
      }
      // Legacy wildcard: the first request of a wildcard type subscribes to nothing in particular.
      if (isWildcardType(type) && subscribe.length === 0) w.wildcard = true;
      added = true;
    }
    for (const n of subscribe) {
      if (n === "*") {
        added ||= !w.wildcard;
        w.wildcard = true;
        continue;
      }
      // A name subscribed again is sent again (xds_protocol: the client may have dropped it).
      w.names.add(n);
      w.held.delete(n);
      w.reportedMissing.delete(n);
      added = true;
    }
    for (const n of unsubscribe) {
      if (n === "*") w.wildcard = false;
      else {
        w.names.delete(n);
        w.held.delete(n);
        w.reportedMissing.delete(n);
      }
    }
    if (added) {
      w.syncedWith = undefined; // names the diff between versions knows nothing of: compare in full
      this.send(type, w, false);
    }
  }

  // ── Both ──────────────────────────────────────────────────────────────────

  private nack(w: Watch | undefined, type: string, detail: { code?: number; message?: string }): void {
    const message = detail.message ?? `code ${detail.code ?? 0}`;
    if (w) {
      w.lastError = message;
      w.ackedAt = Date.now();
    }
    this.events.nack(this, type, message);
  }

  private ack(w: Watch, version: string | undefined): void {
    w.nonceAcked = w.nonceSent;
    w.versionAcked = version ?? w.versionSent;
    w.ackedAt = Date.now();
    w.lastError = undefined;
    if (this.pendingSince !== undefined && [...this.watches.values()].every((x) => x.nonceSent === undefined || x.nonceSent === x.nonceAcked)) {
      this.events.converged(this, this.pendingSince);
      this.pendingSince = undefined;
    }
  }

  /**
   * Queues a push of the current mesh version. Pushes on one connection run one
   * at a time and merge: a slow client gets the latest state when it can take
   * it, and never holds up another connection.
   */
  schedulePush(since: number): void {
    this.pendingSince ??= since;
    this.dirty = true;
    if (!this.pushing) void this.runPushes();
  }

  private async runPushes(): Promise<void> {
    this.pushing = true;
    try {
      while (this.dirty && !this.closed) {
        this.dirty = false;
        for (const type of PUSH_ORDER) {
          const w = this.watches.get(type);
          if (!w) continue;
          if (!this.send(type, w, false)) await this.out.drain();
          if (this.closed) return;
        }
      }
    } finally {
      this.pushing = false;
    }
  }

  /**
   * Sends the type's resources that changed since the client got them (all of
   * them when `force`, or for a full-state SotW type whenever anything changed).
   * Returns the stream's write result (false: its buffer is full).
   */
  private send(type: string, w: Watch, force: boolean): boolean {
    const started = performance.now();
    const resources = this.resources();
    const plan = !force && w.syncedWith !== undefined && resources.predecessor === w.syncedWith ? this.planFromDiff(resources, type, w) : this.plan(resources, type, w);
    w.syncedWith = resources;
    const { changed, gone, missing } = plan;
    let sent: EncodedResource[];
    let removed: string[] = [];
    if (this.delta) {
      if (changed.length === 0 && gone.length === 0 && missing.length === 0 && !force) return true;
      sent = changed;
      removed = [...gone, ...missing];
      for (const n of gone) {
        w.held.delete(n);
        // A name subscribed by name stays subscribed: it is reported again if it comes back, not as missing again.
        if (w.names.has(n)) w.reportedMissing.add(n);
      }
      for (const n of missing) w.reportedMissing.add(n);
      for (const r of changed) {
        w.held.set(r.name, r.version);
        w.reportedMissing.delete(r.name);
      }
    } else {
      const fullState = isWildcardType(type);
      if (!force && changed.length === 0 && (!fullState || gone.length === 0)) return true;
      sent = fullState || force ? (plan.wanted ?? this.wanted(resources, type, w)) : changed;
      if (fullState) w.held.clear();
      for (const n of gone) w.held.delete(n);
      for (const r of sent) w.held.set(r.name, r.version);
    }
    const count = sent.length;
    const version = this.version();
    // Streams of one proxy class are mostly sent the same thing: encoded once, with one nonce
    // (a nonce only has to tell a stream's responses apart).
    const key = `${this.delta ? "delta" : "sotw"}|${version}|${type}|${sent.map((r) => r.version).join(",")}|${removed.join(",")}`;
    const { nonce, bytes: message } = resources.sharedResponse(key, () => {
      const n = this.nonce();
      return { nonce: n, bytes: this.delta ? encodeDeltaResponse(version, type, n, sent, removed) : encodeSotwResponse(version, type, n, sent) };
    });
    w.nonceSent = nonce;
    w.versionSent = version;
    w.sentAt = Date.now();
    const ok = this.out.write(message);
    this.events.pushed(this, type, count, (performance.now() - started) / 1000, message.length);
    return ok;
  }

  /** What to send, comparing everything the watch covers with what the client holds. */
  private plan(resources: ProxyResources, type: string, w: Watch): SendPlan {
    const wanted = this.wanted(resources, type, w);
    const changed = wanted.filter((r) => w.held.get(r.name) !== r.version);
    const wantedNames = new Set(wanted.map((r) => r.name));
    const gone = [...w.held.keys()].filter((name) => !wantedNames.has(name));
    // Delta: a subscribed name that does not exist is reported removed, once.
    const missing = this.delta ? [...w.names].filter((n) => !w.held.has(n) && !w.reportedMissing.has(n) && !wantedNames.has(n)) : [];
    return { wanted, changed, gone, missing };
  }

  /**
   * The same, from what changed between the resources this watch last synced
   * with and the current ones (computed once per proxy class and push): a push
   * to thousands of proxies costs each the size of the change, not of its config.
   */
  private planFromDiff(resources: ProxyResources, type: string, w: Watch): SendPlan {
    const diff = resources.diffFromPredecessor(type);
    const changed = diff.changed.filter((r) => (w.wildcard || w.names.has(r.name)) && w.held.get(r.name) !== r.version);
    const gone = diff.removed.filter((n) => w.held.has(n));
    return { wanted: undefined, changed, gone, missing: [] };
  }

  /** The resources of the type this watch covers: all of them for a wildcard, else those named that exist. */
  private wanted(resources: ProxyResources, type: string, w: Watch): EncodedResource[] {
    const out = new Map<string, EncodedResource>();
    if (w.wildcard) for (const r of resources.all(type)) out.set(r.name, r);
    for (const n of w.names) {
      const r = resources.get(type, n);
      if (r) out.set(n, r);
    }
    return [...out.values()];
  }

  private nonce(): string {
    return randomUUID();
  }

  /** istioctl proxy-status's reading of one type (statusgen.go debugSyncStatus). */
  syncStatus(type: string): string {
    const w = this.watches.get(type);
    if (!w) return "IGNORED";
    if (w.lastError !== undefined) return "ERROR";
    if (w.nonceSent === undefined) return "NOT SENT";
    return w.nonceSent === w.nonceAcked ? "SYNCED" : "STALE";
  }

  describe(): Record<string, unknown> {
    const types: Record<string, unknown> = {};
    for (const [type, w] of this.watches) {
      types[TYPE_SHORT_NAMES[type] ?? type] = {
        status: this.syncStatus(type),
        wildcard: w.wildcard,
        names: [...w.names],
        sent: w.nonceSent,
        acked: w.nonceAcked,
        versionSent: w.versionSent,
        versionAcked: w.versionAcked,
        sentTime: w.sentAt && new Date(w.sentAt).toISOString(),
        ackedTime: w.ackedAt && new Date(w.ackedAt).toISOString(),
        lastError: w.lastError,
        resources: w.held.size,
      };
    }
    return { connectionId: this.id, proxy: this.node.name, proxyType: this.node.type, namespace: this.node.namespace, generator: this.node.generator, istioVersion: this.node.istioVersion, clusterId: this.node.clusterId, address: this.peer, connectedAt: new Date(this.connectedAt).toISOString(), protocol: this.delta ? "delta" : "sotw", types };
  }
}
