// gRPC through the proxy with @grpc/grpc-js as client and server: HTTP/2 in
// (h2c listener), HTTP/2 out (a GRPC port), all four call kinds, status codes
// and trailers intact.

import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/echo.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: raw.serialize,
  requestDeserialize: raw.deserialize,
  responseSerialize: raw.serialize,
  responseDeserialize: raw.deserialize,
});
const SERVICE = {
  unary: method("Unary", false, false),
  serverStream: method("ServerStream", false, true),
  clientStream: method("ClientStream", true, false),
  bidi: method("Bidi", true, true),
};
const EchoClient = grpc.makeGenericClientConstructor(SERVICE, "Echo");

/** The generic client's methods, typed for this service. */
interface Echo extends grpc.Client {
  unary(request: Buffer, ...rest: unknown[]): grpc.ClientUnaryCall;
  serverStream(request: Buffer): grpc.ClientReadableStream<Buffer>;
  clientStream(callback: (err: grpc.ServiceError | null, res: Buffer) => void): grpc.ClientWritableStream<Buffer>;
  bidi(): grpc.ClientDuplexStream<Buffer, Buffer>;
}

function settings(): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: test}
spec:
  namespace: default
  listeners:
    outbound: {address: 127.0.0.1, port: 0, engine: h2c}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
`;
}

describe("gRPC (grpc-js client and server)", () => {
  let server: grpc.Server;
  let p: TestProxy;
  let client: Echo;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(SERVICE, {
      unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        const text = call.request.toString();
        if (text === "missing") {
          done({ code: grpc.status.NOT_FOUND, details: "no such thing" });
          return;
        }
        const trailer = new grpc.Metadata();
        trailer.set("x-served-by", "echo");
        done(null, Buffer.from(`echo:${text}:${call.metadata.get("x-user")[0] ?? ""}`), trailer);
      },
      serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        for (let i = 1; i <= 3; i++) call.write(Buffer.from(`${call.request.toString()}-${i}`));
        call.end();
      },
      clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        const parts: string[] = [];
        call.on("data", (b: Buffer) => parts.push(b.toString()));
        call.on("end", () => done(null, Buffer.from(parts.join("+"))));
      },
      bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on("data", (b: Buffer) => call.write(Buffer.from(`re:${b.toString()}`)));
        call.on("end", () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    p = await startTestProxy(`${settings()}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{number: 80, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${port}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: down}
spec:
  hosts: [down.default.svc.cluster.local]
  ports: [{number: 80, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {grpc: 1}}]
`);
    client = new EchoClient(`127.0.0.1:${p.proxy.outbound.port}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "echo" }) as unknown as Echo;
  });
  afterAll(async () => {
    client.close();
    await p.close();
    server.forceShutdown();
  });

  it("unary: the response, request metadata and trailing metadata pass; an error status passes with its details", async () => {
    const md = new grpc.Metadata();
    md.set("x-user", "jason");
    const trailers = new Promise<grpc.Metadata>((resolve) => {
      const call = client.unary(Buffer.from("ping"), md, (err: grpc.ServiceError | null, res: Buffer) => {
        expect(err).toBeNull();
        expect(res.toString()).toBe("echo:ping:jason");
      });
      call.on("status", (s: grpc.StatusObject) => resolve(s.metadata));
    });
    expect((await trailers).get("x-served-by")).toEqual(["echo"]);
    const err = await new Promise<grpc.ServiceError>((resolve) => client.unary(Buffer.from("missing"), (e: grpc.ServiceError) => resolve(e)));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe("no such thing");
  });

  it("answers a gRPC client's failed request the gRPC way, and records grpc-status in Istio's metrics", async () => {
    const down = new EchoClient(`127.0.0.1:${p.proxy.outbound.port}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "down" }) as unknown as Echo;
    const err = await new Promise<grpc.ServiceError>((resolve) => down.unary(Buffer.from("x"), (e: grpc.ServiceError) => resolve(e)));
    down.close();
    expect(err.code).toBe(grpc.status.UNAVAILABLE); // Envoy maps the 503 (UF) local reply to UNAVAILABLE
    expect(err.details).toMatch(/^upstream connect error or disconnect\/reset before headers/);
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("istio_requests_total", { request_protocol: "grpc", grpc_response_status: "14", response_code: "200" })).toBe(1);
    expect(m.sum("istio_requests_total", { request_protocol: "grpc", grpc_response_status: "5" })).toBe(1);
    expect(m.sum("istio_requests_total", { request_protocol: "grpc", grpc_response_status: "0" })).toBeGreaterThanOrEqual(1);
  });

  it("server streaming, client streaming and bidirectional streaming", async () => {
    const streamed = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = client.serverStream(Buffer.from("n"));
      call.on("data", (b: Buffer) => got.push(b.toString()));
      call.on("end", () => resolve(got));
      call.on("error", reject);
    });
    expect(streamed).toEqual(["n-1", "n-2", "n-3"]);

    const joined = await new Promise<string>((resolve, reject) => {
      const call = client.clientStream((err, res) => (err ? reject(err) : resolve(res.toString())));
      for (const part of ["a", "b", "c"]) call.write(Buffer.from(part));
      call.end();
    });
    expect(joined).toBe("a+b+c");

    const echoed = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = client.bidi();
      call.on("data", (b: Buffer) => {
        got.push(b.toString());
        if (got.length < 3) call.write(Buffer.from(`m${got.length + 1}`));
        else call.end();
      });
      call.on("end", () => resolve(got));
      call.on("error", reject);
      call.write(Buffer.from("m1"));
    });
    expect(echoed).toEqual(["re:m1", "re:m2", "re:m3"]);
  });
});
