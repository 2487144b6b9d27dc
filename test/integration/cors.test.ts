// VirtualService corsPolicy on the wire: preflights answered by the proxy for
// allowed origins, forwarded (or not) for others, and access-control headers on
// responses to allowed origins.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe("CORS", () => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("api");
    p = await startTestProxy(`${settingsYaml("uws")}---
${serviceEntryYaml("api", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - match: [{uri: {prefix: /strict}}]
    corsPolicy:
      allowOrigins: [{exact: "https://app.example"}]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: api}}]
  - corsPolicy:
      allowOrigins: [{exact: "https://app.example"}, {prefix: "https://dev."}]
      allowMethods: [GET, POST]
      allowHeaders: [authorization, x-custom]
      exposeHeaders: [x-upstream]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: api}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  const preflight = (origin: string, path = "/data") =>
    get(p.url, "api", path, { origin, "access-control-request-method": "POST" }, "OPTIONS");

  it("answers a preflight from an allowed origin without the upstream", async () => {
    const before = up.received.length;
    const r = await preflight("https://dev.app.example");
    expect(r.status).toBe(200);
    expect(r.headers).toMatchObject({
      "access-control-allow-origin": "https://dev.app.example",
      "access-control-allow-methods": "GET,POST",
      "access-control-allow-headers": "authorization,x-custom",
      "access-control-max-age": "86400",
      "access-control-allow-credentials": "true",
    });
    expect(up.received.length).toBe(before);
  });

  it("forwards a preflight from another origin (FORWARD), or answers it bare (IGNORE)", async () => {
    const forwarded = await preflight("https://evil.example");
    expect(forwarded.json().method).toBe("OPTIONS");
    expect(forwarded.headers["access-control-allow-origin"]).toBeUndefined();
    const before = up.received.length;
    const ignored = await preflight("https://evil.example", "/strict");
    expect(ignored.status).toBe(200);
    expect(ignored.headers["access-control-allow-origin"]).toBeUndefined();
    expect(up.received.length).toBe(before);
  });

  it("adds access-control headers to responses for allowed origins only", async () => {
    const ok = await get(p.url, "api", "/data", { origin: "https://app.example" });
    expect(ok.headers).toMatchObject({ "access-control-allow-origin": "https://app.example", "access-control-allow-credentials": "true", "access-control-expose-headers": "x-upstream" });
    const other = await get(p.url, "api", "/data", { origin: "https://evil.example" });
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
    const none = await get(p.url, "api", "/data");
    expect(none.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
