// Upstream connection pools per connection-pool policy. Clusters without a
// DestinationRule connectionPool share one HTTP/1.1 client; a cluster with one
// gets a client configured from it (connections per endpoint, requests per
// connection, connect and idle timeouts, connection lifetime, TCP keepalive).
// Clients are kept by policy and cluster across reloads, so an unchanged
// config reuses its connections; a client no serving cluster uses any more
// drains (requests in flight finish) and closes, as Envoy drains a removed
// cluster.

import { H1Upstream } from "../upstream/h1-upstream.js";
import { H2Upstream } from "../upstream/h2-upstream.js";
import { createHash } from "node:crypto";
import { checkServerIdentity, createSecureContext, type ConnectionOptions, type PeerCertificate, type SecureContext } from "node:tls";
import { DEFAULT_CLUSTER_POLICY, UNLIMITED, type ClusterPolicy, type UpstreamTlsModel } from "../config/traffic-policy.js";

/** The workload's own certificate (the sidecar's identity), for ISTIO_MUTUAL: read at each new connection, so a renewal applies to the next one. */
export type WorkloadIdentity = () => { key: string; chain: string[] } | undefined;

/** Istio's InboundPassthroughBindIpv4: the source of a sidecar's connections to its own application. */
export const INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6";

export class PoolRegistry {
  /** Set when the proxy has a workload certificate (security/workload-certificates.ts). */
  workloadIdentity: WorkloadIdentity | undefined;
  // Keyed by cluster name and a digest of the settings (never the TLS key material itself).
  private readonly h1 = new Map<string, { cluster: string; pool: H1Upstream }>();
  private readonly h2 = new Map<string, { cluster: string; pool: H2Upstream }>();

  /** The HTTP/2 sessions of a cluster whose port speaks HTTP2 or GRPC (over TLS when `tls` is set). */
  http2For(cluster: string, limits: ClusterPolicy["limits"], tls?: UpstreamTlsModel): H2Upstream {
    const key = `${cluster}\u0000${limits.connectTimeoutMs}\u0000${tls ? settingsDigest(limits, tls) : ""}`;
    let entry = this.h2.get(key);
    if (!entry) this.h2.set(key, (entry = { cluster, pool: new H2Upstream(limits.connectTimeoutMs, tls ? tlsConnectOptions(tls, () => this.workloadIdentity?.(), "h2") : undefined) }));
    return entry.pool;
  }

  /** The HTTP/1.1 client for a cluster with `limits` (and TLS origination when `tls` is set). */
  for(cluster: string, limits: ClusterPolicy["limits"], tls?: UpstreamTlsModel): H1Upstream {
    const shared = !tls && sameLimits(limits, DEFAULT_CLUSTER_POLICY.limits);
    const key = shared ? "" : `${cluster}\u0000${settingsDigest(limits, tls)}`;
    let entry = this.h1.get(key);
    if (!entry) {
      const pool = new H1Upstream({
        connectTimeoutMs: limits.connectTimeoutMs,
        ...(limits.tcpKeepalive ? { tcpKeepaliveMs: limits.tcpKeepalive.timeMs } : {}),
        // Envoy's max_connections bounds the cluster; this bounds each endpoint's pool.
        maxConnections: limits.maxConnections < UNLIMITED ? limits.maxConnections : Infinity,
        maxRequestsPerConnection: limits.maxRequestsPerConnection,
        maxConnectionDurationMs: limits.maxConnectionDurationMs,
        idleTimeoutMs: limits.idleTimeoutMs,
        ...(tls ? { tls: tlsConnectOptions(tls, () => this.workloadIdentity?.(), "http/1.1") } : {}),
      });
      this.h1.set(key, (entry = { cluster: shared ? "" : cluster, pool }));
    }
    return entry.pool;
  }

  /**
   * After a config change: the pools of clusters (or of settings) the new config does not use
   * drain, as Envoy drains a removed cluster: requests in flight finish, then the connections
   * close. `used` are the pools the serving snapshot holds. The shared pool stays.
   */
  retainOnly(used: ReadonlySet<H1Upstream | H2Upstream>): void {
    for (const [key, e] of this.h1) {
      if (e.cluster === "" || used.has(e.pool)) continue;
      this.h1.delete(key);
      void e.pool.close();
    }
    for (const [key, e] of this.h2) {
      if (used.has(e.pool)) continue;
      this.h2.delete(key);
      e.pool.close();
    }
  }

  /**
   * The client a capturing inbound listener forwards to the application with: from 127.0.0.6, as Envoy's inbound
   * clusters bind (upstream_bind_config), so that the capture rules let the connection through to the app
   * (ISTIO_OUTPUT returns what leaves lo from 127.0.0.6) instead of redirecting it to 15006 again.
   */
  inboundPassthrough(): H1Upstream {
    const key = "\u0000inbound-passthrough";
    let entry = this.h1.get(key);
    if (!entry) {
      const l = DEFAULT_CLUSTER_POLICY.limits;
      const pool = new H1Upstream({ connectTimeoutMs: l.connectTimeoutMs, maxConnections: Infinity, maxRequestsPerConnection: l.maxRequestsPerConnection, maxConnectionDurationMs: l.maxConnectionDurationMs, idleTimeoutMs: l.idleTimeoutMs, localAddress: INBOUND_PASSTHROUGH_SOURCE });
      // (cluster "": kept across config changes, like the shared pool.)
      this.h1.set(key, (entry = { cluster: "", pool }));
    }
    return entry.pool;
  }

  /** How many pools exist (tests: eviction). */
  get size(): number {
    return this.h1.size + this.h2.size;
  }

  async close(): Promise<void> {
    await Promise.all([...this.h1.values()].map((e) => e.pool.close()));
    this.h1.clear();
    for (const e of this.h2.values()) e.pool.close();
    this.h2.clear();
  }
}

/**
 * Node TLS options for ClientTLSSettings, for an HTTP/1.1 or HTTP/2 upstream: the CA (else the system's), the client
 * certificate for MUTUAL, SNI (else the request's authority, see h1-upstream.ts),
 * and SAN verification against subjectAltNames when given (else the hostname).
 */
function tlsConnectOptions(tls: UpstreamTlsModel, identity: WorkloadIdentity, protocol: "http/1.1" | "h2"): ConnectionOptions {
  const expected = tls.subjectAltNames;
  if (tls.mode === "ISTIO_MUTUAL") {
    // The certificate as it is when each connection is made (getters: the clients spread these options per
    // connection), in one SecureContext per certificate: without one, node parses the PEM key, chain and root
    // again for every connection, which cost more than the handshake itself. Istio's ALPN for a sidecar
    // calling a sidecar (its istio.alpn filter).
    let made: { for: ReturnType<WorkloadIdentity>; context: SecureContext } | undefined;
    const context = (): SecureContext | undefined => {
      const id = identity();
      if (id === undefined) return undefined;
      if (made?.for !== id) made = { for: id, context: createSecureContext({ cert: id.chain.slice(0, -1).join(""), key: id.key, ca: id.chain.at(-1) }) };
      return made.context;
    };
    const options: ConnectionOptions = { ALPNProtocols: [protocol === "h2" ? "istio-h2" : "istio-http/1.1", "istio", protocol], servername: tls.sni, rejectUnauthorized: true, checkServerIdentity: sanCheck(expected) };
    Object.defineProperties(options, {
      secureContext: { enumerable: true, get: context },
      // Tells the clients that this connection presents a workload certificate (they read the peer's principal then).
      cert: { enumerable: true, get: () => identity()?.chain[0] },
    });
    return options;
  }
  let context: SecureContext | undefined;
  const options: ConnectionOptions = {
    ...(protocol === "h2" ? { ALPNProtocols: ["h2"] } : {}),
    ...(tls.mode === "MUTUAL" ? { cert: tls.cert } : {}),
    ...(tls.sni ? { servername: tls.sni } : {}),
    rejectUnauthorized: !tls.insecureSkipVerify,
    checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined => (tls.insecureSkipVerify ? undefined : sanCheck(expected)(host, cert)),
  };
  // Made at the first connection, once (the same reason as above; no CA given means the system's roots).
  Object.defineProperty(options, "secureContext", { enumerable: true, get: () => (context ??= createSecureContext({ ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.mode === "MUTUAL" ? { cert: tls.cert, key: tls.key } : {}) })) });
  return options;
}

/** SAN verification against `expected` names (DNS or SPIFFE URI); with none, the hostname. */
function sanCheck(expected: readonly string[]): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    if (expected.length === 0) return checkServerIdentity(host, cert);
    const sans = (cert.subjectaltname ?? "").split(", ").map((s) => s.replace(/^(DNS|URI|IP Address):/, ""));
    if (expected.some((e) => sans.includes(e))) return undefined;
    return Object.assign(new Error(`certificate SANs ${sans.join(", ") || "(none)"} do not include ${expected.join(" or ")}`), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
  };
}

/** A digest of a pool's settings: equal settings share a pool, and no key holds a private key. */
function settingsDigest(limits: ClusterPolicy["limits"], tls: UpstreamTlsModel | undefined): string {
  return createHash("sha256").update(JSON.stringify(limits)).update("\u0000").update(JSON.stringify(tls ?? null)).digest("base64");
}

function sameLimits(a: ClusterPolicy["limits"], b: ClusterPolicy["limits"]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
