// Phase 3: the HTTP filters, in Istio's order, then the router (phase 4).
//
//   CORS → fault delay → fault abort → route action (redirect, direct
//   response) → rewrite → router: upstream, and mirrors
//
// Each filter returns CONTINUE, LOCAL_REPLY (it answered) or PAUSE (it holds
// the request for cx.pauseMs; the chain then goes on after it, from a timer
// with no closure).

import { corsFilter } from "../filters/cors.js";
import { faultAbortFilter, faultDelayFilter } from "../filters/fault.js";
import { CONTINUE, PAUSE, type HttpFilter } from "../filters/filter.js";
import { rewriteFilter } from "../filters/rewrite.js";
import { routeActionFilter } from "../filters/route-action.js";
import type { Exchange } from "./exchange.js";
import { toUpstream } from "./router.js";

const FILTERS: readonly HttpFilter[] = [corsFilter, faultDelayFilter, faultAbortFilter, routeActionFilter, rewriteFilter];

/** Runs the filters from number `from` on; when every one continues, the router sends the request upstream. */
export function runFilters(ex: Exchange, from: number): void {
  const route = ex.route;
  for (let i = from; i < FILTERS.length; i++) {
    const status = FILTERS[i]!.onRequest(ex, route);
    if (status === CONTINUE) continue;
    if (status === PAUSE) ex.delayTimer = setTimeout(resume, ex.pauseMs, ex, i + 1);
    return;
  }
  toUpstream(ex);
}

function resume(ex: Exchange, from: number): void {
  ex.delayTimer = undefined;
  runFilters(ex, from);
}

