// The headers an upstream attempt carries, as Envoy's router builds them:
// hop-by-hop headers dropped (te: trailers kept), x-forwarded-for appended,
// x-forwarded-proto and x-request-id added when missing (the same id on every
// attempt), x-envoy-attempt-count and x-envoy-expected-rq-timeout-ms set, the
// caller's x-envoy-* timeout headers consumed; then the route's authority
// rewrite and the destination's and route's header operations. Istio's peer
// metadata headers are the sidecars' own: a caller's are dropped, and this
// workload's are added when the request goes to a mesh cluster.

import { applyRequestHeaders } from "../filters/header-operations.js";
import { connectionListed, isHopByHop } from "../http/headers.js";
import { headerValue } from "../listeners/downstream.js";
import { randomUUID } from "node:crypto";
import type { RouteInfo } from "../config/compile.js";
import type { HeadersModel } from "../config/model.js";
import type { Downstream } from "../listeners/downstream.js";
import type { RequestTimeouts } from "./timeouts.js";
import { PEER_METADATA, PEER_METADATA_ID } from "../security/peer-metadata.js";
import { isPeerMetadata } from "./respond.js";

/** What the headers are built from (the Exchange); requestId and forwardedFor are recorded for the access log. */
export interface UpstreamRequestSource {
  readonly ds: Downstream;
  requestId: string;
  forwardedFor: string;
  readonly attempts: number;
  readonly upstreamPath: string | undefined;
  timeouts(): RequestTimeouts;
  /** -1 for a request without a route (passthrough, inbound): no route edits. */
  readonly routeIndex: number;
  readonly route: RouteInfo;
  readonly destinationHeaders: HeadersModel | undefined;
  /** This workload's metadata to send (Istio's metadata exchange, outbound to a mesh cluster); undefined: none. */
  readonly peerMetadataOut: { id: string; value: string } | undefined;
}

/** Headers the caller sends to Envoy's router, not through it. */
function consumedByRouter(name: string): boolean {
  return name === "x-envoy-attempt-count" || name === "x-envoy-upstream-rq-timeout-ms" || name === "x-envoy-upstream-rq-per-try-timeout-ms" || name === "x-envoy-expected-rq-timeout-ms";
}

export function upstreamRequestHeaders(ex: UpstreamRequestSource): string[] {
  const ds = ex.ds;
  const h = ds.headers;
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
    if (consumedByRouter(name)) continue;
    // The caller's own claims are dropped both ways: an app cannot speak for a sidecar.
    if (isPeerMetadata(name)) continue;
    if (name === "x-forwarded-proto") hasProto = true;
    else if (name === "x-request-id") {
      hasRequestId = true;
      ex.requestId = value;
    }
    out.push(name, value);
  }
  const client = ds.remoteAddress;
  ex.forwardedFor = forwardedFor === undefined ? client : `${forwardedFor}, ${client}`;
  out.push("x-forwarded-for", ex.forwardedFor);
  if (!hasProto) out.push("x-forwarded-proto", ds.scheme);
  if (!hasRequestId) {
    // Generated once: every attempt of a request carries the same id, as with Envoy.
    if (ex.requestId === "") ex.requestId = randomUUID();
    out.push("x-request-id", ex.requestId);
  }
  out.push("x-envoy-attempt-count", String(ex.attempts));
  const mx = ex.peerMetadataOut;
  if (mx) out.push(PEER_METADATA_ID, mx.id, PEER_METADATA, mx.value);
  // What the upstream may expect, as Envoy's router tells it: the per-try timeout, else the route's.
  const { routeMs, perTryMs } = ex.timeouts();
  if (perTryMs > 0 || routeMs > 0) out.push("x-envoy-expected-rq-timeout-ms", String(perTryMs > 0 ? perTryMs : routeMs));
  if (ex.routeIndex >= 0) {
    const route = ex.route;
    if (ex.upstreamPath !== undefined) out.push("x-envoy-original-path", ds.query === undefined ? ds.path : `${ds.path}?${ds.query}`);
    if (route.rewrite?.authority !== undefined) {
      for (let i = 0; i < out.length; i += 2) if (out[i] === "host") out[i + 1] = route.rewrite.authority;
    }
    applyRequestHeaders(out, ex.destinationHeaders, route.headers);
  }
  return out;
}
