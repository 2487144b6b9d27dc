// What the pipeline is given by its composition root (host/proxy/server.ts).

import type { Dispatcher } from "undici";
import type { SnapshotHolder } from "../proxy/snapshot.js";
import type { ExchangeObserver } from "../telemetry/record.js";
import type { PassthroughGuard } from "./passthrough-guard.js";
import type { StreamIdleTimeout } from "./stream-idle.js";
import type { PeerCache } from "../security/peer-metadata.js";

/**
 * An upstream client: host/upstream's h1 and h2 clients, driving undici's
 * handler callbacks. Unlike undici's, onResponseData's chunk may be borrowed:
 * valid during the call only (see Downstream.sendChunk).
 */
export interface UpstreamClient {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
}

/** What an upstream client's controller tells of a mutual-TLS connection (the peer's SPIFFE id and ours); undefined over plaintext. */
export interface UpstreamIdentity {
  readonly peerPrincipal?: string;
  readonly localPrincipal?: string;
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
  /** Istio's metadata exchange: peers decoded once per id, and this workload's own headers (undefined: not exchanged). */
  peers: PeerCache;
  localMetadata: { id: string; value: string } | undefined;
  /** A bug surfaced while handling a request: the request got a 500; this logs and counts it. */
  onInternalError(err: Error): void;
}
