// Envoy's CORS filter as Istio configures it from a route's corsPolicy: allowed
// preflights are answered here; responses to allowed origins carry the
// access-control headers.

import type { CorsInfo, RouteInfo } from "../config/compile.js";
import type { RouteCore } from "../core/route-core.js";
import * as Reply from "../http/local-reply.js";
import type { Downstream } from "../listeners/downstream.js";
import { CONTINUE, LOCAL_REPLY, type FilterContext, type FilterStatus, type HttpFilter } from "./filter.js";

/** Whether `origin` is allowed; regex origins run in the route core (RE2 syntax, full match). */
export function originAllowed(cors: CorsInfo, origin: string, core: RouteCore): boolean {
  for (const m of cors.allowOrigins) {
    if (m.kind === "exact" && (origin === m.value || m.value === "*")) return true;
    if (m.kind === "prefix" && origin.startsWith(m.value)) return true;
    if (m.kind === "regex" && core.regexMatches(m.program, origin)) return true;
  }
  return false;
}

export function isPreflight(ds: Downstream): boolean {
  return ds.method === "OPTIONS" && ds.header("access-control-request-method") !== undefined;
}

export function preflightHeaders(cors: CorsInfo, origin: string): string[] {
  const h = ["access-control-allow-origin", origin];
  if (cors.allowMethods) h.push("access-control-allow-methods", cors.allowMethods);
  if (cors.allowHeaders) h.push("access-control-allow-headers", cors.allowHeaders);
  if (cors.maxAge !== undefined) h.push("access-control-max-age", String(cors.maxAge));
  if (cors.allowCredentials) h.push("access-control-allow-credentials", "true");
  return h;
}

export function responseHeaders(cors: CorsInfo, origin: string): string[] {
  const h = ["access-control-allow-origin", origin];
  if (cors.allowCredentials) h.push("access-control-allow-credentials", "true");
  if (cors.exposeHeaders) h.push("access-control-expose-headers", cors.exposeHeaders);
  return h;
}

/**
 * The CORS filter, first in Istio's chain: a preflight from an allowed origin is answered here
 * (and one from any other origin too, unless unmatched preflights are forwarded); other requests
 * from allowed origins go on, marked for the access-control response headers.
 */
export const corsFilter: HttpFilter = {
  name: "envoy.filters.http.cors",
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus {
    const cors = route.cors;
    const origin = cors ? cx.ds.header("origin") : undefined;
    if (!cors || origin === undefined) return CONTINUE;
    const allowed = originAllowed(cors, origin, cx.core);
    if (isPreflight(cx.ds)) {
      if (allowed) {
        cx.localReply(Reply.CORS_PREFLIGHT, preflightHeaders(cors, origin));
        return LOCAL_REPLY;
      }
      if (!cors.forwardUnmatchedPreflights) {
        cx.localReply(Reply.CORS_PREFLIGHT);
        return LOCAL_REPLY;
      }
    } else if (allowed) {
      cx.corsHeaders = responseHeaders(cors, origin);
    }
    return CONTINUE;
  },
};
