// Pieces of phase 5 (respond) shared by upstream responses and local replies.

import { connectionListed, isListenerOwnedResponseHeader } from "../http/headers.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import { PEER_METADATA, PEER_METADATA_ID } from "../security/peer-metadata.js";

/**
 * The upstream's response headers as relayed, into `out`: hop-by-hop, connection-listed and
 * listener-owned ones dropped, the upstream's `server` replaced later, content-length taken out
 * (the listener frames the body), Istio's peer metadata taken out (the metadata exchange reads it).
 * Returns the content length, -1 when there is none.
 * HOT PATH: once per response.
 */
export function relayedHeaders(headers: Record<string, string | string[] | undefined>, out: string[]): number {
  let contentLength = -1;
  const listed = connectionListed(headers.connection as string | undefined);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name === "content-length") {
      contentLength = Number(value);
      continue;
    }
    if (isListenerOwnedResponseHeader(name) || listed?.has(name) || name === "server" || isPeerMetadata(name)) continue;
    if (typeof value === "string") out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  return contentLength;
}

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

/** x-envoy-peer-metadata and x-envoy-peer-metadata-id: exchanged between sidecars, never relayed to or from an app. */
export function isPeerMetadata(name: string): boolean {
  return name.length >= PEER_METADATA.length && name.charCodeAt(0) === 120 /* x */ && (name === PEER_METADATA || name === PEER_METADATA_ID);
}
