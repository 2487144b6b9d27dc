// Upstream connection pools per connection-pool policy. Clusters without a
// DestinationRule connectionPool share one HTTP/1.1 client; a cluster with one
// gets a client configured from it (connections per endpoint, requests per
// connection, connect and idle timeouts, connection lifetime, TCP keepalive).
// Clients are kept by policy and cluster across reloads, so an unchanged
// config reuses its connections.

import { H1Upstream } from "../proxy/h1-upstream.js";
import { H2Upstream } from "../proxy/h2-upstream.js";
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from "node:tls";
import { DEFAULT_CLUSTER_POLICY, UNLIMITED, type ClusterPolicy, type UpstreamTlsModel } from "../config/traffic-policy.js";

export class PoolRegistry {
  private readonly h1 = new Map<string, H1Upstream>();
  private readonly h2 = new Map<string, H2Upstream>();

  /** The HTTP/2 sessions of a cluster whose port speaks HTTP2 or GRPC. */
  http2For(cluster: string, limits: ClusterPolicy["limits"]): H2Upstream {
    const key = `${cluster}\u0000${limits.connectTimeoutMs}`;
    let pool = this.h2.get(key);
    if (!pool) this.h2.set(key, (pool = new H2Upstream(limits.connectTimeoutMs)));
    return pool;
  }

  /** The HTTP/1.1 client for a cluster with `limits` (and TLS origination when `tls` is set). */
  for(cluster: string, limits: ClusterPolicy["limits"], tls?: UpstreamTlsModel): H1Upstream {
    const shared = !tls && sameLimits(limits, DEFAULT_CLUSTER_POLICY.limits);
    const key = shared ? "" : `${cluster}\u0000${JSON.stringify(limits)}\u0000${JSON.stringify(tls ?? null)}`;
    let pool = this.h1.get(key);
    if (!pool) {
      pool = new H1Upstream({
        connectTimeoutMs: limits.connectTimeoutMs,
        ...(limits.tcpKeepalive ? { tcpKeepaliveMs: limits.tcpKeepalive.timeMs } : {}),
        // Envoy's max_connections bounds the cluster; this bounds each endpoint's pool.
        maxConnections: limits.maxConnections < UNLIMITED ? limits.maxConnections : Infinity,
        maxRequestsPerConnection: limits.maxRequestsPerConnection,
        maxConnectionDurationMs: limits.maxConnectionDurationMs,
        idleTimeoutMs: limits.idleTimeoutMs,
        ...(tls ? { tls: tlsConnectOptions(tls) } : {}),
      });
      this.h1.set(key, pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    await Promise.all([...this.h1.values()].map((p) => p.close()));
    this.h1.clear();
    for (const p of this.h2.values()) p.close();
    this.h2.clear();
  }
}

/**
 * Node TLS options for ClientTLSSettings: the CA (else the system's), the client
 * certificate for MUTUAL, SNI (else the request's authority, see h1-upstream.ts),
 * and SAN verification against subjectAltNames when given (else the hostname).
 */
function tlsConnectOptions(tls: UpstreamTlsModel): ConnectionOptions {
  const expected = tls.subjectAltNames;
  return {
    ...(tls.ca ? { ca: tls.ca } : {}),
    ...(tls.mode === "MUTUAL" ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.sni ? { servername: tls.sni } : {}),
    rejectUnauthorized: !tls.insecureSkipVerify,
    checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined => {
      if (tls.insecureSkipVerify) return undefined;
      if (expected.length === 0) return checkServerIdentity(host, cert);
      const sans = (cert.subjectaltname ?? "").split(", ").map((s) => s.replace(/^(DNS|URI|IP Address):/, ""));
      if (expected.some((e) => sans.includes(e))) return undefined;
      return Object.assign(new Error(`certificate SANs ${sans.join(", ") || "(none)"} do not include ${expected.join(" or ")}`), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    },
  };
}

function sameLimits(a: ClusterPolicy["limits"], b: ClusterPolicy["limits"]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
