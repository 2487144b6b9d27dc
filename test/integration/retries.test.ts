// VirtualService retries over real sockets: a flaky upstream against a retry
// policy (success rate as the attempt count predicts, attempts bounded), per-try
// timeouts, Istio's default policy, and request bodies replayed within the buffer.

import { createHash } from "node:crypto";
import { request } from "undici";
import { REPLAY_BUFFER_LIMIT } from "../../host/pipeline/replay-body.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe("retries", () => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("flaky");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("svc", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {prefix: /flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /status}}]
    retries: {attempts: 2, retryOn: "gateway-error,409"}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /delay}}]
    retries: {attempts: 2, perTryTimeout: 100ms, retryOn: 5xx}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /none}}]
    retries: {attempts: 0}
    route: [{destination: {host: svc}}]
  - route: [{destination: {host: svc}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  const attemptsSeen = (path: string) => up.received.filter((r) => r.url === path).map((r) => Number(r.headers["x-envoy-attempt-count"]));

  it("retries a 50% flaky upstream: success close to 1 - 0.5^4, never more than 4 attempts", async () => {
    const n = 300;
    let ok = 0;
    for (let i = 0; i < n; i++) if ((await get(p.url, "svc", "/flaky/50")).status === 200) ok++;
    const expected = 1 - 0.5 ** 4;
    expect(Math.abs(ok / n - expected)).toBeLessThan(5 * Math.sqrt((expected * (1 - expected)) / n));
    const attempts = attemptsSeen("/flaky/50");
    expect(Math.max(...attempts)).toBe(4);
    expect(attempts.length).toBeLessThanOrEqual(4 * n);
  });

  it("retries only what retryOn names, and marks an exhausted policy URX", async () => {
    const urx = async () => parseExposition(await p.proxy.telemetry.metrics.registry.metrics()).sum("istio_requests_total", { response_code: "503", response_flags: "URX" });
    const before = await urx();
    const r = await get(p.url, "svc", "/status/503");
    expect(r.status).toBe(503);
    expect(attemptsSeen("/status/503")).toEqual([1, 2, 3]);
    // Every attempt carries the request's one generated x-request-id.
    expect(new Set(up.received.filter((x) => x.url === "/status/503").map((x) => x.headers["x-request-id"])).size).toBe(1);
    await get(p.url, "svc", "/status/409");
    expect(attemptsSeen("/status/409")).toEqual([1, 2, 3]);
    await get(p.url, "svc", "/status/500");
    expect(attemptsSeen("/status/500")).toEqual([1]);
    expect(await urx()).toBe(before + 1);
  });

  it("does not retry a 503 under Istio's default policy, nor with attempts: 0", async () => {
    expect((await get(p.url, "svc", "/default/status")).status).toBe(200);
    await get(p.url, "svc", "/none/x");
    expect(attemptsSeen("/none/x")).toEqual([1]);
  });

  it("abandons each try at perTryTimeout, retries, then answers 504 UT", async () => {
    // The upstream holds every attempt until the test lets go: the 504 can only come from the per-try timeouts.
    const r = await get(p.url, "svc", "/delay/hold/per-try");
    expect(r.status).toBe(504);
    expect(r.text).toBe("upstream request timeout");
    expect(attemptsSeen("/delay/hold/per-try")).toEqual([1, 2, 3]);
    up.release("per-try");
    // Envoy (>= 1.30) prints flags in the order it set them: the retry limit, then the timeout.
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("istio_requests_total", { response_code: "504", response_flags: "URX,UT" })).toBe(1);
  });

  it("replays a request body within the replay buffer on every attempt, and does not retry a larger one (counted)", async () => {
    const res = await request(`${p.url}/flaky/100?small`, { method: "POST", headers: { host: "svc" }, body: "payload" });
    await res.body.text();
    expect(res.statusCode).toBe(503);
    const attempts = up.received.filter((r) => r.url === "/flaky/100?small");
    expect(attempts.map((r) => [r.bodyBytes, r.bodySha256])).toEqual(Array(4).fill([7, createHash("sha256").update("payload").digest("hex")]));

    const big = Buffer.alloc(REPLAY_BUFFER_LIMIT + 1, 7);
    const large = await request(`${p.url}/flaky/100?large`, { method: "POST", headers: { host: "svc" }, body: big });
    await large.body.text();
    expect(large.statusCode).toBe(503);
    expect(up.received.filter((r) => r.url === "/flaky/100?large").map((r) => r.bodyBytes)).toEqual([big.length]);
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("envoy_cluster_retry_or_shadow_abandoned", { cluster_name: "outbound|80||svc.default.svc.cluster.local" })).toBe(1);
  });
});
