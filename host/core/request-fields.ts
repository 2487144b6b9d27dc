// Writes a request's routing fields into the core's request area.

import { SLOT_AUTHORITY, SLOT_FIRST_HEADER, SLOT_METHOD, SLOT_PATH, SLOT_QUERY, SLOT_SCHEME, SLOT_SOURCE_IP } from "../../assembly/layout.js";
import type { RouteRequest } from "./decision.js";
import type { RouteCore } from "./route-core.js";

/**
 * Copies into the core's request area what its table can look at: authority,
 * path, the referenced headers, and method, query and scheme only when some
 * route matches on them (copying is half of a decision's cost). Returns false
 * when they do not fit the request area (the caller answers 431).
 *
 * HOT PATH — change with care: the proxy calls it for every request.
 */
export function writeRequest(core: RouteCore, headerNames: readonly string[], req: RouteRequest): boolean {
  core.begin();
  if (core.readsMethod && !core.set(SLOT_METHOD, req.method)) return false;
  if (req.authority !== undefined && !core.set(SLOT_AUTHORITY, req.authority)) return false;
  if (!core.set(SLOT_PATH, req.path)) return false;
  if (core.readsQuery && req.query !== undefined && !core.set(SLOT_QUERY, req.query)) return false;
  if (core.readsScheme && !core.set(SLOT_SCHEME, req.scheme)) return false;
  if (core.readsSourceIp && req.remoteAddress !== undefined && !core.set(SLOT_SOURCE_IP, req.remoteAddress)) return false;
  for (let i = 0; i < headerNames.length; i++) {
    const value = req.header(headerNames[i]!);
    if (value !== undefined && !core.set(SLOT_FIRST_HEADER + i, value)) return false;
  }
  return true;
}
