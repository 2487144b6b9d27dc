// The ADS listener under hostile input: random bytes where a DiscoveryRequest
// belongs, and well-formed requests with random types, names, nonces, versions
// and NACKs, on both methods. Whatever arrives, the server ends that stream at
// worst (never the process), hits no internal error on a message it could
// decode, and keeps serving a well-behaved client.

import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from "../../host/envoy/protos.js";
import { adsNode, openAds, resourceNames } from "../support/ads-client.js";
import { kubeService, startMesh, type Backend, type TestMesh } from "../support/mesh.js";

const SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService";
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const RawClient = grpc.makeGenericClientConstructor({
  sotw: { path: `${SERVICE}/StreamAggregatedResources`, requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  delta: { path: `${SERVICE}/DeltaAggregatedResources`, requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
}, "Raw");

/** Writes the messages, half-closes, and waits for the stream to end (or gives up after a while: a quiet server is fine). */
async function exchange(call: grpc.ClientDuplexStream<Buffer, Buffer>, messages: Buffer[]): Promise<void> {
  call.on("data", () => {});
  const ended = new Promise<void>((resolve) => {
    call.on("status", () => resolve());
    call.on("error", () => resolve());
  });
  for (const m of messages) call.write(m);
  call.end();
  await Promise.race([ended, new Promise((r) => setTimeout(r, 150))]);
  call.cancel();
}

const TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, "", "type.googleapis.com/envoy.config.cluster.v3.Nope", "garbage"];
const name = fc.oneof(fc.constantFrom("*", "echo:7070", "outbound|7070||echo.default.svc.cluster.local", "0.0.0.0_7070", "7070"), fc.string({ maxLength: 40 }));
const node = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom("sidecar", "grpc").map((g) => adsNode("fuzz-1", "default", g as "sidecar" | "grpc")),
  fc.record({ id: fc.string({ maxLength: 60 }) }),
);
const sotwRequest = fc.record({
  node,
  type_url: fc.constantFrom(...TYPES),
  version_info: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  resource_names: fc.array(name, { maxLength: 5 }),
  response_nonce: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 100 }) }), { nil: undefined }),
}, { requiredKeys: ["type_url"] });
const deltaRequest = fc.record({
  node,
  type_url: fc.constantFrom(...TYPES),
  resource_names_subscribe: fc.array(name, { maxLength: 5 }),
  resource_names_unsubscribe: fc.array(name, { maxLength: 5 }),
  initial_resource_versions: fc.dictionary(name, fc.string({ maxLength: 16 }), { maxKeys: 3 }),
  response_nonce: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
  error_detail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 100 }) }), { nil: undefined }),
}, { requiredKeys: ["type_url"] });

describe("ADS listener (property)", () => {
  let mesh: TestMesh;
  let raw: grpc.Client & Record<string, () => grpc.ClientDuplexStream<Buffer, Buffer>>;

  beforeAll(async () => {
    mesh = await startMesh("", kubeService("echo", 7070, [{ name: "echo-1", version: "v1", port: 17070 } as Backend]));
    raw = new RawClient(`127.0.0.1:${mesh.cp.xdsPort}`, grpc.credentials.createInsecure()) as typeof raw;
  });
  afterAll(async () => {
    raw?.close();
    await mesh?.close();
  });

  async function stillServes(): Promise<void> {
    const s = openAds(mesh.cp.xdsPort, false);
    s.send({ node: adsNode("witness", "default"), type_url: CLUSTER_TYPE });
    expect(resourceNames(await s.next())).toContain("outbound|7070||echo.default.svc.cluster.local");
    s.close();
  }

  it("survives random bytes on both methods", async () => {
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 4 }), async (delta, frames) => {
      await exchange(delta ? raw.delta!() : raw.sotw!(), frames.map((f) => Buffer.from(f)));
    }), { numRuns: 60 });
    await stillServes();
  });

  it("answers random well-formed requests by the protocol's rules, without an internal error", async () => {
    const errorsBefore = (await mesh.cp.metrics.internalErrors.get()).values[0]?.value ?? 0;
    await fc.assert(fc.asyncProperty(fc.oneof(
      fc.array(sotwRequest, { minLength: 1, maxLength: 5 }).map((r) => ({ delta: false, requests: r })),
      fc.array(deltaRequest, { minLength: 1, maxLength: 5 }).map((r) => ({ delta: true, requests: r })),
    ), async ({ delta, requests }) => {
      const s = openAds(mesh.cp.xdsPort, delta);
      for (const r of requests) s.send(r);
      await Promise.race([s.status, new Promise((r) => setTimeout(r, 100))]);
      s.close();
    }), { numRuns: 80 });
    const errorsAfter = (await mesh.cp.metrics.internalErrors.get()).values[0]?.value ?? 0;
    expect(errorsAfter).toBe(errorsBefore);
    expect(mesh.logs.filter((l) => l.includes("internal error"))).toEqual([]);
    await stillServes();
  });
});
