// Request and response header handling between downstream and upstream.

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) and the ones Envoy never forwards.
 * Lower-case; listeners hand header names over lower-cased.
 */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "trailer", "proxy-authenticate", "proxy-authorization"]);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/** Names listed in a Connection header are hop-by-hop for this message too. */
export function connectionListed(connection: string | undefined): Set<string> | undefined {
  if (!connection) return undefined;
  const names = connection.split(",").map((s) => s.trim().toLowerCase()).filter((s) => s && s !== "close" && s !== "keep-alive");
  return names.length > 0 ? new Set(names) : undefined;
}

/** Response headers the listener itself writes (framing and date). */
const LISTENER_OWNED = new Set(["content-length", "date"]);

export function isListenerOwnedResponseHeader(name: string): boolean {
  return LISTENER_OWNED.has(name) || HOP_BY_HOP.has(name);
}

/** Drops every `name` entry from a flat [name, value, ...] list, in place. */
export function removeHeader(headers: string[], name: string): void {
  let w = 0;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === name) continue;
    headers[w++] = headers[i]!;
    headers[w++] = headers[i + 1]!;
  }
  headers.length = w;
}
