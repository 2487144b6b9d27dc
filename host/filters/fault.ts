// Envoy's fault filter as Istio configures it from a route's fault: a delay
// (flag DI) holds the request before anything else happens to it, then an
// abort (flag FI) answers it with the configured HTTP or gRPC status. The
// delay is a filter that pauses; the abort the filter after it.

import type { RouteInfo } from "../config/compile.js";
import * as Reply from "../http/local-reply.js";
import { CONTINUE, LOCAL_REPLY, PAUSE, type FilterContext, type FilterStatus, type HttpFilter } from "./filter.js";

export const faultDelayFilter: HttpFilter = {
  name: "envoy.filters.http.fault (delay)",
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus {
    const delay = route.fault?.delay;
    if (!delay || Math.random() * 100 >= delay.percent) return CONTINUE;
    cx.addFlag("DI");
    cx.pauseMs = delay.ms;
    return PAUSE;
  },
};

export const faultAbortFilter: HttpFilter = {
  name: "envoy.filters.http.fault (abort)",
  onRequest(cx: FilterContext, route: RouteInfo): FilterStatus {
    const abort = route.fault?.abort;
    if (!abort || Math.random() * 100 >= abort.percent) return CONTINUE;
    if (abort.grpcStatus !== undefined) {
      cx.localReply(Reply.FAULT_ABORT_GRPC, ["content-type", "application/grpc", "grpc-status", String(abort.grpcStatus), "grpc-message", Reply.FAULT_ABORT_BODY]);
    } else {
      cx.localReply({ ...Reply.FAULT_ABORT_HTTP, status: abort.httpStatus! });
    }
    return LOCAL_REPLY;
  },
};
