// A route that answers without an upstream (Envoy's router does these from the
// route entry): a VirtualService redirect, 3xx with the Location built from the
// request; a direct response, the configured status and body.

import type { RouteInfo } from "../config/compile.js";
import type { RouteActionModel } from "../config/model.js";
import { splitAuthority } from "../http/authority.js";
import type { Downstream } from "../listeners/downstream.js";
import { CONTINUE, LOCAL_REPLY, type FilterContext, type FilterStatus, type HttpFilter } from "./filter.js";

export const routeActionFilter: HttpFilter = {
  name: "route action (redirect, direct response)",
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus {
    const action = route.action;
    if (action.kind === "redirect") {
      cx.localReply({ status: action.status, flag: "-", body: "", details: "redirect" }, ["location", redirectLocation(cx.ds, action)]);
      return LOCAL_REPLY;
    }
    if (action.kind === "direct") {
      cx.localReply({ status: action.status, flag: "-", body: action.body, details: "direct_response" });
      return LOCAL_REPLY;
    }
    return CONTINUE;
  },
};

/** The Location of a VirtualService redirect, built from the request as Envoy does. */
function redirectLocation(ds: Downstream, r: Extract<RouteActionModel, { kind: "redirect" }>): string {
  const { host: requestHost, port: requestPort } = splitAuthority(ds.authority ?? "");
  const scheme = r.scheme ?? ds.scheme;
  let port: string | undefined;
  if (r.port !== undefined) port = String(r.port);
  else if (r.derivePort === "FROM_REQUEST_PORT") port = requestPort;
  else if (r.derivePort === undefined && r.authority === undefined && scheme === ds.scheme) port = requestPort;
  const host = r.authority ?? requestHost;
  let path = r.uri ?? ds.path;
  if (!path.includes("?") && ds.query !== undefined) path = `${path}?${ds.query}`;
  return `${scheme}://${host}${port ? `:${port}` : ""}${path}`;
}
