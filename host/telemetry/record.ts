// What telemetry and the access log read of a request: a plain record that the
// pipeline's Exchange fills in, and the hooks the pipeline calls as the request
// goes. Telemetry depends on this, never on the pipeline's internals.

import type { UpstreamEndpoint } from "../cluster/endpoint.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { Downstream } from "../listeners/downstream.js";
import type { PeerInfo } from "../security/peer-metadata.js";
import type { SnapshotStats } from "./snapshot-stats.js";

export interface ExchangeRecord {
  readonly listener: ListenerRuntime;
  readonly ds: Downstream;
  /** performance.now() and Date.now() when the request arrived. */
  readonly startedAt: number;
  readonly startTime: number;
  /** The route core's decision (-1: none). */
  readonly vhost: number;
  readonly cluster: number;
  /** Envoy's cluster name (also PassthroughCluster, BlackHoleCluster, inbound|port||). */
  readonly clusterName: string;
  /** The matched route's name (access log route_name), "" when none. */
  readonly routeName: string;
  /** The last endpoint tried (none: not sent, or passthrough), and "address:port" of wherever it went. */
  readonly upstreamEndpoint: UpstreamEndpoint | undefined;
  readonly upstreamHost: string;
  readonly status: number;
  /** Envoy's response flags ("-" when none). */
  readonly flag: string;
  readonly grpcStatus: string;
  readonly details: string;
  readonly transportFailure: string;
  readonly requestId: string;
  readonly forwardedFor: string;
  /** Milliseconds from the complete request to upstream response headers; -1 when there were none. */
  readonly serviceTimeMs: number;
  readonly bytesSent: number;
  readonly headerBytesSent: number;
  /** Istio's metadata exchange: the caller (inbound) or the upstream (outbound), as their headers described them. */
  readonly downstreamPeer: PeerInfo | undefined;
  readonly upstreamPeer: PeerInfo | undefined;
  /** The upstream connection's mutual-TLS identities (ISTIO_MUTUAL): the peer's SPIFFE id and ours; "" otherwise. */
  readonly upstreamPrincipal: string;
  readonly localPrincipal: string;
  /** The metric children of the config version serving the request. */
  readonly stats: SnapshotStats;
}

/** What happens to requests, for stats and the access log. One implementation: Telemetry. */
export interface ExchangeObserver {
  attempt(ex: ExchangeRecord): void;
  /** A copy sent to shadow cluster `cluster`, endpoint `endpoint` (mirroring). */
  shadow(ex: ExchangeRecord, cluster: number, endpoint: UpstreamEndpoint): void;
  connectFailure(ex: ExchangeRecord): void;
  retry(ex: ExchangeRecord): void;
  /** A retry the policy asked for was not made: the request body was streamed, not buffered. */
  retryAbandoned(ex: ExchangeRecord): void;
  timeout(ex: ExchangeRecord): void;
  /** A circuit breaker refused the request (503 UO). */
  overflow(ex: ExchangeRecord): void;
  complete(ex: ExchangeRecord): void;
}
