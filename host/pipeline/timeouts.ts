// The route timeout and per-try timeout of a request, as Envoy's router reads
// them: the route's (Istio's timeout and retries.perTryTimeout), unless the
// caller sent x-envoy-upstream-rq-timeout-ms / -per-try-timeout-ms (0: none).
// A per-try timeout not shorter than the route's is dropped.

import type { RouteInfo } from "../config/compile.js";
import { MAX_TIMER_MS } from "../config/fields.js";
import type { Downstream } from "../listeners/downstream.js";

const MILLISECONDS = /^\d{1,15}$/;

export interface RequestTimeouts {
  routeMs: number;
  perTryMs: number;
}

export function requestTimeouts(route: RouteInfo | undefined, ds: Downstream): RequestTimeouts {
  let routeMs = route?.timeoutMs ?? 0;
  let perTryMs = route?.retry.perTryTimeoutMs ?? 0;
  const header = ds.header("x-envoy-upstream-rq-timeout-ms");
  if (header !== undefined && MILLISECONDS.test(header)) routeMs = Math.min(Number(header), MAX_TIMER_MS);
  const perTryHeader = ds.header("x-envoy-upstream-rq-per-try-timeout-ms");
  if (perTryHeader !== undefined && MILLISECONDS.test(perTryHeader)) perTryMs = Math.min(Number(perTryHeader), MAX_TIMER_MS);
  if (routeMs > 0 && perTryMs >= routeMs) perTryMs = 0;
  return { routeMs, perTryMs };
}
