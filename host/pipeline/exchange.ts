// One request in flight (the Exchange): the per-request context every stage
// reads and writes, the upstream client's handler for its attempts, and the
// listener's event sink. The stages around it: route.ts (phase 2),
// filter-chain.ts and host/filters (phase 3), router.ts, passthrough.ts and
// mirror.ts (phase 4's entry); here are the attempts themselves, with their
// retries (the decisions in retry-policy.ts), timeouts (timeouts.ts), circuit
// breaking and outlier reports, and phase 5, the response or a local reply.
//
// HOT PATH — change with care: no closures are created per request here.

import { randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import type { Readable } from "node:stream";
import { RC_NO_ROUTE } from "../core/decision.js";
import type { RouteCore } from "../core/route-core.js";
import type { MatchEntry } from "../core/route-table.js";
import { NO_RETRY, type RouteInfo } from "../config/compile.js";
import type { HeadersModel, RetryPolicyModel } from "../config/model.js";
import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { FilterContext } from "../filters/filter.js";
import { applyResponseHeaders } from "../filters/header-operations.js";
import * as Reply from "../http/local-reply.js";
import type { Downstream, DownstreamEvents } from "../listeners/downstream.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { Snapshot } from "../proxy/snapshot.js";
import type { ExchangeRecord } from "../telemetry/record.js";
import type { SnapshotStats } from "../telemetry/snapshot-stats.js";
import type { PipelineOptions } from "./options.js";
import { random32 } from "./random.js";
import { ReplayableBody } from "./replay-body.js";
import { Attempt, type AttemptTarget } from "./attempt.js";
import { applyCors, headerWireBytes, relayedHeaders, serverName } from "./respond.js";
import { backoffMs, HOST_SELECTION_ATTEMPTS, retriableFailure, retriableResponse, retriableTimeout } from "./retry-policy.js";
import type { IdleWatched } from "./stream-idle.js";
import { requestTimeouts, type RequestTimeouts } from "./timeouts.js";
import { isConnectFailure, isProtocolError, transportFailure } from "./upstream-errors.js";
import { UpstreamAttempts } from "./upstream-attempts.js";
import type { WasmExchange, WasmStage } from "./wasm-stage.js";
import { upstreamRequestHeaders } from "./upstream-request.js";
import { PEER_METADATA, PEER_METADATA_ID, type PeerInfo } from "../security/peer-metadata.js";
import type { UpstreamClient, UpstreamIdentity } from "./options.js";

/** One request in flight: the undici handler for its upstream attempt and the listener's event sink. */
export class Exchange implements DownstreamEvents, IdleWatched, ExchangeRecord, FilterContext, AttemptTarget, WasmExchange {
  // ── The record telemetry and the access log read (ExchangeRecord) ─────────
  readonly startedAt = performance.now();
  readonly startTime = Date.now();
  /** The route core's decision: virtual host, match entry, route, global destination (header operations), cluster; -1 when none. */
  vhost = -1;
  entry = -1;
  routeIndex = RC_NO_ROUTE;
  dest = -1;
  cluster = -1;
  clusterName = "";
  /** The last endpoint tried, for stats, logs and outlier detection (none, or passthrough), and where it went. */
  upstreamEndpoint: UpstreamEndpoint | undefined = undefined;
  upstreamHost = "";
  status = 0;
  /** gRPC status from the response headers or trailers (or a local reply); "" when not gRPC. */
  grpcStatus = "";
  details = "";
  transportFailure = "";
  /** x-request-id and x-forwarded-for as sent upstream. */
  requestId = "";
  forwardedFor = "";
  /** Milliseconds from the complete request to upstream response headers; -1 when there were none. */
  serviceTimeMs = -1;
  /** Response body bytes and header bytes sent downstream. */
  bytesSent = 0;
  headerBytesSent = 0;
  /** Istio's metadata exchange: who called (inbound, from the request) and who answered (outbound, from the response). */
  downstreamPeer: PeerInfo | undefined = undefined;
  upstreamPeer: PeerInfo | undefined = undefined;
  /** The upstream connection's mutual-TLS identities (peer and ours), "" without. */
  upstreamPrincipal = "";
  localPrincipal = "";
  /** Envoy's response flags in the order they were set (as Envoy >= 1.30 prints them). */
  private readonly flags: string[] = [];
  get flag(): string {
    return this.flags.length === 0 ? "-" : this.flags.join(",");
  }
  addFlag(f: string): void {
    if (f !== "-" && !this.flags.includes(f)) this.flags.push(f);
  }

  // ── What the filters leave for the router and the response (FilterContext) ─
  /** Path and query sent upstream when a rewrite changed them. */
  upstreamPath: string | undefined;
  /** access-control-* headers for an allowed CORS origin, added to whatever answers the request. */
  corsHeaders: string[] | undefined;
  /** A Set-Cookie for a generated consistent-hash cookie, added to the response. */
  setCookie: string | undefined;
  /** The fault delay holding this request (flag DI), while it does; pauseMs is how long a pausing filter asked for. */
  delayTimer: NodeJS.Timeout | undefined;
  pauseMs = 0;
  /** Inbound: the caller sent its metadata, so the response carries this workload's. */
  answerPeerMetadata = false;
  /** The request's Proxy-Wasm plugins, when any apply (wasm-stage.ts). */
  wasm: WasmStage | undefined = undefined;

  // ── Upstream (phase 4) ────────────────────────────────────────────────────
  /** The client for a request without a cluster (forward(-1, …)); the pipeline's passthrough client when unset. */
  directClient: UpstreamClient | undefined = undefined;
  /** The attempts upstream: the current one's controller, timer and what it holds; the endpoints tried; retries held. */
  readonly upstream = new UpstreamAttempts();
  private replayBody: ReplayableBody | undefined; // the request body kept for retries and shadows
  /** When the whole request had been read (the route timeout and the service time run from there); 0 before. */
  private requestCompleteAt = 0;
  private routeTimer: NodeJS.Timeout | undefined;

  // ── Where the response stands (phase 5) ───────────────────────────────────
  private responseStarted = false;
  /** The response head went to the client: a later failure can only reset the stream. */
  private headSent = false;
  private finished = false;
  private downstreamAborted = false;

  /** The response is complete or the client is gone: nothing more is to be done for this request. */
  get over(): boolean {
    return this.finished || this.downstreamAborted;
  }

  constructor(
    readonly options: PipelineOptions,
    readonly listener: ListenerRuntime,
    readonly snapshot: Snapshot,
    /** The request; a Proxy-Wasm plugin that edits it puts an EditedDownstream in its place (wasm-stage.ts). */
    public ds: Downstream,
  ) {
    listener.inFlight++;
    options.streamIdle.add(this);
  }

  /** The matched route (routeIndex >= 0 only). */
  get route(): RouteInfo {
    return this.snapshot.config.routes[this.routeIndex]!;
  }
  get matchEntry(): MatchEntry {
    return this.snapshot.config.table.entries[this.entry]!;
  }
  get core(): RouteCore {
    return this.snapshot.core;
  }
  get routeName(): string {
    return this.entry >= 0 ? this.snapshot.config.entries[this.entry]!.name : "";
  }
  /** The chosen destination's header operations (a weighted destination's own headers). */
  get destinationHeaders(): HeadersModel | undefined {
    return this.snapshot.config.destinations[this.dest]?.headers;
  }
  get stats(): SnapshotStats {
    return this.snapshot.stats;
  }
  /** Attempts sent upstream so far (x-envoy-attempt-count). */
  get attempts(): number {
    return this.upstream.count;
  }
  /** The current attempt's number (attempt.ts drops callbacks of the others). */
  get attemptId(): number {
    return this.upstream.id;
  }
  /** This workload's metadata goes with requests to the mesh's clusters (not to passthrough destinations). */
  get peerMetadataOut(): { id: string; value: string } | undefined {
    return this.cluster >= 0 && this.listener.direction === "outbound" ? this.options.localMetadata : undefined;
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
    this.upstream.abort("stream idle timeout");
  }

  // ── phase 4: upstream ────────────────────────────────────────────────────

  /** Sends the request to global endpoint `endpoint`, or to `origin` when passthrough (endpoint -1). */
  forward(endpoint: number, origin: string): void {
    const up = this.upstream;
    const ep = endpoint >= 0 ? this.snapshot.endpoints[endpoint] : undefined;
    this.upstreamEndpoint = ep;
    if (ep) {
      up.start(ep, endpoint - this.snapshot.core.clusterStart(this.cluster), ep.origin);
      this.upstreamHost = ep.hostPort;
    } else {
      up.start(undefined, 0, origin);
      this.upstreamHost = origin.slice("http://".length);
    }
    let opts: Dispatcher.DispatchOptions;
    try {
      const body = this.ds.hasBody ? this.attemptBody() : null;
      // Envoy's route timeout runs from the end of the request to the end of the response, across attempts.
      if (up.count === 1) {
        if (body) body.once("end", () => this.requestComplete());
        else this.requestComplete();
      }
      opts = {
        origin: up.origin,
        method: this.ds.method as Dispatcher.HttpMethod,
        path: this.upstreamPath ?? (this.ds.query === undefined ? this.ds.path : `${this.ds.path}?${this.ds.query}`),
        headers: upstreamRequestHeaders(this),
        body,
        headersTimeout: 0,
        bodyTimeout: 0,
      };
    } catch {
      up.release();
      this.localReply(Reply.BAD_REQUEST);
      return;
    }
    const runtime = this.cluster >= 0 ? this.snapshot.clusters[this.cluster] : undefined;
    if (runtime && !up.admit(runtime)) {
      up.release();
      this.options.observer.overflow(this);
      this.localReply(Reply.UPSTREAM_OVERFLOW, ["x-envoy-overloaded", "true"]);
      return;
    }
    this.options.observer.attempt(this);
    const attempt = new Attempt(this, ++up.id);
    const perTry = this.timeouts().perTryMs;
    if (perTry > 0) up.armTryTimeout(perTry, perTryTimeout, this);
    try {
      (runtime?.dispatcher ?? this.directClient ?? this.options.dispatcher).dispatch(opts, attempt);
    } catch (err) {
      // An origin undici cannot parse (a passthrough authority such as "a b") is the client's error.
      up.release();
      this.details = (err as Error).message;
      this.localReply(Reply.BAD_REQUEST);
    }
  }

  /**
   * The request body for this attempt. When the route may retry or mirror, the
   * body is kept (up to REPLAY_BUFFER_LIMIT) so that it can be sent again.
   */
  private attemptBody(): Readable | null {
    if (this.upstream.count === 1) {
      const info = this.routeIndex >= 0 ? this.snapshot.config.routes[this.routeIndex]! : undefined;
      const replay = this.upstream.balanced && info !== undefined && (this.retryPolicy().attempts > 1 || info.mirrors.length > 0);
      if (!replay) return this.ds.body();
      this.replayBody = new ReplayableBody(this.ds.body(), () => this.options.observer.retryAbandoned(this));
    }
    return this.replayBody?.forAttempt() ?? null;
  }

  /** The request body for a shadow (mirroring): a replay of the kept body; null when it outgrew the buffer. */
  shadowBody(): Readable | null {
    return this.replayBody?.forShadow() ?? null;
  }

  private timeoutsOf: RequestTimeouts | undefined;

  /** The request's route and per-try timeouts (timeouts.ts), read once. */
  timeouts(): RequestTimeouts {
    return (this.timeoutsOf ??= requestTimeouts(this.routeIndex >= 0 ? this.route : undefined, this.ds));
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
    this.upstream.abort("upstream request timeout");
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.upstream.controller = controller;
    if (this.downstreamAborted) controller.abort(new Error("downstream aborted"));
  }

  onResponseStart(controller: Dispatcher.DispatchController & UpstreamIdentity, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx interim responses are not relayed; after a local reply (route timeout) nothing is.
    if (statusCode < 200 || this.downstreamAborted || this.finished) return;
    this.upstream.stopTryTimeout();
    this.reportOutlier(statusCode);
    if (retriableResponse(this.retryPolicy(), statusCode, headers)) {
      if (this.mayRetry()) {
        this.upstream.supersede("retrying a retriable response");
        this.scheduleRetry();
        return;
      }
      this.retryLimitHit();
    }
    this.responseStarted = true;
    this.status = statusCode;
    const grpc = headers["grpc-status"];
    if (typeof grpc === "string") this.grpcStatus = grpc;
    const mx = headers[PEER_METADATA];
    if (typeof mx === "string" && this.listener.direction === "outbound") this.upstreamPeer = this.options.peers.peer(headers[PEER_METADATA_ID] as string | undefined, mx);
    if (controller.peerPrincipal !== undefined) {
      this.upstreamPrincipal = controller.peerPrincipal;
      this.localPrincipal = controller.localPrincipal ?? "";
    }
    const out: string[] = [];
    const contentLength = relayedHeaders(headers, out);
    this.addPeerMetadata(out);
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
    const bodyless = this.ds.method === "HEAD" || statusCode === 204 || statusCode === 304;
    if (this.wasm?.filtersResponse) {
      if (this.wasm.responseHead(statusCode, out, contentLength, bodyless)) return;
      statusCode = this.status = this.wasm.status; // a plugin may have changed :status, or content-length
      this.sendPluginHead(statusCode, out, this.wasm.contentLength(out), bodyless);
      return;
    }
    this.headerBytesSent = headerWireBytes(out);
    this.headSent = true;
    this.ds.sendHead(statusCode, out, contentLength, bodyless);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.downstreamAborted || this.finished) return;
    if (this.wasm?.filtersResponse) {
      if (this.wasm.holding) return this.wasm.hold(chunk, undefined);
      const out = this.wasm.filterBody(true, Buffer.from(chunk), false);
      if (out === undefined) controller.abort(new Error("the response was answered by a Wasm plugin"));
      else if (out.length > 0) this.sendPluginData(out);
      return;
    }
    this.bytesSent += chunk.length;
    if (!this.ds.sendChunk(chunk)) controller.pause();
  }

  onResponseEnd(trailers?: Record<string, string | string[] | undefined>): void {
    const grpc = trailers?.["grpc-status"];
    if (typeof grpc === "string") this.grpcStatus = grpc;
    if (this.wasm?.filtersResponse && !this.downstreamAborted && !this.finished) {
      if (this.wasm.holding) return this.wasm.hold(undefined, { trailers: trailers as Record<string, string> | undefined });
      const out = this.wasm.filterBody(true, Buffer.alloc(0), true);
      if (out === undefined) return; // answered or failed by a plugin: that ended the exchange
      if (out.length > 0) this.sendPluginData(out);
      const edited = this.wasm.responseTrailers(trailers);
      if (edited === false) return;
      trailers = edited;
    }
    if (!this.downstreamAborted && !this.finished) this.ds.sendEnd(trailers);
    this.complete();
  }

  // What the plugins let through (wasm-stage.ts): the head as they left it, data after their body callbacks.
  sendPluginHead(status: number, headers: string[], contentLength: number, bodyless: boolean): void {
    if (this.finished || this.downstreamAborted) return;
    this.status = status;
    this.headerBytesSent = headerWireBytes(headers);
    this.headSent = true;
    this.ds.sendHead(status, headers, contentLength, bodyless);
  }
  sendPluginData(chunk: Buffer): void {
    if (this.finished || this.downstreamAborted) return;
    this.bytesSent += chunk.length;
    if (!this.ds.sendChunk(chunk)) this.upstream.controller?.pause();
  }
  sendPluginEnd(trailers: Record<string, string> | undefined): void {
    this.onResponseEnd(trailers);
  }

  abandonUpstream(reason: string): void {
    this.upstream.abort(reason);
  }

  /** proxy_close_stream: the downstream connection is dropped. */
  resetDownstream(): void {
    if (this.finished) return;
    this.ds.reset();
    this.upstream.abort("stream closed by a Wasm plugin");
    this.complete();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.upstream.release();
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
    this.upstream.stopTryTimeout();
    this.reportOutlier("localFailure");
    const connectFailure = isConnectFailure(err);
    this.transportFailure = transportFailure(err) ?? "";
    if (connectFailure) this.options.observer.connectFailure(this);
    const retriable = retriableFailure(this.retryPolicy(), connectFailure);
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

  /** Attempts left, and a request that can be sent again: a body past the replay buffer cannot. */
  private mayRetry(): boolean {
    if (this.upstream.count >= this.retryPolicy().attempts || !this.upstream.balanced) return false;
    if (this.ds.hasBody && (!this.replayBody || this.replayBody.overflowed)) {
      this.options.observer.retryAbandoned(this);
      return false;
    }
    // Envoy's max_retries: retries outstanding to the cluster; over it, the response passes through, flagged UO.
    if (!this.upstream.holdRetry(this.snapshot.clusters[this.cluster]!)) {
      this.addFlag("UO");
      return false;
    }
    return true;
  }

  private scheduleRetry(): void {
    this.options.observer.retry(this);
    setTimeout(retryExchange, backoffMs(this.retryPolicy(), this.attempts), this);
  }

  /** Envoy's per_try_timeout: the attempt is abandoned; retried if retryOn allows, else 504 UT. */
  onPerTryTimeout(attemptId: number): void {
    if (attemptId !== this.attemptId || this.finished || this.responseStarted) return;
    this.options.observer.timeout(this);
    this.reportOutlier("localFailure");
    this.upstream.supersede("per-try timeout");
    const retriable = retriableTimeout(this.retryPolicy());
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
    let fresh = false;
    for (let i = 0; i < attempts; i++) {
      next = core.pickEndpoint(this.cluster, random32());
      if (next < 0 || !this.upstream.wasTried(next - start)) {
        fresh = true;
        break;
      }
    }
    // Envoy gives up after host_selection_retry_max_attempts and retries the last pick, a host already tried; with
    // few hosts that happens often enough to fail requests another host would serve (2 hosts, one down: about one
    // request in 2 000 under Istio's default policy). An untried eligible host, if any, is taken instead.
    if (!fresh && next >= 0) next = this.untriedEndpoint(core, start) ?? next;
    if (next < 0) {
      this.localReply(Reply.NO_HEALTHY_UPSTREAM);
      return;
    }
    this.forward(next, "");
  }

  /** The first eligible endpoint of the cluster not tried yet, from a random place (the first 32 are tracked), or undefined. */
  private untriedEndpoint(core: Snapshot["core"], start: number): number | undefined {
    const size = Math.min(core.clusterSize(this.cluster), 32);
    const from = (random32() >>> 0) % Math.max(1, size);
    for (let k = 0; k < size; k++) {
      const offset = (from + k) % size;
      if (!this.upstream.wasTried(offset) && core.isEligible(start + offset)) return start + offset;
    }
    return undefined;
  }

  // ── phase 5: respond ─────────────────────────────────────────────────────

  /** Answers without the upstream. `extraHeaders` (a redirect's location) come before the route's operations. */
  localReply(reply: Reply.LocalReply, extraHeaders?: string[]): void {
    if (this.headSent) {
      // Too late to answer (a plugin failed or answered mid-response): the client sees a reset, as Envoy's.
      this.details = reply.details;
      this.ds.reset();
      this.upstream.abort(reply.details);
      this.complete();
      return;
    }
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
      const headers = reply.body.length > 0 && !extraHeaders?.includes("content-type") ? ["content-type", "text/plain"] : [];
      if (extraHeaders) headers.push(...extraHeaders);
      headers.push("server", serverName(this.listener));
      this.addPeerMetadata(headers);
      this.applyRouteResponseHeaders(headers);
      if (this.corsHeaders) applyCors(headers, this.corsHeaders);
      if (this.listener.draining) headers.push("connection", "close");
      this.ds.sendLocal(reply.status, headers, reply.body);
      this.bytesSent = Buffer.byteLength(reply.body);
      this.headerBytesSent = headerWireBytes(headers);
    }
    this.complete();
  }

  /** Inbound, to a caller that sent its metadata: this workload's, so that the caller can label its metrics. */
  private addPeerMetadata(headers: string[]): void {
    const mx = this.answerPeerMetadata ? this.options.localMetadata : undefined;
    if (mx) headers.push(PEER_METADATA_ID, mx.id, PEER_METADATA, mx.value);
  }

  /** The matched route's (and destination's) response header operations; Envoy applies them to its local replies too. */
  private applyRouteResponseHeaders(headers: string[]): void {
    if (this.routeIndex < 0) return;
    applyResponseHeaders(headers, this.snapshot.config.destinations[this.dest]?.headers, this.snapshot.config.routes[this.routeIndex]!.headers);
  }

  onDownstreamAborted(): void {
    if (this.wasm?.pending && this.upstream.controller === undefined) {
      // The client left while a plugin held the request (an HTTP call, a body being read): nothing went upstream.
      this.downstreamAborted = true;
      this.addFlag("DC");
      this.complete();
      return;
    }
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
    this.upstream.abort("downstream aborted");
  }

  onDownstreamWritable(): void {
    this.upstream.controller?.resume();
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
    clearTimeout(this.routeTimer);
    this.wasm?.finish();
    this.options.streamIdle.delete(this);
    this.upstream.finish();
    this.listener.inFlight--;
    this.options.observer.complete(this);
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
