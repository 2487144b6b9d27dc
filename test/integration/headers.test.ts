// VirtualService `headers` on the wire: route and destination level, request and
// response, set / add / remove, and a host rewrite through `set: {host: ...}`.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { closedPort, startUpstream, type Upstream } from "../support/upstream.js";

describe("header manipulation", () => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("svc");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("svc", [{ port: up.port }])}---
${serviceEntryYaml("dead", [{ port: await closedPort() }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {prefix: /rewrite}}]
    headers:
      request:
        set: {host: internal.example, x-route: route}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /dead}}]
    headers:
      response: {set: {x-served-by: instio}}
    route: [{destination: {host: dead}}]
  - headers:
      request:
        set: {x-route: route, x-both: from-route}
        add: {x-list: b}
        remove: [x-secret]
      response:
        set: {x-resp: set}
        add: {x-upstream: extra}
        remove: [content-type]
    route:
    - destination: {host: svc}
      headers:
        request: {set: {x-both: from-destination, x-dest: yes}}
        response: {set: {x-dest-resp: yes}}
`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  it("applies request operations, destination first and the route's last", async () => {
    const r = await get(p.url, "svc", "/x", { "x-secret": "s", "x-list": "a", "x-route": "client" });
    const h = r.json().headers;
    expect(h["x-secret"]).toBeUndefined();
    expect(h["x-list"]).toBe("a,b");
    expect(h["x-route"]).toBe("route");
    expect(h["x-both"]).toBe("from-route");
    expect(h["x-dest"]).toBe("yes");
    expect(h.host).toBe("svc");
  });

  it("answers with server: envoy, replacing the application's, as Envoy on an Istio sidecar's outbound listener", async () => {
    const r = await get(p.url, "svc", "/x");
    expect(r.headers.server).toBe("envoy");
    expect((await get(p.url, "dead", "/")).headers.server).toBe("envoy"); // local replies too
  });

  it("applies response operations to upstream responses", async () => {
    const r = await get(p.url, "svc", "/x");
    expect(r.headers["x-resp"]).toBe("set");
    expect(r.headers["x-upstream"]).toBe("svc,extra");
    expect(r.headers["content-type"]).toBeUndefined();
    expect(r.headers["x-dest-resp"]).toBe("yes");
  });

  it("rewrites the host when a route sets host", async () => {
    const h = (await get(p.url, "svc", "/rewrite")).json().headers;
    expect(h.host).toBe("internal.example");
    expect(h["x-route"]).toBe("route");
  });

  it("adds the route's response headers to its local replies too", async () => {
    const r = await get(p.url, "svc", "/dead");
    expect(r.status).toBe(503);
    expect(r.headers["x-served-by"]).toBe("instio");
  });
});
