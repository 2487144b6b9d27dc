// What the pipeline is given by its composition root (host/proxy/server.ts).

import type { Dispatcher } from "undici";
import type { SnapshotHolder } from "../proxy/snapshot.js";
import type { ExchangeObserver } from "../telemetry/record.js";
import type { PassthroughGuard } from "./passthrough-guard.js";
import type { StreamIdleTimeout } from "./stream-idle.js";

/**
 * An upstream client: host/upstream's h1 and h2 clients, driving undici's
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
