// What an HTTP/1.1 upstream client keeps of TLS between connections: the last
// session each endpoint gave (Envoy's upstream session cache), offered again
// when the next connection is made with the same certificate and SNI, so that a
// resumed handshake signs nothing on either side; and the client's own
// principal per certificate, read once rather than at every connection.

import type { SecureContext, TLSSocket } from "node:tls";
import { spiffeOf } from "../config/hosts.js";

interface TlsSession {
  context: SecureContext | undefined;
  servername: string | undefined;
  session: Buffer;
}

/** At most this many endpoints' sessions are kept per client; the oldest goes first. */
const MAX_TLS_SESSIONS = 1024;

export class TlsSessionCache {
  private readonly sessions = new Map<string, TlsSession>();

  /** The session to offer `origin`, if the last one it gave was made with this certificate and SNI. */
  offer(origin: string, context: SecureContext | undefined, servername: string | undefined): Buffer | undefined {
    const cached = this.sessions.get(origin);
    return cached && cached.context === context && cached.servername === servername ? cached.session : undefined;
  }

  remember(origin: string, context: SecureContext | undefined, servername: string | undefined, session: Buffer): void {
    this.sessions.delete(origin);
    this.sessions.set(origin, { context, servername, session });
    if (this.sessions.size > MAX_TLS_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
  }
}

/** Our own principal per certificate (a SecureContext holds one). */
const localPrincipals = new WeakMap<SecureContext, string>();

export function localPrincipalOf(socket: TLSSocket, context: SecureContext | undefined): string {
  let principal = context && localPrincipals.get(context);
  if (principal === undefined) {
    principal = spiffeOf(socket.getX509Certificate()?.subjectAltName);
    if (context) localPrincipals.set(context, principal);
  }
  return principal;
}
