// Upstream connection pools per connection-pool policy. Clusters without a
// DestinationRule connectionPool share one undici Agent; a cluster with one
// gets an Agent configured from it (connections per endpoint, requests per
// connection, connect and idle timeouts, TCP keepalive). Agents are kept by
// policy and cluster across reloads, so an unchanged config reuses its
// connections.

import { Agent } from "undici";
import { H2Upstream } from "../proxy/h2-upstream.js";
import { DEFAULT_CLUSTER_POLICY, UNLIMITED, type ClusterPolicy } from "../config/traffic-policy.js";

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

  /** The dispatcher for a cluster with `limits`. */
  for(cluster: string, limits: ClusterPolicy["limits"]): Agent {
    const shared = sameLimits(limits, DEFAULT_CLUSTER_POLICY.limits);
    const key = shared ? "" : `${cluster}\u0000${JSON.stringify(limits)}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({
        connect: {
          timeout: limits.connectTimeoutMs,
          ...(limits.tcpKeepalive ? { keepAlive: true, keepAliveInitialDelay: limits.tcpKeepalive.timeMs } : {}),
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

function sameLimits(a: ClusterPolicy["limits"], b: ClusterPolicy["limits"]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
