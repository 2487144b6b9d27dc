// A bare ADS client for protocol tests: one stream, requests written as given,
// responses queued for the test to read. It does nothing on its own (no ACKs),
// so a test can send what a well-behaved client would not.

import * as grpc from "@grpc/grpc-js";
import { adsServiceDefinition } from "../../host/control-plane/xds/ads-server.js";
import { unpackAny, type AnyMessage } from "../../host/envoy/protos.js";

const AdsClient = grpc.makeGenericClientConstructor(adsServiceDefinition(), "AggregatedDiscoveryService");

export interface AdsResponse {
  version_info?: string;
  system_version_info?: string;
  type_url: string;
  nonce: string;
  resources?: AnyMessage[] | { name: string; version: string; resource: AnyMessage }[];
  removed_resources?: string[];
}

export interface AdsStream {
  send(request: object): void;
  /** The next response (rejects after `timeoutMs`, or with the stream's error). */
  next(timeoutMs?: number): Promise<AdsResponse>;
  /** Resolves when nothing arrives for `ms`; rejects with what did. */
  quiet(ms: number): Promise<void>;
  /** The stream's end status. */
  status: Promise<grpc.StatusObject>;
  close(): void;
}

export function openAds(port: number, delta: boolean): AdsStream {
  const client = new AdsClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, () => grpc.ClientDuplexStream<object, AdsResponse>>;
  const call = delta ? client.DeltaAggregatedResources!() : client.StreamAggregatedResources!();
  const queue: AdsResponse[] = [];
  let waiter: ((r: AdsResponse | Error) => void) | undefined;
  let failure: Error | undefined;
  call.on("data", (r: AdsResponse) => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(r);
    } else queue.push(r);
  });
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("error", (err: Error) => {
    failure = err;
    waiter?.(err);
    waiter = undefined;
  });
  return {
    send: (request) => call.write(request),
    next: (timeoutMs = 5000) => {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new Error(`no ADS response within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = (r) => {
          clearTimeout(timer);
          if (r instanceof Error) reject(r);
          else resolve(r);
        };
      });
    },
    quiet: (ms) => new Promise((resolve, reject) => {
      if (queue.length > 0) return reject(new Error(`unexpected response: ${JSON.stringify(summary(queue[0]!))}`));
      const timer = setTimeout(() => {
        waiter = undefined;
        resolve();
      }, ms);
      waiter = (r) => {
        clearTimeout(timer);
        reject(r instanceof Error ? r : new Error(`unexpected response: ${JSON.stringify(summary(r))}`));
      };
    }),
    status,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

/** The names of a response's resources (SotW Any or Delta Resource). */
export function resourceNames(r: AdsResponse): string[] {
  return (r.resources ?? []).map((x) => {
    const any = "resource" in x ? x.resource : x;
    const r = unpackAny(any);
    return String(r.name ?? r.cluster_name ?? ""); // a ClusterLoadAssignment is named by cluster_name

  });
}

function summary(r: AdsResponse): object {
  return { type: r.type_url, version: r.version_info ?? r.system_version_info, names: resourceNames(r), removed: r.removed_resources };
}

/** An xDS node as pilot-agent (sidecar) or a gRPC bootstrap (grpc) sends it. */
export function adsNode(pod: string, namespace: string, generator: "sidecar" | "grpc" = "sidecar"): object {
  const fields: Record<string, object> = { NAMESPACE: { stringValue: namespace }, ISTIO_VERSION: { stringValue: "1.28.0" } };
  if (generator === "grpc") fields.GENERATOR = { stringValue: "grpc" };
  return { id: `sidecar~10.0.0.1~${pod}.${namespace}~${namespace}.svc.cluster.local`, metadata: { fields } };
}
