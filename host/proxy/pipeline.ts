// The request pipeline. Every request runs these phases, in this order
// (docs/phases.md has the chart):
//
//   1. decode    the listener reads method, authority, path, query and headers
//                into a Downstream (listener-uws.ts, listener-node.ts)
//   2. route     the referenced fields are copied into the Wasm request area and
//                one core call returns route, destination, cluster and endpoint
//   3. filters   (none yet: faults, CORS, rewrites and header edits come here)
//   4. upstream  the request goes to the chosen endpoint through a pooled
//                keep-alive connection; bodies stream both ways with backpressure
//   5. respond   upstream headers and body, or an Envoy-compatible local reply
//
// HOT PATH — change with care: phases 2, 4 and 5 run for every request. No
// closures are created per request here; the Exchange object is the undici
// handler and the listener's event sink.

import { randomBytes, randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import type { Readable } from "node:stream";
import { writeRequest } from "../core/request-fields.js";
import { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST } from "../core/decision.js";
import { headerValue, type Downstream, type DownstreamEvents } from "./downstream.js";
import { connectionListed, isHopByHop, isListenerOwnedResponseHeader } from "./headers.js";
import { applyRequestHeaders, applyResponseHeaders } from "./header-operations.js";
import { isPreflight, originAllowed, preflightHeaders, responseHeaders as corsResponseHeaders } from "./cors.js";
import * as Reply from "./local-reply.js";
import { ReplayableBody } from "./replay-body.js";
import { splitAuthority, urlHost } from "./authority.js";
import type { PassthroughGuard, PassthroughVerdict } from "./passthrough-guard.js";
import type { IdleWatched, StreamIdleTimeout } from "./stream-idle.js";
import type { Snapshot, SnapshotHolder } from "./snapshot.js";
import type { ManagedCluster } from "../cluster/cluster.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import * as L from "../../assembly/layout.js";
import type { ClusterInfo } from "../config/compile.js";
import type { RetryPolicyModel, RouteActionModel } from "../config/model.js";
import type { MatchEntry } from "../core/route-table.js";
import { MAX_TIMER_MS } from "../config/fields.js";

const MILLISECONDS = /^\d{1,15}$/;

/** Envoy's host_selection_retry_max_attempts in Istio's default policy. */
const HOST_SELECTION_ATTEMPTS = 5;

/**
 * An upstream client: h1-upstream.ts and h2-upstream.ts, driving undici's
 * handler callbacks. Unlike undici's, onResponseData's chunk may be borrowed:
 * valid during the call only (see Downstream.sendChunk).
 */
export interface UpstreamClient {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
}

export interface PipelineOptions {
  holder: SnapshotHolder;
  /** Passthrough and shadow traffic without a cluster pool of its own. */
  dispatcher: UpstreamClient;
  /** Decides where passthrough may go: never to this proxy's own ports, loopback only if allowed. */
  passthrough: PassthroughGuard;
  /** Ends requests that move no bytes for the HCM's stream_idle_timeout. */
  streamIdle: StreamIdleTimeout;
  /** Telemetry: told of every attempt, retry and completed request. */
  observer: ExchangeObserver;
  /** A bug surfaced while handling a request: the request got a 500; this logs and counts it. */
  onInternalError(err: Error): void;
}

/** What happens to requests, for stats and the access log. One implementation: host/telemetry. */
export interface ExchangeObserver {
  attempt(ex: Exchange): void;
  /** A copy sent to shadow cluster `cluster`, endpoint `endpoint` (mirroring). */
  shadow(ex: Exchange, cluster: number, endpoint: UpstreamEndpoint): void;
  connectFailure(ex: Exchange): void;
  retry(ex: Exchange): void;
  /** A retry the policy asked for was not made: the request body was streamed, not buffered. */
  retryAbandoned(ex: Exchange): void;
  timeout(ex: Exchange): void;
  /** A circuit breaker refused the request (503 UO). */
  overflow(ex: Exchange): void;
  complete(ex: Exchange): void;
}

/** Per listener: requests in flight and whether it is draining (responses then carry Connection: close). */
export interface ListenerRuntime {
  readonly direction: "outbound" | "inbound";
  inFlight: number;
  draining: boolean;
}

/** A uniform 32-bit value for the route core's weighted and load-balancing picks. */
export function random32(): number {
  return (Math.random() * 0x100000000) >>> 0;
}

/** route()'s answer when the request's fields do not fit the core's request area. */
const FIELDS_TOO_LARGE = -431;

/** Phase 2: copies the referenced fields into the core and decides. Returns the route code or FIELDS_TOO_LARGE. */
function route(snapshot: Snapshot, ds: Downstream): number {
  if (!writeRequest(snapshot.core, snapshot.headerNames, ds)) return FIELDS_TOO_LARGE;
  return snapshot.core.route(random32());
}

/** Entry point from the outbound listener: runs the phases for one request. */
export function handleRequest(options: PipelineOptions, listener: ListenerRuntime, ds: Downstream): Exchange {
  const ex = new Exchange(options, listener, options.holder.current, ds);
  try {
    runPhases(options, ex, ds);
  } catch (err) {
    // A bug must not take the proxy down with it: this request fails, loudly, and the rest go on.
    options.onInternalError(err as Error);
    ex.localReply(Reply.INTERNAL_ERROR);
  }
  return ex;
}

function runPhases(options: PipelineOptions, ex: Exchange, ds: Downstream): void {
  const snapshot = ex.snapshot;
  if (ds.authority === undefined || ds.authority === "") {
    ex.localReply(Reply.MISSING_HOST);
    return;
  }
  const code = route(snapshot, ds);
  const core = snapshot.core;
  ex.routeIndex = code;
  ex.vhost = core.vhost;
  ex.entry = core.entry;
  ex.dest = core.dest;
  ex.cluster = core.cluster;
  if (code >= 0) {
    // The route's cluster, for stats and the access log even when a filter answers (Envoy sets it with the route).
    ex.clusterName = snapshot.config.clusters[ex.cluster]?.name ?? "";
    // Phase 3: filters, in Istio's order: CORS, then fault injection (delay first, then abort).
    const cors = snapshot.config.routes[code]!.cors;
    const origin = cors ? ds.header("origin") : undefined;
    if (cors && origin !== undefined) {
      const allowed = originAllowed(cors, origin, core);
      if (isPreflight(ds)) {
        if (allowed) {
          ex.localReply(Reply.CORS_PREFLIGHT, preflightHeaders(cors, origin));
          return;
        }
        if (!cors.forwardUnmatchedPreflights) {
          ex.localReply(Reply.CORS_PREFLIGHT);
          return;
        }
      } else if (allowed) {
        ex.corsHeaders = corsResponseHeaders(cors, origin);
      }
    }
    const fault = snapshot.config.routes[code]!.fault;
    if (fault?.delay && Math.random() * 100 < fault.delay.percent) {
      ex.addFlag("DI");
      ex.delayTimer = setTimeout(resumeAfterDelay, fault.delay.ms, options, ex);
      return;
    }
    afterDelay(options, ex);
    return;
  }
  switch (code) {
    case RC_NO_VHOST:
      if (snapshot.config.gateway) {
        ex.localReply(Reply.NO_ROUTE); // a gateway serves its VirtualServices' hosts only, as Envoy's 404
      } else if (snapshot.config.settings.outboundTrafficPolicy === "REGISTRY_ONLY") {
        ex.clusterName = "BlackHoleCluster";
        ex.localReply(Reply.BLOCKED_BY_REGISTRY_ONLY);
      } else {
        ex.clusterName = "PassthroughCluster";
        forwardPassthrough(options, ex, ds.authority, 80);
      }
      break;
    case RC_NO_ROUTE:
      ex.localReply(Reply.NO_ROUTE);
      break;
    case RC_NO_CLUSTER:
      ex.localReply(Reply.NO_CLUSTER);
      break;
    case RC_NO_ENDPOINT:
      ex.clusterName = snapshot.config.clusters[ex.cluster]?.name ?? "";
      ex.localReply(Reply.NO_HEALTHY_UPSTREAM);
      break;
    case FIELDS_TOO_LARGE:
      ex.localReply(Reply.HEADERS_TOO_LARGE);
      break;
    default:
      throw new Error(`internal: route core returned unknown code ${code}`);
  }
}

function resumeAfterDelay(options: PipelineOptions, ex: Exchange): void {
  ex.delayTimer = undefined;
  afterDelay(options, ex);
}

/** The rest of phase 3 (fault abort), then the route's action: redirect, direct response or forward (phase 4). */
function afterDelay(options: PipelineOptions, ex: Exchange): void {
  const snapshot = ex.snapshot;
  const ds = ex.ds;
  const info = snapshot.config.routes[ex.routeIndex]!;
  const abort = info.fault?.abort;
  if (abort && Math.random() * 100 < abort.percent) {
    if (abort.grpcStatus !== undefined) {
      ex.localReply(Reply.FAULT_ABORT_GRPC, ["content-type", "application/grpc", "grpc-status", String(abort.grpcStatus), "grpc-message", Reply.FAULT_ABORT_BODY]);
    } else {
      ex.localReply({ ...Reply.FAULT_ABORT_HTTP, status: abort.httpStatus! });
    }
    return;
  }
  if (info.action.kind === "redirect") {
    ex.localReply({ status: info.action.status, flag: "-", body: "", details: "redirect" }, ["location", redirectLocation(ds, info.action)]);
    return;
  }
  if (info.action.kind === "direct") {
    ex.localReply({ status: info.action.status, flag: "-", body: info.action.body, details: "direct_response" });
    return;
  }
  if (info.rewrite?.uri !== undefined) ex.upstreamPath = rewritePath(ds, snapshot.config.table.entries[ex.entry]!, info.rewrite.uri);
  else if (info.rewrite?.uriRegex) ex.upstreamPath = regexRewritePath(ds, snapshot, info.rewrite.uriRegex);
  const cluster = snapshot.config.clusters[ex.cluster]!; // its name is the exchange's since routing
  if (cluster.passthrough) forwardPassthrough(options, ex, ds.authority!, cluster.port);
  else ex.forward(snapshot.core.hashCookieMissing ? withGeneratedCookie(snapshot, ex, cluster) : snapshot.core.endpoint, "");
  for (const m of info.mirrors) if (Math.random() * 100 < m.percent) ex.mirror(m.cluster);
}

/**
 * consistentHash.httpCookie with a ttl and no such cookie on the request: as
 * Envoy, a cookie is generated, the endpoint is picked by its hash, and the
 * response sets it so that the client's next requests stick. Without a ttl the
 * request keeps its random pick. Returns the endpoint to use.
 */
function withGeneratedCookie(snapshot: Snapshot, ex: Exchange, cluster: ClusterInfo): number {
  const lb = cluster.policy.loadBalancer;
  const core = snapshot.core;
  if ((lb.kind !== "RING_HASH" && lb.kind !== "MAGLEV") || lb.key.kind !== "cookie" || lb.key.ttlMs === undefined) return core.endpoint;
  const { name, path, ttlMs } = lb.key;
  const value = randomBytes(8).toString("hex");
  const existing = ex.ds.header("cookie");
  if (!core.set(L.SLOT_FIRST_HEADER + snapshot.headerNames.indexOf("cookie"), existing ? `${existing}; ${name}=${value}` : `${name}=${value}`)) return core.endpoint;
  const endpoint = core.pickEndpoint(ex.cluster, random32());
  if (endpoint < 0) return core.endpoint;
  ex.setCookie = `${name}="${value}"${ttlMs > 0 ? `; Max-Age=${Math.floor(ttlMs / 1000)}` : ""}${path ? `; Path=${path}` : ""}; HttpOnly`;
  return endpoint;
}

/**
 * Envoy's prefix_rewrite as Istio configures it from rewrite.uri: an exact match
 * replaces the whole path, a prefix match replaces the matched prefix, and a
 * route without a URI match is a prefix match on "/". The query is kept.
 */
function rewritePath(ds: Downstream, entry: MatchEntry, replacement: string): string {
  const uri = entry.uri;
  const path = uri?.kind === "exact" ? replacement : replacement + ds.path.slice(uri?.kind === "prefix" ? uri.value.length : 1);
  return ds.query === undefined ? path : `${path}?${ds.query}`;
}

/**
 * Envoy's regex_rewrite from rewrite.uriRegexRewrite: every match in the path
 * (the query excluded, and kept) is substituted; no match leaves the path as it is.
 */
function regexRewritePath(ds: Downstream, snapshot: Snapshot, rx: { program: number; rewrite: (string | number)[] }): string | undefined {
  const path = snapshot.core.regexReplaceAll(rx.program, ds.path, rx.rewrite);
  if (path === undefined) return undefined;
  return ds.query === undefined ? path : `${path}?${ds.query}`;
}

/** The Location of a VirtualService redirect, built from the request as Envoy does. */
function redirectLocation(ds: Downstream, r: Extract<RouteActionModel, { kind: "redirect" }>): string {
  const { host: requestHost, port: requestPort } = splitAuthority(ds.authority ?? "");
  const scheme = r.scheme ?? ds.scheme;
  let port: string | undefined;
  if (r.port !== undefined) port = String(r.port);
  else if (r.derivePort === "FROM_REQUEST_PORT") port = requestPort;
  else if (r.derivePort === undefined && r.authority === undefined && scheme === ds.scheme) port = requestPort;
  const host = r.authority ?? requestHost;
  let path = r.uri ?? ds.path;
  if (!path.includes("?") && ds.query !== undefined) path = `${path}?${ds.query}`;
  return `${scheme}://${host}${port ? `:${port}` : ""}${path}`;
}

/**
 * Original-destination forwarding: the authority names the upstream (port
 * defaulted). The name is resolved and checked by the passthrough guard, and
 * the connection goes to the address it checked (the Host header is kept).
 */
function forwardPassthrough(options: PipelineOptions, ex: Exchange, authority: string, defaultPort: number): void {
  const { host, port: given } = splitAuthority(authority);
  const port = given === undefined ? defaultPort : Number(given);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    ex.localReply(Reply.BAD_REQUEST);
    return;
  }
  options.passthrough.resolve(host, port, (verdict) => passthroughResolved(ex, verdict, port));
}

function passthroughResolved(ex: Exchange, verdict: PassthroughVerdict, port: number): void {
  if (ex.over) return;
  if (verdict.ok) ex.forward(-1, `http://${urlHost(verdict.address)}:${port}`);
  else if (verdict.reason === "unresolvable") ex.localReply(Reply.upstreamReset("connection failure", verdict.detail, false));
  else ex.localReply(verdict.reason === "self" ? Reply.PASSTHROUGH_LOOP : Reply.PASSTHROUGH_LOOPBACK);
}

/**
 * The `server` response header, overwritten as Istio configures Envoy: "istio-envoy" on inbound
 * listeners, Envoy's own "envoy" on outbound ones.
 */
function serverName(listener: ListenerRuntime): string {
  return listener.direction === "inbound" ? "istio-envoy" : "envoy";
}

/** One request in flight: the undici handler for its upstream attempt and the listener's event sink. */
export class Exchange implements DownstreamEvents, IdleWatched {
  readonly startedAt = performance.now();
  readonly startTime = Date.now();
  routeIndex = RC_NO_ROUTE;
  vhost = -1;
  entry = -1;
  /** Global destination index the core chose (header operations), -1 when none. */
  dest = -1;
  /** gRPC status from the response headers or trailers (or a local reply); "" when not gRPC. */
  grpcStatus = "";
  /** A Set-Cookie for a generated consistent-hash cookie, added to the response. */
  setCookie: string | undefined;
  /** Path and query sent upstream when a rewrite changed them. */
  upstreamPath: string | undefined;
  /** access-control-* headers for an allowed CORS origin, added to whatever answers the request. */
  corsHeaders: string[] | undefined;
  /** The fault delay holding this request (flag DI), while it does. */
  delayTimer: NodeJS.Timeout | undefined;
  cluster = -1;
  clusterName = "";
  /** Endpoint counting this request in flight right now (none between attempts). */
  private holding: UpstreamEndpoint | undefined = undefined;
  /** The last endpoint tried, for stats, logs and outlier detection (none, or passthrough). */
  upstreamEndpoint: UpstreamEndpoint | undefined = undefined;
  upstreamHost = "";
  status = 0;
  /** Envoy's response flags in the order they were set (as Envoy >= 1.30 prints them). */
  private readonly flags: string[] = [];
  get flag(): string {
    return this.flags.length === 0 ? "-" : this.flags.join(",");
  }
  addFlag(f: string): void {
    if (f !== "-" && !this.flags.includes(f)) this.flags.push(f);
  }
  details = "";
  transportFailure = "";
  /** x-request-id and x-forwarded-for as sent upstream (for the access log). */
  requestId = "";
  forwardedFor = "";
  /** Milliseconds from the complete request to upstream response headers; -1 when there were none. */
  serviceTimeMs = -1;
  private requestCompleteAt = 0;
  /** Response body bytes and header bytes sent downstream. */
  bytesSent = 0;
  headerBytesSent = 0;
  attempts = 0;
  private origin = "";
  private controller: Dispatcher.DispatchController | undefined;
  private responseStarted = false;
  private finished = false;
  private downstreamAborted = false;

  /** The response is complete or the client is gone: nothing more is to be done for this request. */
  get over(): boolean {
    return this.finished || this.downstreamAborted;
  }
  private tried = 0; // bitmask of cluster endpoint offsets already tried (first 32)
  private routeTimer: NodeJS.Timeout | undefined;
  private tryTimer: NodeJS.Timeout | undefined;
  /** The current attempt; callbacks from superseded attempts are ignored (see Attempt). */
  attemptId = 0;
  private balanced = false; // sent to a cluster endpoint chosen by the core (not passthrough)
  private replayBody: ReplayableBody | undefined; // the request body kept for retries and shadows
  private admittedBy: ManagedCluster | undefined; // the circuit breaker counting the current attempt
  private retriesHeld = 0; // retries counted against the cluster's max_retries until the request ends

  constructor(
    private readonly options: PipelineOptions,
    readonly listener: ListenerRuntime,
    readonly snapshot: Snapshot,
    readonly ds: Downstream,
  ) {
    listener.inFlight++;
    options.streamIdle.add(this);
  }

  idleSeen = 0;
  idleSince = 0;
  idlePrev: IdleWatched | undefined = undefined;
  idleNext: IdleWatched | undefined = undefined;

  activity(): number {
    return this.ds.bodyBytes + this.bytesSent;
  }

  /** No bytes either way for stream_idle_timeout: 408 while the request is incomplete, 504 after, a reset once the response started (Envoy). */
  onStreamIdleTimeout(): void {
    if (this.finished) return;
    if (this.delayTimer !== undefined) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    if (this.responseStarted) {
      this.addFlag("SI");
      this.details = "stream_idle_timeout";
      this.ds.reset();
      this.complete();
    } else {
      this.localReply({ status: this.requestCompleteAt > 0 ? 504 : 408, flag: "SI", body: "stream timeout", details: "stream_idle_timeout" });
    }
    this.controller?.abort(new Error("stream idle timeout"));
  }

  // ── phase 4: upstream ────────────────────────────────────────────────────

  /** Sends the request to global endpoint `endpoint`, or to `origin` when passthrough (endpoint -1). */
  forward(endpoint: number, origin: string): void {
    this.attempts++;
    const ep = endpoint >= 0 ? this.snapshot.endpoints[endpoint] : undefined;
    this.holding = ep;
    this.upstreamEndpoint = ep;
    this.balanced = ep !== undefined;
    if (ep) {
      this.origin = ep.origin;
      this.upstreamHost = ep.hostPort;
      ep.acquire();
      const offset = endpoint - this.snapshot.core.clusterStart(this.cluster);
      if (offset < 32) this.tried |= 1 << offset;
    } else {
      this.origin = origin;
      this.upstreamHost = origin.slice("http://".length);
    }
    let opts: Dispatcher.DispatchOptions;
    try {
      const body = this.ds.hasBody ? this.attemptBody() : null;
      // Envoy's route timeout runs from the end of the request to the end of the response, across attempts.
      if (this.attempts === 1) {
        if (body) body.once("end", () => this.requestComplete());
        else this.requestComplete();
      }
      opts = {
        origin: this.origin,
        method: this.ds.method as Dispatcher.HttpMethod,
        path: this.upstreamPath ?? (this.ds.query === undefined ? this.ds.path : `${this.ds.path}?${this.ds.query}`),
        headers: this.upstreamHeaders(),
        body,
        headersTimeout: 0,
        bodyTimeout: 0,
      };
    } catch {
      this.release();
      this.localReply(Reply.BAD_REQUEST);
      return;
    }
    const runtime = this.cluster >= 0 ? this.snapshot.clusters[this.cluster] : undefined;
    if (runtime) {
      if (!runtime.breaker.admit()) {
        this.release();
        this.options.observer.overflow(this);
        this.localReply(Reply.UPSTREAM_OVERFLOW, ["x-envoy-overloaded", "true"]);
        return;
      }
      this.admittedBy = runtime;
    }
    this.options.observer.attempt(this);
    const attempt = new Attempt(this, ++this.attemptId);
    const perTry = this.timeouts().perTryMs;
    if (perTry > 0) this.tryTimer = setTimeout(perTryTimeout, perTry, this, this.attemptId);
    try {
      (runtime?.dispatcher ?? this.options.dispatcher).dispatch(opts, attempt);
    } catch (err) {
      // An origin undici cannot parse (a passthrough authority such as "a b") is the client's error.
      this.release();
      this.details = (err as Error).message;
      this.localReply(Reply.BAD_REQUEST);
    }
  }

  private upstreamHeaders(): string[] {
    const h = this.ds.headers;
    const out: string[] = [];
    const listed = connectionListed(headerValue(h, "connection"));
    let forwardedFor: string | undefined;
    let hasProto = false;
    let hasRequestId = false;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      const value = h[i + 1]!;
      if (isHopByHop(name)) {
        // "te: trailers" is end-to-end in practice (gRPC relies on it).
        if (name === "te" && value.toLowerCase() === "trailers") out.push(name, value);
        continue;
      }
      if (listed?.has(name)) continue;
      if (name === "x-forwarded-for") {
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
        continue;
      }
      if (name === "x-envoy-attempt-count" || name === "x-envoy-upstream-rq-timeout-ms" || name === "x-envoy-upstream-rq-per-try-timeout-ms" || name === "x-envoy-expected-rq-timeout-ms") continue;
      if (name === "x-forwarded-proto") hasProto = true;
      else if (name === "x-request-id") {
        hasRequestId = true;
        this.requestId = value;
      }
      out.push(name, value);
    }
    const client = this.ds.remoteAddress;
    this.forwardedFor = forwardedFor === undefined ? client : `${forwardedFor}, ${client}`;
    out.push("x-forwarded-for", this.forwardedFor);
    if (!hasProto) out.push("x-forwarded-proto", this.ds.scheme);
    if (!hasRequestId) {
      // Generated once: every attempt of a request carries the same id, as with Envoy.
      if (this.requestId === "") this.requestId = randomUUID();
      out.push("x-request-id", this.requestId);
    }
    out.push("x-envoy-attempt-count", String(this.attempts));
    // What the upstream may expect, as Envoy's router tells it: the per-try timeout, else the route's.
    const { routeMs, perTryMs } = this.timeouts();
    if (perTryMs > 0 || routeMs > 0) out.push("x-envoy-expected-rq-timeout-ms", String(perTryMs > 0 ? perTryMs : routeMs));
    if (this.routeIndex >= 0) {
      const route = this.snapshot.config.routes[this.routeIndex]!;
      if (this.upstreamPath !== undefined) out.push("x-envoy-original-path", this.ds.query === undefined ? this.ds.path : `${this.ds.path}?${this.ds.query}`);
      if (route.rewrite?.authority !== undefined) {
        for (let i = 0; i < out.length; i += 2) if (out[i] === "host") out[i + 1] = route.rewrite.authority;
      }
      applyRequestHeaders(out, this.snapshot.config.destinations[this.dest]?.headers, route.headers);
    }
    return out;
  }

  /**
   * The request body for this attempt. When the route may retry or mirror, the
   * body is kept (up to REPLAY_BUFFER_LIMIT) so that it can be sent again.
   */
  private attemptBody(): Readable | null {
    if (this.attempts === 1) {
      const info = this.routeIndex >= 0 ? this.snapshot.config.routes[this.routeIndex]! : undefined;
      const replay = this.balanced && info !== undefined && (this.retryPolicy().attempts > 1 || info.mirrors.length > 0);
      if (!replay) return this.ds.body();
      this.replayBody = new ReplayableBody(this.ds.body(), () => this.options.observer.retryAbandoned(this));
    }
    return this.replayBody?.forAttempt() ?? null;
  }

  /**
   * Sends a fire-and-forget copy to a shadow cluster (Envoy's request mirroring):
   * its response is discarded and nothing about it touches this request. The
   * authority is kept as is (Istio >= 1.28 no longer appends "-shadow"). A
   * body larger than the replay buffer cannot be copied: that shadow is
   * skipped and counted, as Envoy's retry_or_shadow_abandoned.
   */
  mirror(cluster: number): void {
    if (cluster < 0) return;
    let body: Readable | null = null;
    if (this.ds.hasBody) {
      body = this.replayBody?.forShadow() ?? null;
      if (!body) {
        this.options.observer.retryAbandoned(this);
        return;
      }
    }
    const endpoint = this.snapshot.endpoints[this.snapshot.core.pickEndpoint(cluster, random32())];
    if (!endpoint) return;
    const path = this.upstreamPath ?? (this.ds.query === undefined ? this.ds.path : `${this.ds.path}?${this.ds.query}`);
    // The shadow cluster's own pool and TLS settings, and its stats, as Envoy's shadow requests use them.
    this.options.observer.shadow(this, cluster, endpoint);
    try {
      (this.snapshot.clusters[cluster]?.dispatcher ?? this.options.dispatcher).dispatch(
        { origin: endpoint.origin, method: this.ds.method as Dispatcher.HttpMethod, path, headers: this.upstreamHeaders(), body, headersTimeout: 0, bodyTimeout: 0 },
        SHADOW,
      );
    } catch {
      /* a shadow never fails the request */
    }
  }

  private timeoutsOf: { routeMs: number; perTryMs: number } | undefined;

  /**
   * The route's timeout and per-try timeout, or what x-envoy-upstream-rq-timeout-ms and
   * x-envoy-upstream-rq-per-try-timeout-ms say instead (0: none), as Envoy's router reads them.
   * A per-try timeout not shorter than the route's is dropped.
   */
  private timeouts(): { routeMs: number; perTryMs: number } {
    if (this.timeoutsOf) return this.timeoutsOf;
    const route = this.routeIndex >= 0 ? this.snapshot.config.routes[this.routeIndex] : undefined;
    let routeMs = route?.timeoutMs ?? 0;
    let perTryMs = route?.retry.perTryTimeoutMs ?? 0;
    const header = this.ds.header("x-envoy-upstream-rq-timeout-ms");
    if (header !== undefined && MILLISECONDS.test(header)) routeMs = Math.min(Number(header), MAX_TIMER_MS);
    const perTryHeader = this.ds.header("x-envoy-upstream-rq-per-try-timeout-ms");
    if (perTryHeader !== undefined && MILLISECONDS.test(perTryHeader)) perTryMs = Math.min(Number(perTryHeader), MAX_TIMER_MS);
    if (routeMs > 0 && perTryMs >= routeMs) perTryMs = 0;
    return (this.timeoutsOf = { routeMs, perTryMs });
  }

  /** The whole request has been read (the router's "downstream request complete"): the route timeout and the service time start. */
  private requestComplete(): void {
    this.requestCompleteAt = performance.now();
    this.startRouteTimeout();
  }

  private startRouteTimeout(): void {
    const ms = this.timeouts().routeMs;
    if (ms > 0 && !this.finished) this.routeTimer = setTimeout(routeTimeout, ms, this);
  }

  /** The route timeout ran out: 504 UT before the response started, a reset after (as Envoy). */
  onRouteTimeout(): void {
    this.routeTimer = undefined;
    if (this.finished) return;
    this.options.observer.timeout(this);
    if (this.responseStarted) {
      this.addFlag("UT");
      this.details = "response_timeout";
      this.ds.reset();
      this.complete();
    } else {
      this.localReply(Reply.UPSTREAM_TIMEOUT);
    }
    // After the reply: aborting calls onResponseError at once, which must find the exchange finished.
    this.controller?.abort(new Error("upstream request timeout"));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.downstreamAborted) controller.abort(new Error("downstream aborted"));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx interim responses are not relayed; after a local reply (route timeout) nothing is.
    if (statusCode < 200 || this.downstreamAborted || this.finished) return;
    clearTimeout(this.tryTimer);
    this.reportOutlier(statusCode);
    if (this.retriableResponse(statusCode, headers)) {
      if (this.mayRetry()) {
        this.supersedeAttempt("retrying a retriable response");
        this.scheduleRetry();
        return;
      }
      this.retryLimitHit();
    }
    this.responseStarted = true;
    this.status = statusCode;
    const grpc = headers["grpc-status"];
    if (typeof grpc === "string") this.grpcStatus = grpc;
    const out: string[] = [];
    let contentLength = -1;
    const listed = connectionListed(headers.connection as string | undefined);
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (name === "content-length") {
        contentLength = Number(value);
        continue;
      }
      if (isListenerOwnedResponseHeader(name) || listed?.has(name) || name === "server") continue;
      if (typeof value === "string") out.push(name, value);
      else for (const v of value) out.push(name, v);
    }
    // Envoy measures from the router's view of the complete request (after a fault delay, including
    // retries), and leaves the header out when the upstream answered before the request was all read.
    if (this.requestCompleteAt > 0) {
      this.serviceTimeMs = Math.round(performance.now() - this.requestCompleteAt);
      out.push("x-envoy-upstream-service-time", String(this.serviceTimeMs));
    }
    out.push("server", serverName(this.listener));
    this.applyRouteResponseHeaders(out);
    if (this.setCookie) out.push("set-cookie", this.setCookie);
    if (this.corsHeaders) applyCors(out, this.corsHeaders);
    if (this.listener.draining) out.push("connection", "close");
    this.headerBytesSent = headerWireBytes(out);
    const bodyless = this.ds.method === "HEAD" || statusCode === 204 || statusCode === 304;
    this.ds.sendHead(statusCode, out, contentLength, bodyless);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.downstreamAborted || this.finished) return;
    this.bytesSent += chunk.length;
    if (!this.ds.sendChunk(chunk)) controller.pause();
  }

  onResponseEnd(trailers?: Record<string, string | string[] | undefined>): void {
    const grpc = trailers?.["grpc-status"];
    if (typeof grpc === "string") this.grpcStatus = grpc;
    if (!this.downstreamAborted && !this.finished) this.ds.sendEnd(trailers);
    this.complete();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.release();
    if (this.finished) return; // answered already (route timeout)
    if (this.downstreamAborted) {
      this.addFlag("DC");
      this.complete();
      return;
    }
    if (this.responseStarted) {
      // Too late for a local reply: the client sees the reset, as with Envoy.
      this.addFlag("UR");
      this.ds.reset();
      this.complete();
      return;
    }
    clearTimeout(this.tryTimer);
    this.reportOutlier("localFailure");
    const connectFailure = isConnectFailure(err);
    this.transportFailure = transportFailure(err) ?? "";
    if (connectFailure) this.options.observer.connectFailure(this);
    const on = this.retryPolicy().on;
    const retriable = (connectFailure && on.connectFailure) || on.fiveXx || on.gatewayError || on.reset;
    if (retriable && this.mayRetry()) {
      this.scheduleRetry();
      return;
    }
    if (retriable) this.retryLimitHit();
    const kind = connectFailure ? "connection failure" : isProtocolError(err) ? "protocol error" : "connection termination";
    this.localReply(Reply.upstreamReset(kind, kind === "protocol error" ? undefined : this.transportFailure || undefined, this.attempts > 1));
  }

  private retryPolicy(): RetryPolicyModel {
    return this.routeIndex >= 0 ? this.snapshot.config.routes[this.routeIndex]!.retry : NO_RETRY;
  }

  /** Does the route's retryOn ask for a retry of this response? */
  private retriableResponse(status: number, headers: Record<string, string | string[] | undefined>): boolean {
    const on = this.retryPolicy().on;
    if (on.fiveXx && status >= 500) return true;
    if (on.gatewayError && status >= 502 && status <= 504) return true;
    if (on.retriable4xx && status === 409) return true;
    if (on.statusCodes.includes(status)) return true;
    if (on.grpcStatuses.length > 0) {
      const g = headers["grpc-status"];
      if (typeof g === "string" && on.grpcStatuses.includes(Number(g))) return true;
    }
    return false;
  }

  /** Attempts left, and a request that can be sent again: a body past the replay buffer cannot. */
  private mayRetry(): boolean {
    if (this.attempts >= this.retryPolicy().attempts || !this.balanced) return false;
    if (this.ds.hasBody && (!this.replayBody || this.replayBody.overflowed)) {
      this.options.observer.retryAbandoned(this);
      return false;
    }
    // Envoy's max_retries: retries outstanding to the cluster; over it, the response passes through, flagged UO.
    if (!this.snapshot.clusters[this.cluster]!.breaker.admitRetry()) {
      this.addFlag("UO");
      return false;
    }
    this.retriesHeld++;
    return true;
  }

  private scheduleRetry(): void {
    this.options.observer.retry(this);
    // Envoy's backoff: fully jittered exponential from the base interval, capped at 10 times it.
    const base = this.retryPolicy().backoffMs;
    const delay = Math.random() * Math.min(10 * base, base * (2 ** this.attempts - 1));
    setTimeout(retryExchange, delay, this);
  }

  /** Leaves the current attempt behind: its slot is released and its late callbacks are ignored. */
  private supersedeAttempt(reason: string): void {
    const controller = this.controller;
    this.attemptId++;
    this.controller = undefined;
    clearTimeout(this.tryTimer);
    this.release();
    controller?.abort(new Error(reason));
  }

  /** Envoy's per_try_timeout: the attempt is abandoned; retried if retryOn allows, else 504 UT. */
  onPerTryTimeout(attemptId: number): void {
    if (attemptId !== this.attemptId || this.finished || this.responseStarted) return;
    this.options.observer.timeout(this);
    this.reportOutlier("localFailure");
    this.supersedeAttempt("per-try timeout");
    const on = this.retryPolicy().on;
    const retriable = on.fiveXx || on.gatewayError || on.reset;
    if (retriable && this.mayRetry()) {
      this.scheduleRetry();
      return;
    }
    if (retriable) this.retryLimitHit();
    this.localReply(Reply.PER_TRY_TIMEOUT);
  }

  /** The retry policy wanted another attempt and none was left: flag URX (when there were retries at all). */
  private retryLimitHit(): void {
    if (this.attempts > 1) this.addFlag("URX");
  }

  /** A retry: prefer an endpoint not tried yet (Envoy's previous_hosts predicate). */
  retry(): void {
    if (this.finished) return; // the route timeout ran out during the backoff
    if (this.downstreamAborted) {
      this.complete();
      return;
    }
    const core = this.snapshot.core;
    const start = core.clusterStart(this.cluster);
    let next = -1;
    const attempts = this.retryPolicy().avoidPreviousHosts ? HOST_SELECTION_ATTEMPTS : 1;
    for (let i = 0; i < attempts; i++) {
      next = core.pickEndpoint(this.cluster, random32());
      const offset = next - start;
      if (next < 0 || offset >= 32 || (this.tried & (1 << offset)) === 0) break;
    }
    if (next < 0) {
      this.localReply(Reply.NO_HEALTHY_UPSTREAM);
      return;
    }
    this.forward(next, "");
  }

  // ── phase 5: respond ─────────────────────────────────────────────────────

  /** Answers without the upstream. `extraHeaders` (a redirect's location) come before the route's operations. */
  localReply(reply: Reply.LocalReply, extraHeaders?: string[]): void {
    this.addFlag(reply.flag);
    this.details = reply.details;
    // Envoy's HCM gives every request its x-request-id before routing, so local replies log one too (not a missing Host's 400, which comes first).
    if (this.requestId === "" && reply !== Reply.MISSING_HOST) this.requestId = this.ds.header("x-request-id") ?? randomUUID();
    // A gRPC client gets Envoy's gRPC form: 200 with grpc-status (mapped from the HTTP status) and grpc-message.
    const grpc = !extraHeaders?.includes("grpc-status") && this.ds.header("content-type")?.startsWith("application/grpc");
    if (grpc) {
      extraHeaders = [...(extraHeaders ?? []), "content-type", "application/grpc", "grpc-status", String(Reply.grpcStatusFor(reply.status)), "grpc-message", Reply.grpcMessage(String(reply.body))];
      reply = { ...reply, status: 200, body: "" };
    }
    this.status = reply.status;
    const g = extraHeaders?.indexOf("grpc-status") ?? -1;
    if (g >= 0) this.grpcStatus = extraHeaders![g + 1]!;
    if (!this.downstreamAborted) {
      const headers = reply.body.length > 0 ? ["content-type", "text/plain"] : [];
      if (extraHeaders) headers.push(...extraHeaders);
      headers.push("server", serverName(this.listener));
      this.applyRouteResponseHeaders(headers);
      if (this.corsHeaders) applyCors(headers, this.corsHeaders);
      if (this.listener.draining) headers.push("connection", "close");
      this.ds.sendLocal(reply.status, headers, reply.body);
      this.bytesSent = Buffer.byteLength(reply.body);
      this.headerBytesSent = headerWireBytes(headers);
    }
    this.complete();
  }

  /** The matched route's (and destination's) response header operations; Envoy applies them to its local replies too. */
  private applyRouteResponseHeaders(headers: string[]): void {
    if (this.routeIndex < 0) return;
    applyResponseHeaders(headers, this.snapshot.config.destinations[this.dest]?.headers, this.snapshot.config.routes[this.routeIndex]!.headers);
  }

  onDownstreamAborted(): void {
    if (this.delayTimer !== undefined) {
      // The client left while a fault delay held the request: nothing went upstream yet.
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
      this.downstreamAborted = true;
      this.addFlag("DC");
      this.complete();
      return;
    }
    this.downstreamAborted = true;
    this.controller?.abort(new Error("downstream aborted"));
  }

  onDownstreamWritable(): void {
    this.controller?.resume();
  }

  /** Gives back the endpoint's in-flight slot (once per attempt). */
  private release(): void {
    if (this.holding) {
      this.holding.release();
      this.holding = undefined;
    }
    if (this.admittedBy) {
      this.admittedBy.breaker.finish();
      this.admittedBy = undefined;
    }
  }

  /** Tells the cluster's outlier detector how the attempt on the current endpoint went. */
  private reportOutlier(status: number | "localFailure"): void {
    const host = this.upstreamEndpoint;
    const outlier = host && this.cluster >= 0 ? this.snapshot.clusters[this.cluster]!.outlier : undefined;
    if (!outlier || !host) return;
    if (status === "localFailure") outlier.reportLocalFailure(host);
    else outlier.reportStatus(host, status);
  }

  private complete(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.retriesHeld > 0) {
      const breaker = this.snapshot.clusters[this.cluster]!.breaker;
      for (; this.retriesHeld > 0; this.retriesHeld--) breaker.finishRetry();
    }
    clearTimeout(this.routeTimer);
    this.options.streamIdle.delete(this);
    this.release();
    this.listener.inFlight--;
    this.options.observer.complete(this);
  }
}

/**
 * Bytes of a response head as sent: status line, the headers given, framing
 * (content-length or transfer-encoding) and the blank line. Date and server
 * headers the listener adds are left out.
 */
function headerWireBytes(headers: string[]): number {
  let n = "HTTP/1.1 200 OK\r\n".length + "content-length: 0000\r\n".length + 2;
  for (let i = 0; i < headers.length; i += 2) n += headers[i]!.length + headers[i + 1]!.length + 4;
  return n;
}

/** CORS headers replace any the upstream sent (Envoy's filter sets them). */
function applyCors(headers: string[], cors: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i]!.startsWith("access-control-")) headers.splice(i, 2);
  headers.push(...cors);
}

/** Discards a shadow request's response, whatever happens to it. */
const SHADOW: Dispatcher.DispatchHandler = {
  onRequestStart() {},
  onResponseStart() {},
  onResponseData() {},
  onResponseEnd() {},
  onResponseError() {},
};

/** No retries: routes answered without an upstream, and inbound traffic. */
const NO_RETRY: RetryPolicyModel = { attempts: 1, perTryTimeoutMs: 0, on: { fiveXx: false, gatewayError: false, reset: false, connectFailure: false, retriable4xx: false, statusCodes: [], grpcStatuses: [] }, backoffMs: 25, avoidPreviousHosts: true };

/**
 * undici's handler for one upstream attempt. It passes callbacks on while it is
 * the exchange's current attempt; once superseded (a retry, a per-try timeout)
 * its late callbacks are dropped, so they cannot touch the next attempt.
 */
class Attempt implements Dispatcher.DispatchHandler {
  constructor(
    private readonly ex: Exchange,
    private readonly id: number,
  ) {}
  private get current(): boolean {
    return this.ex.attemptId === this.id;
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.current) this.ex.onRequestStart(controller);
    else controller.abort(new Error("superseded attempt"));
  }
  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.current) this.ex.onResponseStart(controller, statusCode, headers);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.current) this.ex.onResponseData(controller, chunk);
  }
  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.current) this.ex.onResponseEnd(trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.current) this.ex.onResponseError(controller, err);
  }
}

function perTryTimeout(ex: Exchange, attemptId: number): void {
  ex.onPerTryTimeout(attemptId);
}

function routeTimeout(ex: Exchange): void {
  ex.onRouteTimeout();
}

function retryExchange(ex: Exchange): void {
  ex.retry();
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT", "EADDRNOTAVAIL"]);

/** Certificate and handshake failures of TLS origination: connect failures, as Envoy reports them. */
const TLS_ERROR = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/;

function isConnectFailure(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code !== undefined && (CONNECT_ERRORS.has(code) || TLS_ERROR.test(code));
}

/** A malformed upstream response (the HTTP/1.1 parser's HPE_* codes, an oversized head): Envoy's 502 UPE. */
function isProtocolError(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code !== undefined && (code.startsWith("HPE_") || code === "UND_ERR_HEADERS_OVERFLOW");
}

/** Envoy's transport failure reason, e.g. "delayed connect error: 111" for a refused connection. */
function transportFailure(err: Error): string | undefined {
  const code = (err as { code?: string }).code;
  if (code === "ECONNREFUSED") return "delayed connect error: 111";
  if (code === "UND_ERR_CONNECT_TIMEOUT") return "connect timeout";
  if (code !== undefined && TLS_ERROR.test(code)) return `TLS_error:${code}: ${err.message}`;
  return code;
}
