// Header routing, weighted splits, subsets, authority forms and passthrough over
// real sockets, on both listener engines.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, settingsYaml, startTestProxy, type TestProxy, HTTP1_ENGINES, type Http1Engine } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";
import { request as httpRequest } from "node:http";

/** node:http lets a test send headers undici refuses to (keep-alive, connection lists). */
function rawGet(port: number, path: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}

function meshYaml(engine: Http1Engine, ups: Record<string, Upstream>): string {
  return `${settingsYaml(engine)}---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: ${ups.v1!.port}}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: ${ups.v2!.port}}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: ${ups.v3a!.port}}, labels: {version: v3}}
  - {address: 127.0.0.1, ports: {http: ${ups.v3b!.port}}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: v3-only
    match: [{uri: {prefix: /v3}}, {queryParams: {version: {exact: "3"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: split
    match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 1}
    - {destination: {host: reviews, subset: v2}, weight: 1}
    - {destination: {host: reviews, subset: v3}, weight: 0}
  - name: canary
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${ups.ext!.port}}}]
`;
}

describe.each(HTTP1_ENGINES)("routing on the %s listener", (engine) => {
  const ups: Record<string, Upstream> = {};
  let p: TestProxy;

  beforeAll(async () => {
    for (const n of ["v1", "v2", "v3a", "v3b", "ext", "plain"]) ups[n] = await startUpstream(n);
    p = await startTestProxy(meshYaml(engine, ups));
    expect(p.proxy.outbound.engine).toBe(engine);
  });
  afterAll(async () => {
    await p.close();
    await Promise.all(Object.values(ups).map((u) => u.close()));
  });

  it("routes by the end-user header", async () => {
    for (let i = 0; i < 5; i++) expect((await get(p.url, "reviews:9080", "/r", { "end-user": "jason" })).json().name).toBe("v2");
  });

  it("matches every authority form Istio generates, case-insensitively", async () => {
    for (const host of ["reviews", "reviews:9080", "reviews.default", "reviews.default:9080", "reviews.default.svc", "REVIEWS.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080"]) {
      const r = await get(p.url, host, "/v3");
      expect(r.status, host).toBe(200);
      expect(["v3a", "v3b"]).toContain(r.json().name);
    }
    expect((await get(p.url, "reviews:1234", "/v3")).status).not.toBe(200); // unknown port: passthrough to nowhere
  });

  it("ORs match blocks: a query parameter selects the same route as the prefix", async () => {
    expect(["v3a", "v3b"]).toContain((await get(p.url, "reviews", "/x?a=1&version=3")).json().name);
  });

  it("selects subset endpoints by label and balances within the subset", async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) seen.add((await get(p.url, "reviews", "/v3")).json().name);
    expect([...seen].sort()).toEqual(["v3a", "v3b"]);
  });

  it("splits by relative weight; weight 0 gets nothing (tolerance: 5 standard deviations)", async () => {
    const n = 1000;
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const name = (await get(p.url, "reviews", "/split")).json().name;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    const sd = Math.sqrt(0.25 / n);
    expect(Math.abs(counts.v1! / n - 0.5)).toBeLessThan(5 * sd);
    expect(counts.v1! + counts.v2!).toBe(n);
  });

  it("sends 90/10 to the canary (tolerance: 5 standard deviations)", async () => {
    const n = 1000;
    let v3 = 0;
    for (let i = 0; i < n; i++) if ((await get(p.url, "reviews", "/")).json().name.startsWith("v3")) v3++;
    expect(Math.abs(v3 / n - 0.1)).toBeLessThan(5 * Math.sqrt(0.09 / n));
  });

  it("routes wildcard ServiceEntry hosts", async () => {
    expect((await get(p.url, "api.example.com")).json().name).toBe("ext");
    expect((await get(p.url, "deep.api.example.com:80")).json().name).toBe("ext");
  });

  it("forwards unknown hosts to the requested address under ALLOW_ANY (PassthroughCluster)", async () => {
    expect((await get(p.url, `127.0.0.1:${ups.plain!.port}`, "/direct")).json().name).toBe("plain");
  });

  it("refuses a passthrough to its own listener instead of looping", async () => {
    const r = await get(p.url, `127.0.0.1:${p.proxy.outbound.port}`, "/loop");
    expect(r.status).toBe(502);
    expect((await get(p.url, `localhost:${p.proxy.admin.port}`, "/ready")).status).toBe(502);
  });

  it("preserves Host, strips hop-by-hop headers and adds Envoy's forwarding headers", async () => {
    const r = JSON.parse(await rawGet(p.proxy.outbound.port, "/hdr?q=1", { host: "reviews:9080", "end-user": "jason", "x-custom": "yes", connection: "keep-alive, x-drop", "x-drop": "1", "keep-alive": "timeout=5", "x-forwarded-for": "10.1.1.1" }));
    expect(r.url).toBe("/hdr?q=1");
    expect(r.headers.host).toBe("reviews:9080");
    expect(r.headers["x-custom"]).toBe("yes");
    expect(r.headers["x-drop"]).toBeUndefined();
    expect(r.headers["keep-alive"]).toBeUndefined();
    expect(r.headers["x-forwarded-for"]).toBe("10.1.1.1, 127.0.0.1");
    expect(r.headers["x-forwarded-proto"]).toBe("http");
    expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers["x-envoy-attempt-count"]).toBe("1");
    const kept = (await get(p.url, "reviews", "/", { "x-request-id": "abc-123" })).json();
    expect(kept.headers["x-request-id"]).toBe("abc-123");
  });

  it("reports upstream service time and relays status and headers", async () => {
    const r = await get(p.url, "reviews", "/status/418", { "end-user": "jason" });
    expect(r.status).toBe(418);
    expect(r.headers["x-upstream"]).toBe("v2");
    expect(Number(r.headers["x-envoy-upstream-service-time"])).toBeGreaterThanOrEqual(0);
    // The upstream's "keep-alive: timeout=30" is hop-by-hop; node:http may add its own for the client connection.
    expect(r.headers["keep-alive"]).not.toBe("timeout=30");
  });

  it("answers HEAD with the upstream's content-length and no body", async () => {
    const r = await get(p.url, "reviews", "/", { "end-user": "jason" }, "HEAD");
    expect(r.status).toBe(200);
    expect(Number(r.headers["content-length"])).toBeGreaterThan(0);
    expect(r.text).toBe("");
  });
});
