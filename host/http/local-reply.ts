// Envoy's local replies as Istio users see them: status, response flag, body.
// Bodies are byte-for-byte Envoy's, so runbooks and tests written against
// Envoy keep working.

export interface LocalReply {
  status: number;
  /** Envoy response flag for logs and metrics. */
  flag: string;
  body: string | Buffer;
  /** Envoy's response code details, e.g. route_not_found. */
  details: string;
}

export const NO_ROUTE: LocalReply = { status: 404, flag: "NR", body: "", details: "route_not_found" };
export const NO_CLUSTER: LocalReply = { status: 503, flag: "NC", body: "", details: "cluster_not_found" };
export const NO_HEALTHY_UPSTREAM: LocalReply = { status: 503, flag: "UH", body: "no healthy upstream", details: "no_healthy_upstream" };
/** Istio's block_all virtual host under REGISTRY_ONLY: a direct response, so no flag. */
export const BLOCKED_BY_REGISTRY_ONLY: LocalReply = { status: 502, flag: "-", body: "", details: "direct_response" };
/** Passthrough to this proxy's own listener: refused instead of looping (see pipeline/passthrough-guard.ts). */
/** Passthrough to a loopback address the settings do not allow (passthrough.allowLoopback). */
export const PASSTHROUGH_LOOPBACK: LocalReply = { status: 502, flag: "-", body: "", details: "passthrough_to_loopback" };
export const PASSTHROUGH_LOOP: LocalReply = { status: 502, flag: "-", body: "", details: "passthrough_to_self" };
/** A CORS preflight answered by the proxy (headers added by the caller when the origin is allowed). */
export const CORS_PREFLIGHT: LocalReply = { status: 200, flag: "-", body: "", details: "cors_response" };
export const FAULT_ABORT_BODY = "fault filter abort";
/** A VirtualService fault abort (the status comes from the route). */
export const FAULT_ABORT_HTTP: LocalReply = { status: 500, flag: "FI", body: FAULT_ABORT_BODY, details: "fault_filter_abort" };
/** A gRPC fault abort: HTTP 200 with the grpc-status (headers added by the caller). */
export const FAULT_ABORT_GRPC: LocalReply = { status: 200, flag: "FI", body: "", details: "fault_filter_abort" };
/** The route timeout (all attempts) ran out before the upstream's response headers. */
export const UPSTREAM_TIMEOUT: LocalReply = { status: 504, flag: "UT", body: "upstream request timeout", details: "response_timeout" };
/** A per-try timeout that no retry follows. */
export const PER_TRY_TIMEOUT: LocalReply = { ...UPSTREAM_TIMEOUT, details: "upstream_per_try_timeout" };
/** A bug in the proxy surfaced on this request (logged and counted as instio_internal_errors_total). */
/** A circuit breaker refused the request; the caller adds x-envoy-overloaded: true. */
export const UPSTREAM_OVERFLOW: LocalReply = {
  status: 503,
  flag: "UO",
  body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
  details: "upstream_reset_before_response_started{overflow}",
};
export const INTERNAL_ERROR: LocalReply = { status: 500, flag: "-", body: "internal error", details: "internal_error" };
/** HTTP/1.1 without Host: Envoy's HCM answers 400 with an empty body. */
export const MISSING_HOST: LocalReply = { status: 400, flag: "-", body: "", details: "missing_host_header" };
export const BAD_REQUEST: LocalReply = { status: 400, flag: "DPE", body: "Bad Request", details: "http1.codec_error" };
export const HEADERS_TOO_LARGE: LocalReply = { status: 431, flag: "DPE", body: "Request Header Fields Too Large", details: "http1.headers_too_large" };

const RESET_PREFIX = "upstream connect error or disconnect/reset before headers. ";

/** The upstream failed before response headers: connection failure (UF) or termination (UC). */
export function upstreamReset(kind: "connection failure" | "connection termination" | "protocol error", transportFailure: string | undefined, retried: boolean): LocalReply {
  const reason = `${retried ? "retried and the latest " : ""}reset reason: ${kind}${transportFailure ? `, transport failure reason: ${transportFailure}` : ""}`;
  return {
    // Envoy answers 502 when the upstream broke the protocol (a malformed response), 503 otherwise.
    status: kind === "protocol error" ? 502 : 503,
    flag: kind === "connection failure" ? "UF" : kind === "protocol error" ? "UPE" : "UC",
    body: RESET_PREFIX + reason,
    details: `upstream_reset_before_response_started{${kind.replace(" ", "_")}}`,
  };
}

/** Envoy's Grpc::Utility::httpToGrpcStatus, for local replies to gRPC requests. */
export function grpcStatusFor(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** grpc-message as the gRPC spec percent-encodes it: bytes outside printable ASCII, and '%'. */
export function grpcMessage(text: string): string {
  let out = "";
  for (const b of Buffer.from(text, "utf8")) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}
