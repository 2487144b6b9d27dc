// Istio's fault-injection task over real sockets: a delay for one user against a
// caller's timeout, an abort for one user, and percentages honoured statistically.

import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, waitFor, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe("fault injection", () => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("ratings");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("ratings", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{headers: {end-user: {exact: abort}}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{headers: {end-user: {exact: grpc}}}]
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{headers: {end-user: {exact: half}}}]
    fault:
      abort: {httpStatus: 503, percentage: {value: 50}}
      delay: {fixedDelay: 10ms, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{headers: {end-user: {exact: slowly}}}]
    fault:
      delay: {fixedDelay: 300ms, percentage: {value: 100}}
    route: [{destination: {host: ratings}}]
  - match: [{headers: {end-user: {exact: never}}}]
    fault:
      abort: {httpStatus: 500}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  it("delays jason's requests past the caller's timeout, and nobody else's", async () => {
    await expect(request(`${p.url}/ratings/0`, { headers: { host: "ratings", "end-user": "jason" }, headersTimeout: 1000 })).rejects.toThrow(/timeout/i);
    expect(up.received.filter((r) => r.headers["end-user"] === "jason")).toEqual([]);
    expect((await get(p.url, "ratings", "/ratings/0", { "end-user": "mike" })).status).toBe(200);
    await waitFor(() => p.proxy.lifecycle.inFlight === 0, "the delayed request to end with its client");
  });

  it("leaves the fault delay out of x-envoy-upstream-service-time (Envoy measures after the fault filter)", async () => {
    const started = Date.now();
    const r = await get(p.url, "ratings", "/status/201", { "end-user": "slowly" }); // 201: apart from the other tests' DI counts
    const elapsed = Date.now() - started;
    expect(r.status).toBe(201);
    expect(elapsed).toBeGreaterThanOrEqual(290); // the 300 ms delay (a timer never fires early)
    // Measured after the delay: at most what the client waited beyond it, however slow the machine (1 ms of rounding each side).
    expect(Number(r.headers["x-envoy-upstream-service-time"])).toBeLessThanOrEqual(elapsed - 300 + 2);
  });

  it("aborts with the configured status and Envoy's body", async () => {
    const r = await get(p.url, "ratings", "/", { "end-user": "abort" });
    expect(r.status).toBe(500);
    expect(r.text).toBe("fault filter abort");
    const g = await get(p.url, "ratings", "/", { "end-user": "grpc" });
    expect(g.status).toBe(200);
    expect(g.headers["grpc-status"]).toBe("14");
    expect(g.headers["grpc-message"]).toBe("fault filter abort");
    expect((await get(p.url, "ratings", "/", { "end-user": "never" })).status).toBe(200); // no percentage: never, as Istio
  });

  it("honours percentages statistically (tolerance: 5 standard deviations) and reports DI and FI", async () => {
    const n = 400;
    let aborted = 0;
    for (let i = 0; i < n; i++) if ((await get(p.url, "ratings", "/", { "end-user": "half" })).status === 503) aborted++;
    expect(Math.abs(aborted / n - 0.5)).toBeLessThan(5 * Math.sqrt(0.25 / n));
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("istio_requests_total", { response_code: "503", response_flags: "DI,FI" })).toBe(aborted);
    expect(m.sum("istio_requests_total", { response_code: "200", response_flags: "DI" })).toBe(n - aborted);
    expect(m.sum("istio_requests_total", { response_code: "500", response_flags: "FI" })).toBe(1);
  });
});
