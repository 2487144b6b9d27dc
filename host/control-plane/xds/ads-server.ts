// The Aggregated Discovery Service over gRPC: StreamAggregatedResources (state
// of the world, what gRPC clients use) and DeltaAggregatedResources
// (incremental, what Istio's Envoy uses), on istiod's plaintext port 15010.

import * as grpc from "@grpc/grpc-js";
import { formatDiagnostic } from "../../config/diagnostics.js";
import type { Logger } from "../../log.js";
import { DECODE_OPTIONS, messageType, TYPE_SHORT_NAMES } from "../../envoy/protos.js";
import type { Mesh } from "../mesh.js";
import type { ControlPlaneMetrics } from "../metrics.js";
import { AdsConnection, type ConnectionEvents, type DeltaDiscoveryRequest, type DiscoveryRequest, type Outbound } from "./connection.js";
import { parseNode, type ProxyNode } from "./node.js";

const SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/** Istio's gRPC server limits (ISTIO_GPRC_MAXSTREAMS, ISTIO_GPRC_MAXRECVMSGSIZE). */
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_concurrent_streams": 100_000,
  "grpc.max_receive_message_length": 4 * 1024 * 1024,
  // A stream with nothing to send for minutes is normal; dead peers are found by keepalive.
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
};

function codec(typeName: string): { serialize: (m: object) => Buffer; deserialize: (b: Buffer) => object } {
  const type = messageType(typeName);
  return {
    // Responses arrive encoded already (wire.ts); test clients send objects.
    serialize: (m) => (Buffer.isBuffer(m) ? m : Buffer.from(type.encode(type.fromObject(m)).finish())),
    // A message that does not decode fails the call (grpc-js answers INTERNAL), never the server.
    deserialize: (b) => type.toObject(type.decode(b), DECODE_OPTIONS),
  };
}

/** The service, with protobufjs codecs for its messages (the server and test clients share it). */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  const req = codec("envoy.service.discovery.v3.DiscoveryRequest");
  const res = codec("envoy.service.discovery.v3.DiscoveryResponse");
  const dreq = codec("envoy.service.discovery.v3.DeltaDiscoveryRequest");
  const dres = codec("envoy.service.discovery.v3.DeltaDiscoveryResponse");
  const method = (name: string, rq: typeof req, rs: typeof res): grpc.MethodDefinition<object, object | Buffer> => ({
    path: `/${SERVICE}/${name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: rq.serialize,
    requestDeserialize: rq.deserialize,
    responseSerialize: rs.serialize,
    responseDeserialize: rs.deserialize,
  });
  return { StreamAggregatedResources: method("StreamAggregatedResources", req, res), DeltaAggregatedResources: method("DeltaAggregatedResources", dreq, dres) };
}

/** How many proxies are pushed to at once (istiod's PILOT_PUSH_THROTTLE on 2 cores: 15 + 5·2). */
const PUSH_CONCURRENCY = 25;

export class AdsServer {
  readonly connections = new Set<AdsConnection>();
  private nextId = 0;
  /** Push version: an RFC 3339 time and a counter, as istiod's (discovery.go NextVersion). */
  private version = "";
  private versionCounter = 0;

  constructor(
    private readonly mesh: Mesh,
    private readonly metrics: ControlPlaneMetrics,
    private readonly log: Logger,
  ) {
    this.nextVersion();
  }

  get pushVersion(): string {
    return this.version;
  }

  private nextVersion(): void {
    this.version = `${new Date().toISOString().replace(/\.\d+Z$/, "Z")}/${++this.versionCounter}`;
  }

  register(server: grpc.Server): void {
    server.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, object>) => this.serve(call, false),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, object>) => this.serve(call, true),
    });
  }

  private readonly events: ConnectionEvents = {
    nack: (conn, type, detail) => {
      this.metrics.rejects.inc({ type: TYPE_SHORT_NAMES[type] ?? type });
      this.log.warn(`ads: ${TYPE_SHORT_NAMES[type] ?? type} rejected by ${conn.node.name} (${conn.id}): ${detail.slice(0, 2000)}`);
    },
    expiredNonce: (_conn, type) => this.metrics.expiredNonce.inc({ type: TYPE_SHORT_NAMES[type] ?? type }),
    pushed: (_conn, type, _count, seconds, bytes) => {
      const short = TYPE_SHORT_NAMES[type] ?? type;
      this.metrics.pushes.inc({ type: short });
      this.metrics.pushTime.observe({ type: short }, seconds);
      this.metrics.configSize.observe({ type: short }, bytes);
    },
    converged: (_conn, since) => this.metrics.convergence.observe((Date.now() - since) / 1000),
  };

  private serve(call: grpc.ServerDuplexStream<DiscoveryRequest | DeltaDiscoveryRequest, object>, delta: boolean): void {
    let conn: AdsConnection | undefined;
    const peer = call.getPeer();
    const out: Outbound = {
      write: (m) => call.write(m),
      drain: () => new Promise((resolve) => {
        const done = (): void => {
          call.off("drain", done);
          call.off("close", done);
          call.off("error", done);
          resolve();
        };
        call.on("drain", done);
        call.on("close", done);
        call.on("error", done);
      }),
    };
    const end = (): void => {
      if (!conn) return;
      conn.close();
      this.connections.delete(conn);
      this.metrics.connected.dec({ version: conn.node.istioVersion || "unknown" });
      this.log.info(`ads: ${conn.node.name} disconnected (${conn.id})`);
      conn = undefined;
    };
    call.on("data", (req: DiscoveryRequest & DeltaDiscoveryRequest) => {
      try {
        if (!req.type_url) throw new StreamError(grpc.status.INVALID_ARGUMENT, "type_url is required on ADS");
        if (!conn) {
          let node: ProxyNode;
          try {
            node = parseNode(req.node);
          } catch (err) {
            throw new StreamError(grpc.status.INVALID_ARGUMENT, (err as Error).message);
          }
          conn = new AdsConnection(`${node.name}-${++this.nextId}`, node, peer, delta, out, () => this.mesh.resourcesFor(node), () => this.version, this.events);
          this.connections.add(conn);
          this.metrics.connected.inc({ version: node.istioVersion || "unknown" });
          this.log.info(`ads: ${node.name} connected (${conn.id}, ${delta ? "delta" : "state of the world"}, ${node.generator} generator) from ${peer}`);
          const problems = this.mesh.resourcesFor(node).diagnostics;
          for (const d of problems) this.log.warn(`ads: ${node.name}: ${formatDiagnostic(d)}`);
        }
        if (delta) conn.onDeltaRequest(req);
        else conn.onRequest(req);
      } catch (err) {
        const code = err instanceof StreamError ? err.code : grpc.status.INTERNAL;
        if (!(err instanceof StreamError)) {
          this.metrics.internalErrors.inc();
          this.log.error(`ads: internal error on ${conn?.id ?? peer}: ${(err as Error).stack ?? String(err)}`);
        }
        end();
        // grpc-js ends a server stream with this status when it sees the error event.
        call.emit("error", { code, details: (err as Error).message });
      }
    });
    call.on("end", () => {
      end();
      call.end();
    });
    call.on("error", end);
    call.on("close", end);
    call.on("cancelled", end);
  }

  /**
   * A new mesh version reached the proxies: each connection queues its own push
   * (merged with one already queued), at most PUSH_CONCURRENCY starting at once.
   */
  async pushAll(since: number): Promise<void> {
    this.nextVersion();
    const all = [...this.connections];
    for (let i = 0; i < all.length; i += PUSH_CONCURRENCY) {
      for (const conn of all.slice(i, i + PUSH_CONCURRENCY)) {
        try {
          conn.schedulePush(since);
        } catch (err) {
          this.metrics.internalErrors.inc();
          this.log.error(`ads: push to ${conn.id} failed: ${(err as Error).stack ?? String(err)}`);
        }
      }
      // Let the streams write between batches, so requests keep being answered during a large push.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

class StreamError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}
