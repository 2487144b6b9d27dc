// What a proxyless gRPC client does not do of what instio translates. The
// resources carry it (an Envoy reading the same config would apply it), but
// gRPC's xDS client ignores it (gRFCs A27, A28, A31, A42, A44, A50) or fails the
// call: each is a warning with the route's file:line, so a user who moves a
// workload from a sidecar to proxyless gRPC learns what stops applying.

import type { CompiledConfig } from "../../config/compile.js";
import type { ConfigDiagnostic, Location } from "../../config/diagnostics.js";
import { DEFAULT_CLUSTER_POLICY, UNLIMITED } from "../../config/traffic-policy.js";

const CONTROL_PLANE: Location = { file: "<control-plane>", line: 1, column: 1 };

export function grpcUnsupported(config: CompiledConfig): ConfigDiagnostic[] {
  const out: ConfigDiagnostic[] = [];
  const warn = (at: Location | undefined, message: string): void => {
    out.push({ ...(at ?? CONTROL_PLANE), path: "", severity: "warning", message: `proxyless gRPC: ${message}` });
  };
  for (const r of config.routes) {
    const what = `route ${r.name}${r.virtualService ? ` of VirtualService ${r.virtualService}` : ""}`;
    if (r.action.kind !== "forward") warn(r.source, `${what}: a ${r.action.kind === "redirect" ? "redirect" : "directResponse"} is not served by gRPC clients; their calls on it fail UNAVAILABLE`);
    if (r.cors) warn(r.source, `${what}: corsPolicy is not applied by gRPC clients`);
    if (r.rewrite) warn(r.source, `${what}: rewrite is not applied by gRPC clients`);
    if (r.mirrors.length > 0) warn(r.source, `${what}: mirror is not applied by gRPC clients`);
    if (r.headers?.request || r.headers?.response || r.headers?.hostRewrite) warn(r.source, `${what}: headers operations are not applied by gRPC clients`);
    if (r.retry.attempts > 0 && r.retry.perTryTimeoutMs > 0) warn(r.source, `${what}: retries.perTryTimeout is not applied by gRPC clients (the route timeout is)`);
  }
  if (config.destinations.some((d) => d.headers?.request || d.headers?.response || d.headers?.hostRewrite)) {
    warn(undefined, "destination headers operations are not applied by gRPC clients");
  }
  const defaults = DEFAULT_CLUSTER_POLICY.limits;
  for (const c of config.clusters) {
    const l = c.policy.limits;
    const ignored: string[] = [];
    if (l.maxConnections !== UNLIMITED) ignored.push("tcp.maxConnections");
    if (l.maxPendingRequests !== UNLIMITED) ignored.push("http.http1MaxPendingRequests");
    if (l.maxRetries !== UNLIMITED) ignored.push("http.maxRetries");
    if (l.maxRequestsPerConnection > 0) ignored.push("http.maxRequestsPerConnection");
    if (l.maxConnectionDurationMs > 0) ignored.push("tcp.maxConnectionDuration");
    if (l.idleTimeoutMs !== defaults.idleTimeoutMs) ignored.push("idleTimeout");
    if (l.connectTimeoutMs !== defaults.connectTimeoutMs) ignored.push("tcp.connectTimeout");
    if (l.tcpKeepalive) ignored.push("tcp.tcpKeepalive");
    if (c.healthCheck) ignored.push("active health checks");
    if (ignored.length > 0) warn(undefined, `${c.name}: ${ignored.join(", ")} not applied by gRPC clients (of connectionPool, only http.http2MaxRequests is)`);
    const o = c.policy.outlierDetection;
    if (c.endpoints.some((ep) => (ep.weight ?? 1) !== 1) && c.policy.loadBalancer.kind !== "RING_HASH") warn(undefined, `${c.name}: endpoint weights are applied by gRPC clients only under ring hash (their round robin weighs localities, not endpoints)`);
    if (o) warn(undefined, `${c.name}: outlierDetection is sent as failure-percentage ejection (gRPC has no consecutive-error ejection): an endpoint all of whose calls in an interval failed is ejected${o.minHealthPercent > 0 ? "; minHealthPercent is not applied" : ""}`);
  }
  return out;
}
