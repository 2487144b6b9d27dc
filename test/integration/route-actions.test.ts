// VirtualService redirect, directResponse and rewrite on the wire.

import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, HTTP1_ENGINES } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe.each(HTTP1_ENGINES)("route actions on the %s listener", (engine) => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("svc");
    p = await startTestProxy(`${settingsYaml(engine)}---
${serviceEntryYaml("svc", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /away}}]
    redirect: {authority: other.example, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 308}
  - match: [{uri: {prefix: /port}}]
    redirect: {port: 8443}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
    headers: {response: {set: {x-kind: direct}}}
  - match: [{uri: {exact: /bytes}}]
    directResponse: {status: 200, body: {bytes: "AAEC/w=="}}
  - match: [{uri: {exact: /empty}}]
    directResponse: {status: 204}
  - match: [{uri: {prefix: /v1/reviews}}]
    rewrite: {uri: /reviews, authority: reviews.internal}
    route: [{destination: {host: svc}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /replaced}
    route: [{destination: {host: svc}}]
  - rewrite: {uri: /base/}
    route: [{destination: {host: svc}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  it("redirects with 301 by default, keeping host, port and query", async () => {
    const r = await get(p.url, "svc:80", "/old?a=1");
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe("http://svc:80/new?a=1");
    expect(r.text).toBe("");
  });

  it("redirects to another authority and scheme with the protocol's default port", async () => {
    const r = await get(p.url, "svc:80", "/away/x");
    expect(r.status).toBe(308);
    expect(r.headers.location).toBe("https://other.example/away/x");
    const port = await get(p.url, "svc", "/port/y");
    expect(port.headers.location).toBe("http://svc:8443/port/y");
  });

  it("answers direct responses with their status and body, string or bytes", async () => {
    const tea = await get(p.url, "svc", "/teapot");
    expect(tea.status).toBe(418);
    expect(tea.text).toBe("short and stout");
    expect(tea.headers["content-type"]).toBe("text/plain");
    expect(tea.headers["x-kind"]).toBe("direct");
    const res = await request(`${p.url}/bytes`, { headers: { host: "svc" } });
    expect(Buffer.from(await res.body.arrayBuffer())).toEqual(Buffer.from([0, 1, 2, 255]));
    expect((await get(p.url, "svc", "/empty")).status).toBe(204);
    expect(up.received.filter((r) => ["/teapot", "/bytes", "/empty"].includes(r.url))).toEqual([]);
  });

  it("rewrites the matched prefix and the authority, and keeps the original path in x-envoy-original-path", async () => {
    const r = (await get(p.url, "svc", "/v1/reviews/7?x=1")).json();
    expect(r.url).toBe("/reviews/7?x=1");
    expect(r.headers.host).toBe("reviews.internal");
    expect(r.headers["x-envoy-original-path"]).toBe("/v1/reviews/7?x=1");
  });

  it("replaces the whole path after an exact match, and the leading / when the route has no URI match", async () => {
    expect((await get(p.url, "svc", "/exact")).json().url).toBe("/replaced");
    expect((await get(p.url, "svc", "/anything/else")).json().url).toBe("/base/anything/else");
  });
});
