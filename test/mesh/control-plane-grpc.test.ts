// The control plane verified by a client nobody here wrote: @grpc/grpc-js-xds
// clients, configured only by `instio control-plane` over ADS, calling plain
// gRPC backends registered as Kubernetes pods, with Istio YAML as a user writes it.

import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { eventually, kubeService, startBackend, startMesh, type Backend, type TestMesh } from "../support/mesh.js";

const HOST = "echo.default.svc.cluster.local";
const TARGET = "echo:7070";

function subsets(extraPolicy = ""): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
${extraPolicy}  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
`;
}

function virtualService(http: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
${http}`;
}

const ROUTE_V1 = virtualService(`  - route: [{destination: {host: echo, subset: v1}}]\n`);

async function metric(mesh: TestMesh, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.cp.monitoringPort}/metrics`)).text();
  return parseExposition(text).sum(name, labels);
}

async function names(calls: Promise<string>[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const n of await Promise.all(calls)) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

describe("control plane → @grpc/grpc-js-xds", () => {
  let v1: Backend, v2: Backend, v3: Backend;
  let mesh: TestMesh;

  beforeAll(async () => {
    [v1, v2, v3] = await Promise.all([startBackend("echo-v1", "v1"), startBackend("echo-v2", "v2"), startBackend("echo-v3", "v3")]);
    mesh = await startMesh(`${ROUTE_V1}---\n${subsets()}`, kubeService("echo", 7070, [v1!, v2!, v3!]));
  });
  afterAll(async () => {
    await mesh?.close();
    for (const b of [v1, v2, v3]) b?.close();
  });

  // grpc-js-xds 1.14.1's ring_hash throws out of a timer ("endpoint found in leafWeightMap but not in
  // leafMap") when a later update replaces a ring-hash cluster under a live channel: each test's clients end with it.
  afterEach(() => mesh.closeClients());

  function reset(): void {
    for (const b of [v1, v2, v3]) {
      b.behaviour = { failNext: 0, failAll: false, status: grpc.status.UNAVAILABLE, hold: false };
      b.release();
    }
  }

  it("routes by header to a subset, and everything else by the default route", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - match: [{headers: {x-user: {exact: jason}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
`)}---\n${subsets()}`);
    const client = mesh.client(TARGET);
    expect(await client.call()).toBe("echo-v1");
    expect(await client.call({ "x-user": "jason" })).toBe("echo-v2");
    expect(await client.call({ "x-user": "someone" })).toBe("echo-v1");
    // The full name and the short forms Istio generates reach the same virtual host.
    expect(await mesh.client(`${HOST}:7070`).call({ "x-user": "jason" })).toBe("echo-v2");
  });

  it("splits traffic by weight (1000 calls, 80/20, within 5 standard deviations)", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
`)}---\n${subsets()}`);
    const client = mesh.client(TARGET);
    const counts = await names(Array.from({ length: 1000 }, () => client.call()));
    // Binomial(1000, 0.2): mean 200, sd 12.6; ±63 fails by chance about once in 3.5 million runs.
    expect(counts["echo-v2"]).toBeGreaterThan(200 - 63);
    expect(counts["echo-v2"]).toBeLessThan(200 + 63);
    expect((counts["echo-v1"] ?? 0) + (counts["echo-v2"] ?? 0)).toBe(1000);
  });

  it("injects an abort fault (gRPC status) and a delay fault (the deadline passes first)", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: "RESOURCE_EXHAUSTED", percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 5s, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - route: [{destination: {host: echo, subset: v1}}]
`)}---\n${subsets()}`);
    const client = mesh.client(TARGET);
    const before = v1.calls;
    await expect(client.call({ "x-fault": "abort" })).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    await expect(client.call({ "x-fault": "delay" }, 300)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    expect(v1.calls).toBe(before); // neither reached the backend
    expect(await client.call({}, 300)).toBe("echo-v1");
  });

  it("retries the gRPC codes in retryOn, up to attempts", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo, subset: v1}}]
    retries: {attempts: 3, retryOn: unavailable}
`)}---\n${subsets()}`);
    const client = mesh.client(TARGET);
    v1.behaviour.failNext = 2;
    const before = v1.calls;
    expect(await client.call()).toBe("echo-v1");
    expect(v1.calls - before).toBe(3);
    v1.behaviour.failNext = 5;
    await expect(client.call()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("applies the route timeout as the call's deadline", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo, subset: v1}}]
    timeout: 200ms
`)}---\n${subsets()}`);
    const client = mesh.client(TARGET);
    expect(await client.call()).toBe("echo-v1");
    v1.behaviour.hold = true;
    await expect(client.call({}, 20_000)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    v1.release();
  });

  it("keeps a key on one endpoint with a ring hash on a header", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo}}]\n`)}---\n${subsets(`  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
`)}`);
    const client = mesh.client(TARGET);
    const homes = new Set<string>();
    for (let user = 0; user < 30; user++) {
      const answers = await names(Array.from({ length: 5 }, () => client.call({ "x-user": `user-${user}` })));
      expect(Object.keys(answers)).toHaveLength(1); // every call with this key went to one endpoint
      homes.add(Object.keys(answers)[0]!);
    }
    expect(homes.size).toBeGreaterThan(1); // and different keys spread over the endpoints
  });

  // Open (issue 14): grpc-js does not eject yet with the failure-percentage mapping.
  it("ejects an endpoint whose calls all fail (outlier detection)", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo}}]\n`)}---\n${subsets(`  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
`)}`);
    const client = mesh.client(TARGET);
    v3.behaviour.failAll = true;
    v3.behaviour.status = grpc.status.INTERNAL;
    // Round robin over three endpoints: a third of the calls fail until v3 is ejected
    // (once v3 is connected: round robin picks only ready endpoints).
    await eventually(async () => {
      await Promise.allSettled(Array.from({ length: 10 }, () => client.call()));
      return v3.calls >= 3;
    }, 10_000, "v3 to get calls");
    await eventually(async () => {
      const results = await Promise.allSettled(Array.from({ length: 30 }, () => client.call()));
      return results.every((r) => r.status === "fulfilled");
    }, 15_000, "v3 to be ejected");
    const before = v3.calls;
    await names(Array.from({ length: 30 }, () => client.call()));
    expect(v3.calls).toBe(before);
  });

  it("enforces a circuit-breaker limit on concurrent requests", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo, subset: v1}}]\n`)}---\n${subsets(`  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1}}
`)}`);
    const client = mesh.client(TARGET);
    expect(await client.call()).toBe("echo-v1");
    v1.behaviour.hold = true;
    const first = client.call();
    await eventually(() => v1.held() === 1, 5000, "the first call to be held");
    await expect(client.call()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    v1.release();
    expect(await first).toBe("echo-v1");
  });

  it("moves running clients to a new split on a VirtualService edit, with no failed call", async () => {
    reset();
    await mesh.setIstio(`${ROUTE_V1}---\n${subsets()}`);
    const clients = Array.from({ length: 4 }, () => mesh.client(TARGET));
    for (const c of clients) expect(await c.call()).toBe("echo-v1");
    const failures: string[] = [];
    let running = true;
    const seen: string[] = [];
    const loops = clients.map(async (c) => {
      while (running) {
        try {
          seen.push(await c.call());
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo, subset: v2}}]\n`)}---\n${subsets()}`);
    await eventually(() => seen.slice(-20).length === 20 && seen.slice(-20).every((n) => n === "echo-v2"), 10_000, "clients to move to v2");
    running = false;
    await Promise.all(loops);
    expect(failures).toEqual([]);
  });

  it("follows an EndpointSlice scaled up and down, with no failed call", async () => {
    reset();
    await mesh.setIstio(`${virtualService(`  - route: [{destination: {host: echo}}]\n`)}---\n${subsets(`  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n`)}`);
    await mesh.setKube(kubeService("echo", 7070, [v1]));
    const client = mesh.client(TARGET);
    expect(await client.call()).toBe("echo-v1");
    let failures = 0;
    let running = true;
    const seen: string[] = [];
    const loop = (async () => {
      while (running) {
        try {
          seen.push(await client.call());
        } catch {
          failures++;
        }
      }
    })();
    const pushesBefore = { eds: await metric(mesh, "pilot_xds_pushes", { type: "eds" }), cds: await metric(mesh, "pilot_xds_pushes", { type: "cds" }) };
    await mesh.setKube(kubeService("echo", 7070, [v1, v2]));
    await eventually(() => seen.includes("echo-v2"), 10_000, "the new endpoint to get traffic");
    // An endpoint-only change pushes EDS alone.
    expect(await metric(mesh, "pilot_xds_pushes", { type: "eds" })).toBeGreaterThan(pushesBefore.eds);
    expect(await metric(mesh, "pilot_xds_pushes", { type: "cds" })).toBe(pushesBefore.cds);
    await mesh.setKube(kubeService("echo", 7070, [v2]));
    await eventually(() => seen.slice(-20).length === 20 && seen.slice(-20).every((n) => n === "echo-v2"), 10_000, "the removed endpoint to get none");
    const v1Before = v1.calls;
    const n = seen.length;
    await eventually(() => seen.length > n + 20, 10_000, "more calls");
    running = false;
    await loop;
    expect(v1.calls).toBe(v1Before);
    expect(failures).toBe(0);
    await mesh.setKube(kubeService("echo", 7070, [v1, v2, v3]));
  });

  it("shows a NACK provoked on purpose in the metrics and in the sync status", async () => {
    reset();
    // gRPC clients reject MAGLEV (as with istiod): the cluster is NACKed, the client keeps its last good one.
    await mesh.setIstio(`${ROUTE_V1}---\n${subsets()}`);
    const client = mesh.client(TARGET, "nacker");
    expect(await client.call()).toBe("echo-v1");
    const rejectsBefore = await metric(mesh, "pilot_total_xds_rejects", { type: "cds" });
    await mesh.setIstio(`${ROUTE_V1}---\n${subsets(`  trafficPolicy:
    loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, httpHeaderName: x-user}}
`)}`);
    await eventually(async () => (await metric(mesh, "pilot_total_xds_rejects", { type: "cds" })) > rejectsBefore, 10_000, "the NACK");
    const status = (await (await fetch(`http://127.0.0.1:${mesh.cp.monitoringPort}/debug/syncz`)).json()) as { proxy: string; cds: string; last_error: Record<string, string> }[];
    const mine = status.find((s) => s.proxy === "nacker.default")!;
    expect(mine.cds).toBe("ERROR");
    expect(mine.last_error.cds).toMatch(/MAGLEV|lb_policy|policy/i);
    expect(mesh.logs.some((l) => /cds rejected by nacker\.default/.test(l))).toBe(true);
    // The client keeps serving with what it had.
    expect(await client.call()).toBe("echo-v1");
    await mesh.setIstio(`${ROUTE_V1}---\n${subsets()}`);
    await eventually(async () => {
      const s = (await (await fetch(`http://127.0.0.1:${mesh.cp.monitoringPort}/debug/syncz`)).json()) as { proxy: string; cds: string }[];
      return s.find((x) => x.proxy === "nacker.default")?.cds === "SYNCED";
    }, 10_000, "the fixed config to be ACKed");
  });
});
