// Istio's mirroring task over real sockets: the shadow receives copies, and the
// primary is unaffected when the shadow is down or slow.

import { createHash } from "node:crypto";
import { request } from "undici";
import { REPLAY_BUFFER_LIMIT } from "../../host/pipeline/replay-body.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, waitFor, type TestProxy } from "../support/proxy.js";
import { closedPort, startUpstream, type Upstream } from "../support/upstream.js";

describe("mirroring", () => {
  let v1: Upstream;
  let v2: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    v1 = await startUpstream("v1");
    v2 = await startUpstream("v2");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("httpbin", [{ port: v1.port, labels: { version: "v1" } }, { port: v2.port, labels: { version: "v2" } }])}---
${serviceEntryYaml("down", [{ port: await closedPort() }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /to-down}}]
    route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: down}
  - match: [{uri: {prefix: /none}}]
    route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 0}
  - route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: httpbin, subset: v2}
`);
  });
  afterAll(async () => {
    await p.close();
    await v1.close();
    await v2.close();
  });

  const settle = () => new Promise((r) => setTimeout(r, 200));

  it("copies each request to the shadow and answers from the primary", async () => {
    const r = await get(p.url, "httpbin:80", "/headers?x=1", { "x-test": "yes" });
    expect(r.json().name).toBe("v1");
    await settle();
    const copy = v2.received.find((x) => x.url === "/headers?x=1");
    expect(copy).toBeDefined();
    expect(copy!.headers.host).toBe("httpbin:80");
    expect(copy!.headers["x-test"]).toBe("yes");
    expect(copy!.headers["x-request-id"]).toBe(v1.received.find((x) => x.url === "/headers?x=1")!.headers["x-request-id"]);
    // The copy counts in the shadow cluster's stats, as Envoy's (the mirroring task reads them).
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("envoy_cluster_upstream_rq_total", { cluster_name: "outbound|80|v2|httpbin.default.svc.cluster.local" })).toBe(1);
    expect(m.sum("envoy_cluster_upstream_rq_total", { cluster_name: "outbound|80|v1|httpbin.default.svc.cluster.local" })).toBe(1);
  });

  it("is not slowed by a slow shadow, nor failed by a dead one", async () => {
    // The primary answers at once; its copy waits at v2 until after the primary's response is in.
    v1.release("slow-shadow");
    const primary = await get(p.url, "httpbin", "/hold/slow-shadow");
    expect([primary.status, primary.json().name]).toEqual([200, "v1"]);
    await waitFor(() => v2.held("slow-shadow") === 1, "the copy to be held at v2");
    v2.release("slow-shadow");
    for (let i = 0; i < 5; i++) expect((await get(p.url, "httpbin", "/to-down")).status).toBe(200);
  });

  it("copies nothing at mirrorPercentage 0; copies request bodies within the replay buffer, skips (and counts) larger ones", async () => {
    await get(p.url, "httpbin", "/none/1");
    const res = await request(`${p.url}/post`, { method: "POST", headers: { host: "httpbin" }, body: "data" });
    await res.body.text();
    const big = Buffer.alloc(REPLAY_BUFFER_LIMIT + 1, 1);
    const large = await request(`${p.url}/post-large`, { method: "POST", headers: { host: "httpbin" }, body: big });
    await large.body.text();
    expect(large.statusCode).toBe(200);
    await settle();
    expect(v2.received.filter((x) => x.url === "/none/1" || x.url === "/post-large")).toEqual([]);
    expect(v2.received.filter((x) => x.url === "/post").map((x) => [x.method, x.bodyBytes, x.bodySha256])).toEqual([["POST", 4, createHash("sha256").update("data").digest("hex")]]);
    expect(v1.received.find((x) => x.url === "/post-large")!.bodyBytes).toBe(big.length);
    const m = parseExposition(await p.proxy.telemetry.metrics.registry.metrics());
    expect(m.sum("envoy_cluster_retry_or_shadow_abandoned", { cluster_name: "outbound|80|v1|httpbin.default.svc.cluster.local" })).toBe(1);
  });
});
