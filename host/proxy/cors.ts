// Envoy's CORS filter as Istio configures it from a route's corsPolicy: allowed
// preflights are answered here; responses to allowed origins carry the
// access-control headers.

import type { CorsInfo } from "../config/compile.js";
import type { RouteCore } from "../core/route-core.js";
import type { Downstream } from "./downstream.js";

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
