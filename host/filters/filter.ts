// An HTTP filter on the request path, as Envoy's decoder filters: it runs once a
// request has been routed, in the chain's order (host/pipeline/filter-chain.ts),
// and says what happens next. Filters see the request through FilterContext
// only, never the pipeline's internals.

import type { RouteInfo } from "../config/compile.js";
import type { RouteCore } from "../core/route-core.js";
import type { MatchEntry } from "../core/route-table.js";
import type { LocalReply } from "../http/local-reply.js";
import type { Downstream } from "../listeners/downstream.js";

/** Go on with the next filter. */
export const CONTINUE = 0;
/** The filter answered the request (FilterContext.localReply): the chain stops. */
export const LOCAL_REPLY = 1;
/** The filter holds the request for FilterContext.pauseMs: then the chain goes on after it. */
export const PAUSE = 2;
export type FilterStatus = typeof CONTINUE | typeof LOCAL_REPLY | typeof PAUSE;

export interface FilterContext {
  readonly ds: Downstream;
  /** The route core of the serving config: host-side regexes (CORS origins, regex rewrites) run in it. */
  readonly core: RouteCore;
  /** The match that selected the route (prefix rewrites replace what it matched). */
  readonly matchEntry: MatchEntry;
  /** access-control-* headers for an allowed origin, added to whatever answers the request. */
  corsHeaders: string[] | undefined;
  /** Path and query to send upstream, when a rewrite changed them. */
  upstreamPath: string | undefined;
  addFlag(flag: string): void;
  localReply(reply: LocalReply, extraHeaders?: string[]): void;
  /** How long a filter returning PAUSE holds the request (a fault delay). */
  pauseMs: number;
}

export interface HttpFilter {
  readonly name: string;
  /** HOT PATH for routes that configure the filter: no allocation when it has nothing to do. */
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus;
}
