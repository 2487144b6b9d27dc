// How an upstream failure is classified, as Envoy's router and its access log
// see it: connect failures (retriable with retryOn connect-failure, flag UF),
// protocol errors (502 UPE) and resets, and the transport failure reason.

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT", "EADDRNOTAVAIL"]);

/** Certificate and handshake failures of TLS origination: connect failures, as Envoy reports them. */
const TLS_ERROR = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/;

export function isConnectFailure(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code !== undefined && (CONNECT_ERRORS.has(code) || TLS_ERROR.test(code));
}

/** A malformed upstream response (the HTTP/1.1 parser's HPE_* codes, an oversized head): Envoy's 502 UPE. */
export function isProtocolError(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code !== undefined && (code.startsWith("HPE_") || code === "UND_ERR_HEADERS_OVERFLOW");
}

/** Envoy's transport failure reason, e.g. "delayed connect error: 111" for a refused connection. */
export function transportFailure(err: Error): string | undefined {
  const code = (err as { code?: string }).code;
  if (code === "ECONNREFUSED") return "delayed connect error: 111";
  if (code === "UND_ERR_CONNECT_TIMEOUT") return "connect timeout";
  if (code !== undefined && TLS_ERROR.test(code)) return `TLS_error:${code}: ${err.message}`;
  return code;
}
