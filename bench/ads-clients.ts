// Simulated sidecars for `npm run bench:control-plane`, in their own process:
// each opens its own connection and a Delta ADS stream, and subscribes as Envoy
// does (CDS wildcard, EDS for the EDS clusters it got, LDS wildcard, RDS for the
// route configs), ACKing every response at once. Responses are read with a
// wire-level scan for the few fields a client needs (type, version, nonce,
// resource names), not decoded: the client side should cost as little as it
// can, so the control plane's costs are what the numbers show.
//
// Driven over IPC by bench/control-plane.bench.ts:
//   {cmd: "start", port, clients, namespaces} → {event: "synced", ms}
//   {cmd: "expect", type, since}              → {event: "converged", latencies}

import * as grpc from "@grpc/grpc-js";
import { messageType, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from "../host/envoy/protos.js";

const SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
const DeltaRequest = messageType("envoy.service.discovery.v3.DeltaDiscoveryRequest");

interface Response {
  version: string;
  type: string;
  nonce: string;
  names: string[];
}

/** Reads a varint at `pos`: [value, next position]. */
function varint(b: Buffer, pos: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = b[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, pos];
    shift += 7;
  }
}

/** Calls `field(number, start, end)` for each length-delimited field of the message in b[start, end). */
function scan(b: Buffer, start: number, end: number, field: (n: number, s: number, e: number) => void): void {
  let pos = start;
  while (pos < end) {
    const [tag, p] = varint(b, pos);
    pos = p;
    const wire = tag & 7;
    if (wire === 2) {
      const [len, q] = varint(b, pos);
      field(Math.floor(tag / 8), q, q + len);
      pos = q + len;
    } else if (wire === 0) pos = varint(b, pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`wire type ${wire}`);
  }
}

/** DeltaDiscoveryResponse: system_version_info 1, resources 2 (Resource: name 3), type_url 4, nonce 5. */
function readResponse(b: Buffer): Response {
  const r: Response = { version: "", type: "", nonce: "", names: [] };
  scan(b, 0, b.length, (n, s, e) => {
    if (n === 1) r.version = b.toString("utf8", s, e);
    else if (n === 4) r.type = b.toString("utf8", s, e);
    else if (n === 5) r.nonce = b.toString("utf8", s, e);
    else if (n === 2) scan(b, s, e, (m, s2, e2) => {
      if (m === 3) r.names.push(b.toString("utf8", s2, e2));
    });
  });
  return r;
}

const method: grpc.MethodDefinition<object, Buffer> = {
  path: SERVICE,
  requestStream: true,
  responseStream: true,
  requestSerialize: (m) => Buffer.from(DeltaRequest.encode(DeltaRequest.fromObject(m)).finish()),
  requestDeserialize: () => ({}),
  responseSerialize: (b) => b,
  responseDeserialize: (b) => b,
};

class Sidecar {
  synced = false;
  /** Per type: time (ms since epoch) of each response, newest last. */
  readonly received = new Map<string, number[]>();
  private call!: grpc.ClientDuplexStream<object, Buffer>;
  private readonly subscribed = new Set<string>();

  constructor(
    private readonly client: grpc.Client,
    private readonly node: object,
    private readonly onSynced: () => void,
  ) {}

  start(): void {
    this.call = this.client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
    this.call.on("data", (b: Buffer) => this.onResponse(readResponse(b)));
    this.call.on("error", () => {});
    this.call.write({ node: this.node, type_url: CLUSTER_TYPE });
  }

  private onResponse(r: Response): void {
    const times = this.received.get(r.type) ?? [];
    times.push(Date.now());
    this.received.set(r.type, times);
    this.call.write({ type_url: r.type, response_nonce: r.nonce });
    if (this.synced) return;
    // Envoy's warming order: clusters, their endpoints, listeners, their routes.
    if (r.type === CLUSTER_TYPE && !this.subscribed.has(ENDPOINT_TYPE)) {
      this.subscribed.add(ENDPOINT_TYPE);
      this.call.write({ type_url: ENDPOINT_TYPE, resource_names_subscribe: r.names.filter((n) => n.startsWith("outbound|")) });
    } else if (r.type === ENDPOINT_TYPE && !this.subscribed.has(LISTENER_TYPE)) {
      this.subscribed.add(LISTENER_TYPE);
      this.call.write({ type_url: LISTENER_TYPE });
    } else if (r.type === LISTENER_TYPE && !this.subscribed.has(ROUTE_TYPE)) {
      this.subscribed.add(ROUTE_TYPE);
      // The sidecar's HTTP listeners are named 0.0.0.0_PORT and take route config PORT.
      this.call.write({ type_url: ROUTE_TYPE, resource_names_subscribe: r.names.filter((n) => n.startsWith("0.0.0.0_")).map((n) => n.slice("0.0.0.0_".length)) });
    } else if (r.type === ROUTE_TYPE) {
      this.synced = true;
      this.onSynced();
    }
  }

  close(): void {
    this.call?.cancel();
    this.client.close();
  }
}

const sidecars: Sidecar[] = [];

function send(message: object): void {
  process.send!(message);
}

process.on("message", (msg: { cmd: string; port?: number; clients?: number; namespaces?: number; type?: string; since?: number; timeoutMs?: number }) => {
  if (msg.cmd === "start") {
    const started = Date.now();
    let synced = 0;
    for (let i = 0; i < msg.clients!; i++) {
      const ns = `ns-${i % msg.namespaces!}`;
      // Each sidecar on its own connection, as each pod's Envoy is, with Envoy's HTTP/2
      // flow-control window (initial_stream_window_size: 256 MiB), not Node's 64 KiB.
      const client = new grpc.Client(`127.0.0.1:${msg.port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.max_receive_message_length": -1, "grpc-node.flow_control_window": 256 * 1024 * 1024 });
      const node = { id: `sidecar~10.1.${i >> 8}.${i & 255}~pod-${i}.${ns}~${ns}.svc.cluster.local`, metadata: { fields: { NAMESPACE: { stringValue: ns }, ISTIO_VERSION: { stringValue: "1.28.0" }, LABELS: { structValue: { fields: { app: { stringValue: `svc-${i % 1000}` }, version: { stringValue: "v1" } } } } } } };
      const s = new Sidecar(client, node, () => {
        if (++synced === msg.clients) send({ event: "synced", ms: Date.now() - started });
      });
      sidecars.push(s);
      s.start();
    }
  } else if (msg.cmd === "expect") {
    // The first response of the type after `since`, for every sidecar.
    const until = Date.now() + (msg.timeoutMs ?? 60_000);
    const check = (): void => {
      const latencies = sidecars.map((s) => (s.received.get(msg.type!) ?? []).find((t) => t >= msg.since!));
      if (latencies.every((t) => t !== undefined) || Date.now() > until) {
        send({ event: "converged", latencies: latencies.map((t) => (t === undefined ? -1 : t - msg.since!)) });
        return;
      }
      setTimeout(check, 10);
    };
    check();
  } else if (msg.cmd === "stop") {
    for (const s of sidecars) s.close();
    process.exit(0);
  }
});
send({ event: "ready" });
