// A route's rewrite (Envoy's prefix_rewrite and regex_rewrite, from Istio's
// rewrite.uri and rewrite.uriRegexRewrite): the path sent upstream. The
// authority rewrite and header edits apply as the upstream request is built
// (host/pipeline/upstream-request.ts), since every attempt carries them.

import type { RouteInfo } from "../config/compile.js";
import type { MatchEntry } from "../core/route-table.js";
import type { Downstream } from "../listeners/downstream.js";
import { CONTINUE, type FilterContext, type FilterStatus, type HttpFilter } from "./filter.js";

export const rewriteFilter: HttpFilter = {
  name: "rewrite",
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus {
    const rewrite = route.rewrite;
    if (rewrite?.uri !== undefined) cx.upstreamPath = rewritePath(cx.ds, cx.matchEntry, rewrite.uri);
    else if (rewrite?.uriRegex) cx.upstreamPath = regexRewritePath(cx, rewrite.uriRegex);
    return CONTINUE;
  },
};

/**
 * Envoy's prefix_rewrite as Istio configures it from rewrite.uri: an exact match
 * replaces the whole path, a prefix match replaces the matched prefix, and a
 * route without a URI match is a prefix match on "/". The query is kept.
 */
function rewritePath(ds: Downstream, entry: MatchEntry, replacement: string): string {
  const uri = entry.uri;
  const path = uri?.kind === "exact" ? replacement : replacement + ds.path.slice(uri?.kind === "prefix" ? uri.value.length : 1);
  return ds.query === undefined ? path : `${path}?${ds.query}`;
}

/**
 * Envoy's regex_rewrite from rewrite.uriRegexRewrite: every match in the path
 * (the query excluded, and kept) is substituted; no match leaves the path as it is.
 */
function regexRewritePath(cx: FilterContext, rx: { program: number; rewrite: (string | number)[] }): string | undefined {
  const ds = cx.ds;
  const path = cx.core.regexReplaceAll(rx.program, ds.path, rx.rewrite);
  if (path === undefined) return undefined;
  return ds.query === undefined ? path : `${path}?${ds.query}`;
}
