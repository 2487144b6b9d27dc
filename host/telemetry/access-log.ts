// Envoy's access log as Istio configures it (off by default): the default text
// format, or Istio's JSON variant, one line per request.

import { createWriteStream, type WriteStream } from "node:fs";
import type { ExchangeRecord } from "./record.js";

/** The fields of Istio's access log, in its JSON key names; undefined prints as "-". */
export function accessLogFields(ex: ExchangeRecord): Record<string, string | number | undefined> {
  const path = ex.ds.query === undefined ? ex.ds.path : `${ex.ds.path}?${ex.ds.query}`;
  return {
    start_time: new Date(ex.startTime).toISOString(),
    method: ex.ds.method,
    path,
    protocol: "HTTP/1.1",
    response_code: ex.status,
    response_flags: ex.flag,
    response_code_details: ex.details || "via_upstream",
    connection_termination_details: undefined,
    upstream_transport_failure_reason: ex.transportFailure || undefined,
    bytes_received: ex.ds.bodyBytes,
    bytes_sent: ex.bytesSent,
    duration: Math.round(performance.now() - ex.startedAt),
    upstream_service_time: ex.serviceTimeMs >= 0 ? ex.serviceTimeMs : undefined,
    x_forwarded_for: ex.forwardedFor || ex.ds.header("x-forwarded-for"),
    user_agent: ex.ds.header("user-agent"),
    request_id: ex.requestId || undefined,
    authority: ex.ds.authority,
    upstream_host: ex.upstreamHost || undefined,
    upstream_cluster: ex.clusterName || undefined,
    upstream_local_address: undefined,
    downstream_local_address: ex.ds.localAddress,
    downstream_remote_address: ex.ds.remoteAddress,
    requested_server_name: undefined,
    route_name: ex.routeName || (ex.clusterName === "PassthroughCluster" ? "allow_any" : ex.clusterName === "BlackHoleCluster" ? "block_all" : undefined),
  };
}

const d = (v: string | number | undefined): string => (v === undefined || v === "" ? "-" : String(v));

/** Istio's EnvoyTextLogFormat. */
export function formatText(ex: ExchangeRecord): string {
  const f = accessLogFields(ex);
  return (
    `[${f.start_time}] "${f.method} ${f.path} ${f.protocol}" ${f.response_code} ${d(f.response_flags)} ${d(f.response_code_details)} ${d(f.connection_termination_details)} ` +
    `"${d(f.upstream_transport_failure_reason)}" ${f.bytes_received} ${f.bytes_sent} ${f.duration} ${d(f.upstream_service_time)} "${d(f.x_forwarded_for)}" "${d(f.user_agent)}" ` +
    `"${d(f.request_id)}" "${d(f.authority)}" "${d(f.upstream_host)}" ${d(f.upstream_cluster)} ${d(f.upstream_local_address)} ${d(f.downstream_local_address)} ` +
    `${d(f.downstream_remote_address)} ${d(f.requested_server_name)} ${d(f.route_name)}\n`
  );
}

/** Istio's EnvoyJSONLogFormatIstio: the same fields; absent ones are null. */
export function formatJson(ex: ExchangeRecord): string {
  const f = accessLogFields(ex);
  const out: Record<string, string | number | null> = {};
  for (const [k, v] of Object.entries(f)) out[k] = v === undefined ? null : v;
  return JSON.stringify(out) + "\n";
}

export class AccessLog {
  private readonly stream: NodeJS.WritableStream | WriteStream;
  private readonly format: (ex: ExchangeRecord) => string;

  constructor(path: string, format: "TEXT" | "JSON") {
    this.stream = path === "/dev/stdout" ? process.stdout : path === "/dev/stderr" ? process.stderr : createWriteStream(path, { flags: "a" });
    this.format = format === "JSON" ? formatJson : formatText;
  }

  write(ex: ExchangeRecord): void {
    this.stream.write(this.format(ex));
  }
}
