// DestinationRule traffic policies over real sockets: Istio's circuit-breaking
// task, outlier ejection and return, and the load balancers' distributions.

import { createServer } from "node:http";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { destinationRuleYaml as destinationRule, get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { failingUpstream, startUpstream, type Upstream } from "../support/upstream.js";


describe("circuit breaking (Istio's task: maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1)", () => {
  let up: Upstream;
  let p: TestProxy;
  beforeAll(async () => {
    up = await startUpstream("httpbin");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("httpbin", [{ port: up.port }])}---
${destinationRule("httpbin", `
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}`)}`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  it("answers some of 20 concurrent requests 503 UO with x-envoy-overloaded, serves the rest, and nothing hangs", async () => {
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => request(`${p.url}/delay/100`, { headers: { host: "httpbin" } }).then(async (r) => ({ status: r.statusCode, overloaded: r.headers["x-envoy-overloaded"], body: await r.body.text() }))),
    );
    const overflowed = replies.filter((r) => r.status === 503);
    const served = replies.filter((r) => r.status === 200);
    expect(overflowed.length + served.length).toBe(20);
    expect(overflowed.length).toBeGreaterThanOrEqual(10); // one on the connection, one pending: at most a few get through at once
    expect(served.length).toBeGreaterThanOrEqual(2);
    for (const r of overflowed) {
      expect(r.overloaded).toBe("true");
      expect(r.body).toBe("upstream connect error or disconnect/reset before headers. reset reason: overflow");
    }
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("envoy_cluster_upstream_rq_pending_overflow", { cluster_name: "outbound|80||httpbin.default.svc.cluster.local" })).toBe(overflowed.length);
    expect(m.sum("istio_requests_total", { response_code: "503", response_flags: "UO" })).toBe(overflowed.length);
    // A circuit-breaker overflow is not an upstream failure: the endpoint was not ejected.
    expect((await get(p.url, "httpbin", "/status/200")).status).toBe(200);
  });

  it("answers the task's `pilot-agent request GET stats | grep httpbin | grep pending` in Envoy's text form", async () => {
    const text = (await request(`http://127.0.0.1:${p.proxy.admin.port}/stats?filter=httpbin.*pending`).then((r) => r.body.text())).trim().split("\n");
    const c = "cluster.outbound|80||httpbin.default.svc.cluster.local";
    const overflow = parseExposition(await p.proxy.telemetry.metrics.registry.metrics()).sum("envoy_cluster_upstream_rq_pending_overflow", { cluster_name: "outbound|80||httpbin.default.svc.cluster.local" });
    expect(text).toEqual([
      `${c}.circuit_breakers.default.remaining_pending: 1`,
      `${c}.circuit_breakers.default.rq_pending_open: 0`,
      `${c}.circuit_breakers.high.rq_pending_open: 0`,
      `${c}.upstream_rq_pending_active: 0`,
      `${c}.upstream_rq_pending_overflow: ${overflow}`,
      expect.stringMatching(new RegExp(`^${c.replace(/[|.]/g, "\\$&")}\\.upstream_rq_pending_total: [1-9]\\d*$`)),
    ]);
    // RE2, as Envoy: a pattern RE2 rejects is a 400, a backtracking bomb is just slow-free.
    expect((await request(`http://127.0.0.1:${p.proxy.admin.port}/stats?filter=(a`)).statusCode).toBe(400);
    expect((await request(`http://127.0.0.1:${p.proxy.admin.port}/stats?filter=${encodeURIComponent("(x+x+)+y")}`)).statusCode).toBe(200);
  });
});

describe("outlier detection", () => {
  let good: Upstream;
  let bad: Awaited<ReturnType<typeof failingUpstream>>;
  let p: TestProxy;
  beforeAll(async () => {
    good = await startUpstream("good");
    bad = await failingUpstream(502);
    p = await startTestProxy(`${settingsYaml("node")}---
${serviceEntryYaml("svc", [{ port: good.port }, { port: bad.port }])}---
${destinationRule("svc", `
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 1s, maxEjectionPercent: 50}`)}`);
  });
  afterAll(async () => {
    await p.close();
    await good.close();
    await bad.close();
  });

  it("ejects an endpoint after consecutive 5xx, sends everything to the others, and takes it back after the ejection time", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(p.url, "svc", "/")).status);
    expect(statuses.filter((s) => s === 502)).toHaveLength(3); // round robin: every other request, until the third failure
    expect(bad.hits()).toBe(3);
    const ejectedAt = Date.now();
    for (let i = 0; i < 10; i++) expect((await get(p.url, "svc", "/")).status).toBe(200);
    expect(bad.hits()).toBe(3);
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("envoy_cluster_outlier_detection_ejections_active", { cluster_name: "outbound|80||svc.default.svc.cluster.local" })).toBe(1);
    const clusters = await request(`http://127.0.0.1:${p.proxy.admin.port}/clusters`).then((r) => r.body.text());
    expect(clusters).toContain(`127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`);

    // Back after baseEjectionTime (checked every interval).
    await new Promise((r) => setTimeout(r, Math.max(0, 1300 - (Date.now() - ejectedAt))));
    for (let i = 0; i < 4; i++) await get(p.url, "svc", "/");
    expect(bad.hits()).toBeGreaterThan(3);
  });
});

describe("active health checks (instio settings)", () => {
  it("takes an endpoint failing its checks out of rotation and back once it passes again", { timeout: 30_000 }, async () => {
    const good = await startUpstream("good");
    const bad = await failingUpstream(503);
    const p = await startTestProxy(`${settingsYaml("uws", "  healthChecks: [{host: svc, path: /status/200, interval: 50ms, timeout: 2s, unhealthyThreshold: 2, healthyThreshold: 2}]")}---
${serviceEntryYaml("svc", [{ port: good.port }, { port: bad.port }])}---
${destinationRule("svc", "{loadBalancer: {simple: ROUND_ROBIN}}")}`);
    const waitFor = async (cond: () => Promise<boolean>): Promise<void> => {
      const until = Date.now() + 10_000;
      while (!(await cond())) {
        if (Date.now() > until) throw new Error("timed out waiting for the health flags to change");
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const flags = async (): Promise<string> => request(`http://127.0.0.1:${p.proxy.admin.port}/clusters`).then((r) => r.body.text());
    try {
      await waitFor(async () => (await flags()).includes(`127.0.0.1:${bad.port}::health_flags::/failed_active_hc`));
      const before = bad.hits();
      for (let i = 0; i < 10; i++) expect((await get(p.url, "svc", "/")).status).toBe(200);
      expect(bad.hits()).toBe(before);
      bad.setStatus(200);
      await waitFor(async () => (await flags()).includes(`127.0.0.1:${bad.port}::health_flags::healthy`));
      for (let i = 0; i < 4; i++) await get(p.url, "svc", "/");
      expect(bad.hits()).toBeGreaterThan(before);
    } finally {
      await p.close();
      await good.close();
      await bad.close();
    }
  });
});

describe("connectionPool.tcp.maxConnectionDuration", () => {
  it("retires an upstream connection once it is older than the limit", async () => {
    const ports: number[] = [];
    const server = createServer((req, res) => {
      ports.push(req.socket.remotePort!);
      req.resume();
      res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("svc", [{ port }])}---
${destinationRule("svc", "{connectionPool: {tcp: {maxConnectionDuration: 300ms}}}")}`);
    try {
      await get(p.url, "svc", "/");
      await get(p.url, "svc", "/");
      await new Promise((r) => setTimeout(r, 400));
      await get(p.url, "svc", "/");
      expect(ports[1]).toBe(ports[0]); // kept alive while young
      expect(ports[2]).not.toBe(ports[0]); // a new connection once the first was 300 ms old
    } finally {
      await p.close();
      server.close();
    }
  });
});

describe("loadBalancer PASSTHROUGH (ORIGINAL_DST)", () => {
  it("connects to the address the caller asked for instead of the ServiceEntry's endpoints", async () => {
    const up = await startUpstream("original");
    const p = await startTestProxy(`${settingsYaml("uws")}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: direct}
spec:
  hosts: [127.0.0.1]
  ports: [{number: ${up.port}, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
---
${destinationRule("127.0.0.1", "{loadBalancer: {simple: PASSTHROUGH}}")}`);
    try {
      const r = await get(p.url, `127.0.0.1:${up.port}`, "/x");
      expect(r.status).toBe(200);
      expect(r.json().name).toBe("original");
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("no healthy upstream", () => {
  it("answers 503 UH when every endpoint is ejected (maxEjectionPercent 100)", async () => {
    const bad = await failingUpstream(503);
    const p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("svc", [{ port: bad.port }])}---
${destinationRule("svc", "{outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}}")}`);
    try {
      expect((await get(p.url, "svc", "/")).status).toBe(503);
      expect((await get(p.url, "svc", "/")).status).toBe(503);
      const r = await get(p.url, "svc", "/");
      expect(r.status).toBe(503);
      expect(r.text).toBe("no healthy upstream");
      expect(bad.hits()).toBe(2);
    } finally {
      await p.close();
      await bad.close();
    }
  });
});

describe("load balancers", () => {
  const ups: Upstream[] = [];
  let p: TestProxy;
  beforeAll(async () => {
    for (const n of ["a", "b", "c"]) ups.push(await startUpstream(n));
    const se = (name: string) => serviceEntryYaml(name, ups.map((u) => ({ port: u.port })));
    p = await startTestProxy(`${settingsYaml("uws")}---
${se("rr")}---
${se("random")}---
${se("sticky")}---
${se("cookie")}---
${destinationRule("rr", "{loadBalancer: {simple: ROUND_ROBIN}}")}---
${destinationRule("random", "{loadBalancer: {simple: RANDOM}}")}---
${destinationRule("sticky", "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}")}---
${destinationRule("cookie", "{loadBalancer: {consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}, maglev: {tableSize: 65537}}}}")}`);
  });
  afterAll(async () => {
    await p.close();
    for (const u of ups) await u.close();
  });

  const tally = async (host: string, n: number, headers: Record<string, string> = {}): Promise<string[]> => {
    const names: string[] = [];
    for (let i = 0; i < n; i++) names.push((await get(p.url, host, "/", headers)).json().name);
    return names;
  };

  it("ROUND_ROBIN visits every endpoint in turn", async () => {
    const names = await tally("rr", 9);
    expect(names.slice(0, 3).sort()).toEqual(["a", "b", "c"]);
    expect(names.slice(3, 6)).toEqual(names.slice(0, 3));
    expect(names.slice(6, 9)).toEqual(names.slice(0, 3));
  });

  it("RANDOM spreads requests over every endpoint", async () => {
    const names = await tally("random", 300);
    for (const n of ["a", "b", "c"]) {
      const count = names.filter((x) => x === n).length;
      expect(Math.abs(count - 100)).toBeLessThan(45); // binomial sd ~8.2: over 5 sd
    }
  });

  it("consistentHash on a header keeps each user on one endpoint", async () => {
    const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const homes = new Set<string>();
    for (const u of users) {
      const names = await tally("sticky", 5, { "x-user": u });
      expect(new Set(names).size).toBe(1);
      homes.add(names[0]!);
    }
    expect(homes.size).toBeGreaterThan(1);
  });

  it("consistentHash on a cookie with a ttl generates the cookie, then sticks to it", async () => {
    const first = await get(p.url, "cookie", "/");
    const setCookie = first.headers["set-cookie"] as string;
    expect(setCookie).toMatch(/^session="[0-9a-f]{16}"; Max-Age=60; Path=\/; HttpOnly$/);
    const value = /^session="([0-9a-f]+)"/.exec(setCookie)![1]!;
    const names = await tally("cookie", 8, { cookie: `other=1; session=${value}` });
    expect(names).toEqual(Array(8).fill(first.json().name));
    expect((await get(p.url, "cookie", "/", { cookie: `session=${value}` })).headers["set-cookie"]).toBeUndefined();
  });
});
