// Envoy's request mirroring (the router's shadowing), from a route's mirrors:
// a fire-and-forget copy to the shadow cluster, sent through that cluster's own
// pool with its TLS settings, counted in its stats; its response is discarded
// and nothing about it touches the request. The authority is kept as is (Istio
// >= 1.28 no longer appends "-shadow"). A body larger than the replay buffer
// cannot be copied: that shadow is skipped and counted, as Envoy's
// retry_or_shadow_abandoned.

import type { Dispatcher } from "undici";
import type { Readable } from "node:stream";
import type { Exchange } from "./exchange.js";
import { random32 } from "./random.js";
import { upstreamRequestHeaders } from "./upstream-request.js";

export function mirror(ex: Exchange, cluster: number): void {
  if (cluster < 0) return;
  let body: Readable | null = null;
  if (ex.ds.hasBody) {
    body = ex.shadowBody();
    if (!body) {
      ex.options.observer.retryAbandoned(ex);
      return;
    }
  }
  const snapshot = ex.snapshot;
  const endpoint = snapshot.endpoints[snapshot.core.pickEndpoint(cluster, random32())];
  if (!endpoint) return;
  const path = ex.upstreamPath ?? (ex.ds.query === undefined ? ex.ds.path : `${ex.ds.path}?${ex.ds.query}`);
  ex.options.observer.shadow(ex, cluster, endpoint);
  try {
    (snapshot.clusters[cluster]?.dispatcher ?? ex.options.dispatcher).dispatch(
      { origin: endpoint.origin, method: ex.ds.method as Dispatcher.HttpMethod, path, headers: upstreamRequestHeaders(ex), body, headersTimeout: 0, bodyTimeout: 0 },
      SHADOW,
    );
  } catch {
    /* a shadow never fails the request */
  }
}

/** Discards a shadow request's response, whatever happens to it. */
const SHADOW: Dispatcher.DispatchHandler = {
  onRequestStart() {},
  onResponseStart() {},
  onResponseData() {},
  onResponseEnd() {},
  onResponseError() {},
};
