// Istio's header manipulation (VirtualService `headers`, route and destination
// level) on a flat [name, value, ...] list, as Envoy's header mutations:
// remove drops every value, set overwrites (or adds), add appends to the
// existing value with a comma (or adds).

import type { HeaderOperations, HeadersModel } from "../config/model.js";
import { removeHeader } from "../http/headers.js";

export function applyHeaderOperations(headers: string[], ops: HeaderOperations): void {
  for (const name of ops.remove) removeHeader(headers, name);
  for (const [name, value] of ops.set) {
    removeHeader(headers, name);
    headers.push(name, value);
  }
  for (const [name, value] of ops.add) {
    let found = false;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === name) {
        headers[i + 1] = `${headers[i + 1]},${value}`;
        found = true;
        break;
      }
    }
    if (!found) headers.push(name, value);
  }
}

/** Destination-level operations first, then the route's, so the route's win (Envoy's order). */
export function applyRequestHeaders(headers: string[], destination: HeadersModel | undefined, route: HeadersModel | undefined): void {
  if (destination?.request) applyHeaderOperations(headers, destination.request);
  if (route?.request) applyHeaderOperations(headers, route.request);
  const host = destination?.hostRewrite ?? route?.hostRewrite;
  if (host !== undefined) {
    removeHeader(headers, "host");
    headers.push("host", host);
  }
}

export function applyResponseHeaders(headers: string[], destination: HeadersModel | undefined, route: HeadersModel | undefined): void {
  if (destination?.response) applyHeaderOperations(headers, destination.response);
  if (route?.response) applyHeaderOperations(headers, route.response);
}
