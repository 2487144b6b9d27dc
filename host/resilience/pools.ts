// Upstream connection pools per connection-pool policy. Clusters without a
// DestinationRule connectionPool share one undici Agent; a cluster with one
// gets an Agent configured from it (connections per endpoint, requests per
// connection, connect and idle timeouts, TCP keepalive). Agents are kept by
// policy and cluster across reloads, so an unchanged config reuses its
// connections.

import { Agent } from "undici";
import { H2Upstream } from "../proxy/h2-upstream.js";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { DEFAULT_CLUSTER_POLICY, UNLIMITED, type ClusterPolicy, type UpstreamTlsModel } from "../config/traffic-policy.js";

export class PoolRegistry {
  private readonly agents = new Map<string, Agent>();
  private readonly h2 = new Map<string, H2Upstream>();

  /** The HTTP/2 sessions of a cluster whose port speaks HTTP2 or GRPC. */
  http2For(cluster: string, limits: ClusterPolicy["limits"]): H2Upstream {
    const key = `${cluster}\u0000${limits.connectTimeoutMs}`;
    let pool = this.h2.get(key);
    if (!pool) this.h2.set(key, (pool = new H2Upstream(limits.connectTimeoutMs)));
    return pool;
  }

  /** The dispatcher for a cluster with `limits` (and TLS origination when `tls` is set). */
  for(cluster: string, limits: ClusterPolicy["limits"], tls?: UpstreamTlsModel): Agent {
    const shared = !tls && sameLimits(limits, DEFAULT_CLUSTER_POLICY.limits);
    const key = shared ? "" : `${cluster}\u0000${JSON.stringify(limits)}\u0000${JSON.stringify(tls ?? null)}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({
        connect: {
          timeout: limits.connectTimeoutMs,
          ...(limits.tcpKeepalive ? { keepAlive: true, keepAliveInitialDelay: limits.tcpKeepalive.timeMs } : {}),
          ...(tls ? tlsConnectOptions(tls) : {}),
        },
        // Envoy's max_connections bounds the cluster; undici bounds each endpoint's pool.
        ...(limits.maxConnections < UNLIMITED ? { connections: limits.maxConnections } : {}),
        ...(limits.maxRequestsPerConnection > 0 ? { maxRequestsPerClient: limits.maxRequestsPerConnection } : {}),
        // Envoy's max_connection_duration: the pool retires a connection once it is this old.
        ...(limits.maxConnectionDurationMs > 0 ? { clientTtl: limits.maxConnectionDurationMs } : {}),
        keepAliveTimeout: Math.min(limits.idleTimeoutMs, 60_000),
        keepAliveMaxTimeout: limits.idleTimeoutMs,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      this.agents.set(key, agent);
    }
    return agent;
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.close()));
    this.agents.clear();
    for (const p of this.h2.values()) p.close();
    this.h2.clear();
  }
}

/**
 * Node TLS options for ClientTLSSettings: the CA (else the system's), the client
 * certificate for MUTUAL, SNI (else the request's authority, which undici sends),
 * and SAN verification against subjectAltNames when given (else the hostname).
 */
function tlsConnectOptions(tls: UpstreamTlsModel): Record<string, unknown> {
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
