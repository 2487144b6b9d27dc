// Pieces of phase 5 (respond) shared by upstream responses and local replies.

import type { ListenerRuntime } from "../listeners/listener-runtime.js";

/**
 * The `server` response header, overwritten as Istio configures Envoy: "istio-envoy" on inbound
 * listeners, Envoy's own "envoy" on outbound ones.
 */
export function serverName(listener: ListenerRuntime): string {
  return listener.direction === "inbound" ? "istio-envoy" : "envoy";
}

/**
 * Bytes of a response head as sent: status line, the headers given, framing
 * (content-length or transfer-encoding) and the blank line. Date and server
 * headers the listener adds are left out.
 */
export function headerWireBytes(headers: string[]): number {
  let n = "HTTP/1.1 200 OK\r\n".length + "content-length: 0000\r\n".length + 2;
  for (let i = 0; i < headers.length; i += 2) n += headers[i]!.length + headers[i + 1]!.length + 4;
  return n;
}

/** CORS headers replace any the upstream sent (Envoy's filter sets them). */
export function applyCors(headers: string[], cors: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i]!.startsWith("access-control-")) headers.splice(i, 2);
  headers.push(...cors);
}
