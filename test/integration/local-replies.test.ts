// Envoy-compatible local replies over real sockets: NR, UH, UF, UPE, NC,
// REGISTRY_ONLY, and the codec errors (400, 431) that never reach an upstream.

import { createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, HTTP1_ENGINES, type Http1Engine } from "../support/proxy.js";
import { rawExchange } from "../support/raw-http.js";
import { closedPort, startUpstream, type Upstream } from "../support/upstream.js";

function mesh(engine: Http1Engine, up: Upstream, dead: number, policy: string, broken = dead): string {
  return `${settingsYaml(engine, `  outboundTrafficPolicy: {mode: ${policy}}`)}---
${serviceEntryYaml("svc", [{ port: up.port, labels: { version: "v1" } }])}---
${serviceEntryYaml("broken", [{ port: broken }])}---
${serviceEntryYaml("dead", [{ port: dead }])}---
${serviceEntryYaml("half", [{ port: dead }, { port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v9, labels: {version: v9}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {exact: /nobody}}]
    route: [{destination: {host: svc, subset: v9}}]
  - match: [{uri: {exact: /nosubset}}]
    route: [{destination: {host: svc, subset: v404}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: svc, subset: v1}}]
`;
}

describe.each(HTTP1_ENGINES)("local replies on the %s listener", (engine) => {
  let up: Upstream;
  let p: TestProxy;
  let broken: Server;

  beforeAll(async () => {
    up = await startUpstream("svc");
    // Answers every request with a head whose bare LF would smuggle a header through.
    broken = createServer((s) => s.once("data", () => s.write("HTTP/1.1 200 OK\r\nx: a\nInjected: yes\r\nContent-Length: 0\r\n\r\n")));
    await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
    p = await startTestProxy(mesh(engine, up, await closedPort(), "ALLOW_ANY", (broken.address() as AddressInfo).port));
  });
  afterAll(async () => {
    await p.close();
    await up.close();
    await new Promise((r) => broken.close(r));
  });

  it("404 with an empty body when no route matches (NR)", async () => {
    const r = await get(p.url, "svc", "/other");
    expect(r.status).toBe(404);
    expect(r.text).toBe("");
  });

  it("503 no healthy upstream when the subset has no endpoints (UH)", async () => {
    const r = await get(p.url, "svc", "/nobody");
    expect(r.status).toBe(503);
    expect(r.text).toBe("no healthy upstream");
  });

  it("503 with an empty body when the subset is defined nowhere (NC)", async () => {
    const r = await get(p.url, "svc", "/nosubset");
    expect(r.status).toBe(503);
    expect(r.text).toBe("");
  });

  it("503 upstream connect error after Istio's default retries when nothing listens (UF)", async () => {
    const r = await get(p.url, "dead", "/");
    expect(r.status).toBe(503);
    expect(r.text).toBe("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure, transport failure reason: delayed connect error: 111");
  });

  it("502 when the upstream's response is malformed, and nothing of it reaches the client (UPE)", async () => {
    const r = await get(p.url, "broken", "/");
    expect(r.status).toBe(502);
    expect(r.text).toBe("upstream connect error or disconnect/reset before headers. reset reason: protocol error");
    expect(r.headers.injected).toBeUndefined();
  });

  it("retries a connection failure on another endpoint (Istio's default connect-failure retry)", async () => {
    for (let i = 0; i < 30; i++) {
      const r = await get(p.url, "half", "/");
      expect(r.status, `${r.text} ${JSON.stringify(r.headers)}`).toBe(200);
    }
  });

  it("400 for a request without Host, and nothing reaches the upstream", async () => {
    const before = up.received.length;
    const reply = await rawExchange(p.proxy.outbound.port, "GET /api HTTP/1.1\r\n\r\n");
    if (engine !== "uws") expect(reply).toMatch(/^HTTP\/1\.1 400/);
    else expect(reply).not.toMatch(/^HTTP\/1\.1 2/); // uWS 20.30 closes the connection instead
    expect(up.received.length).toBe(before);
  });

  it("400 for a malformed request line, and nothing reaches the upstream", async () => {
    const before = up.received.length;
    const reply = await rawExchange(p.proxy.outbound.port, "GARBAGE\r\n\r\n");
    if (engine !== "uws") expect(reply).toMatch(/^HTTP\/1\.1 400/);
    else expect(reply).toBe("");
    expect(up.received.length).toBe(before);
  });

  it("431 for headers beyond Envoy's 60 KiB, and nothing reaches the upstream", async () => {
    const before = up.received.length;
    const reply = await rawExchange(p.proxy.outbound.port, `GET /api HTTP/1.1\r\nHost: svc\r\nx-big: ${"a".repeat(70 * 1024)}\r\n\r\n`);
    if (engine !== "uws") expect(reply).toMatch(/^HTTP\/1\.1 431/);
    else expect(reply).not.toMatch(/^HTTP\/1\.1 2/);
    expect(up.received.length).toBe(before);
  });

  it("accepts large headers within the limit", async () => {
    const r = await get(p.url, "svc", "/api", { "x-big": "b".repeat(30 * 1024) });
    expect(r.status).toBe(200);
  });
});

describe("REGISTRY_ONLY", () => {
  it("answers 502 for hosts outside the registry and still routes known ones", async () => {
    const up = await startUpstream("svc");
    const p = await startTestProxy(mesh("uws", up, await closedPort(), "REGISTRY_ONLY"));
    try {
      const blocked = await get(p.url, `127.0.0.1:${up.port}`, "/");
      expect(blocked.status).toBe(502);
      expect(up.received.length).toBe(0);
      expect((await get(p.url, "svc", "/api")).status).toBe(200);
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("absolute-form requests (HTTP_PROXY clients)", () => {
  it.each(["h1", "node"] as const)("are routed by the target's authority on the %s engine", async (engine) => {
    const up = await startUpstream("svc");
    const p = await startTestProxy(mesh(engine, up, await closedPort(), "ALLOW_ANY"));
    try {
      const reply = await rawExchange(p.proxy.outbound.port, "GET http://svc.default:80/api/x?y=1 HTTP/1.1\r\nHost: svc.default:80\r\nConnection: close\r\n\r\n");
      expect(reply).toMatch(/^HTTP\/1\.1 200/);
      expect(up.received.at(-1)!.url).toBe("/api/x?y=1");
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("a bug while handling a request", () => {
  it("answers that request 500, logs and counts it, and keeps serving", async () => {
    const up = await startUpstream("svc");
    const p = await startTestProxy(mesh("uws", up, await closedPort(), "ALLOW_ANY"));
    try {
      const core = p.proxy.holder.current.core;
      const route = core.route.bind(core);
      core.route = () => {
        throw new Error("boom");
      };
      const r = await get(p.url, "svc", "/api");
      expect(r.status).toBe(500);
      expect(r.text).toBe("internal error");
      core.route = route;
      expect((await get(p.url, "svc", "/api")).status).toBe(200);
      expect(p.logs.join("\n")).toMatch(/internal error while handling a request \(answered 500\): Error: boom/);
      const metrics = await p.proxy.telemetry.metrics.registry.getSingleMetricAsString("instio_internal_errors_total");
      expect(metrics).toMatch(/^instio_internal_errors_total 1$/m);
      expect(p.proxy.lifecycle.inFlight).toBe(0);
    } finally {
      await p.close();
      await up.close();
    }
  });
});

/** Istio's request-timeouts task: ratings with a 0.5 s route timeout. */
function ratingsWithTimeout(up: Upstream): string {
  return `${serviceEntryYaml("ratings", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 0.5s
`;
}

describe("route timeout (Istio's request timeouts task)", () => {
  it.each(HTTP1_ENGINES)("answers 504 UT after 0.5 s against an upstream that has not answered, on %s, and counts it", async (engine) => {
    const up = await startUpstream("slow");
    const p = await startTestProxy(`${settingsYaml(engine)}---\n${ratingsWithTimeout(up)}`);
    try {
      // The upstream holds the request until the test lets go: the 504 can only come from the route timeout.
      const started = Date.now();
      const slow = await get(p.url, "ratings", "/hold/route-timeout");
      expect(slow.status).toBe(504);
      expect(slow.text).toBe("upstream request timeout");
      expect(Date.now() - started).toBeGreaterThanOrEqual(480); // a timer never fires early
      up.release("route-timeout");
      expect((await get(p.url, "ratings", "/delay/50")).status).toBe(200);
      const m = await p.proxy.telemetry.metrics.registry.getSingleMetricAsString("envoy_cluster_upstream_rq_timeout");
      expect(m).toContain('envoy_cluster_upstream_rq_timeout{cluster_name="outbound|80||ratings.default.svc.cluster.local"} 1');
      expect(p.proxy.lifecycle.inFlight).toBe(0);
    } finally {
      await p.close();
      await up.close();
    }
  });

  it("takes x-envoy-upstream-rq-timeout-ms over the route's timeout (0: none), strips it, and tells the upstream what to expect", async () => {
    const up = await startUpstream("slow");
    const p = await startTestProxy(`${settingsYaml("h1")}---\n${ratingsWithTimeout(up)}`);
    try {
      expect((await get(p.url, "ratings", "/delay/800", { "x-envoy-upstream-rq-timeout-ms": "0" })).status).toBe(200);
      expect((await get(p.url, "ratings", "/delay/300", { "x-envoy-upstream-rq-timeout-ms": "100" })).status).toBe(504);
      const seen = (await get(p.url, "ratings", "/delay/1", { "x-envoy-upstream-rq-timeout-ms": "2000", "x-envoy-upstream-rq-per-try-timeout-ms": "700" })).json().headers;
      expect(seen["x-envoy-upstream-rq-timeout-ms"]).toBeUndefined();
      expect(seen["x-envoy-upstream-rq-per-try-timeout-ms"]).toBeUndefined();
      expect(seen["x-envoy-expected-rq-timeout-ms"]).toBe("700");
      expect((await get(p.url, "ratings", "/delay/1")).json().headers["x-envoy-expected-rq-timeout-ms"]).toBe("500");
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("stream idle timeout (Envoy's stream_idle_timeout)", () => {
  it.each(HTTP1_ENGINES)("ends a request to an upstream that never answers with 504 SI on %s, and one whose body stalls with 408", async (engine) => {
    const hung = createServer((s) => s.on("data", () => {})); // reads, never answers
    await new Promise<void>((r) => hung.listen(0, "127.0.0.1", r));
    const p = await startTestProxy(`${settingsYaml(engine, "  http: {streamIdleTimeout: 300ms}\n  accessLog: {path: /dev/null}")}---
${serviceEntryYaml("hung", [{ port: (hung.address() as AddressInfo).port }])}`);
    try {
      const r = await get(p.url, "hung", "/");
      expect(r.status).toBe(504);
      expect(r.text).toBe("stream timeout");
      const stalled = await rawExchange(p.proxy.outbound.port, "POST / HTTP/1.1\r\nHost: hung\r\nContent-Length: 100\r\n\r\nonly part", 3000);
      expect(stalled).toMatch(/^HTTP\/1\.1 408/);
      expect(stalled).toMatch(/stream timeout$/);
      expect(p.proxy.lifecycle.inFlight).toBe(0);
    } finally {
      await p.close();
      hung.close();
    }
  });
});

describe("request headers timeout (slowloris)", () => {
  it.each(["h1", "node"] as const)("answers 408 on %s when the headers do not arrive in time, and nothing reaches the upstream", async (engine) => {
    const up = await startUpstream("svc");
    const p = await startTestProxy(`${settingsYaml(engine, "  http: {requestHeadersTimeout: 300ms}")}---\n${serviceEntryYaml("svc", [{ port: up.port }])}`);
    try {
      const reply = await rawExchange(p.proxy.outbound.port, "GET / HTTP/1.1\r\nHost: svc\r\nx-slow: ", 3000);
      expect(reply).toMatch(/^HTTP\/1\.1 408/);
      expect(up.arrived()).toBe(0);
    } finally {
      await p.close();
      await up.close();
    }
  });
});
