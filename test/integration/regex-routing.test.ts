// RE2 regex matches and uriRegexRewrite on the wire, matched by the route core.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigText } from "../../host/config/load.js";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, HTTP1_ENGINES } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe.each(HTTP1_ENGINES)("regex routing on the %s listener", (engine) => {
  let v1: Upstream;
  let v2: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    v1 = await startUpstream("v1");
    v2 = await startUpstream("v2");
    p = await startTestProxy(`${settingsYaml(engine)}---
${serviceEntryYaml("svc", [{ port: v1.port, labels: { version: "v1" } }, { port: v2.port, labels: { version: "v2" } }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {regex: "/service/[^/]+/v\\\\d+(/.*)?"}}]
    rewrite:
      uriRegexRewrite: {match: "^/service/([^/]+)/(v\\\\d+)(.*)$", rewrite: "/\\\\2/\\\\1\\\\3"}
    route: [{destination: {host: svc, subset: v2}}]
  - match: [{headers: {end-user: {regex: "(?i)jason|json"}}}]
    route: [{destination: {host: svc, subset: v2}}]
  - match: [{queryParams: {id: {regex: "\\\\d+"}}}]
    route: [{destination: {host: svc, subset: v2}}]
  - match: [{uri: {regex: "/(a+)+$"}}]
    route: [{destination: {host: svc, subset: v2}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{regex: "https://[a-z]+\\\\.example\\\\.com"}]
      allowMethods: [GET]
    route: [{destination: {host: svc, subset: v1}}]
  - route: [{destination: {host: svc, subset: v1}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await v1.close();
    await v2.close();
  });

  it("matches uri regexes against the whole path and rewrites with capture groups, keeping the query", async () => {
    const r = await get(p.url, "svc", "/service/ratings/v3/stars?top=5");
    expect(r.json().name).toBe("v2");
    expect(r.json().url).toBe("/v3/ratings/stars?top=5");
    expect(r.json().headers["x-envoy-original-path"]).toBe("/service/ratings/v3/stars?top=5");
    // Whole-string match: a longer path does not match the regex route.
    expect((await get(p.url, "svc", "/service/ratings/vx")).json().name).toBe("v1");
    expect((await get(p.url, "svc", "/x/service/ratings/v3")).json().name).toBe("v1");
  });

  it("matches header and query parameter regexes as whole values", async () => {
    expect((await get(p.url, "svc", "/", { "end-user": "JASON" })).json().name).toBe("v2");
    expect((await get(p.url, "svc", "/", { "end-user": "jasonx" })).json().name).toBe("v1");
    expect((await get(p.url, "svc", "/?id=123")).json().name).toBe("v2");
    expect((await get(p.url, "svc", "/?id=a123")).json().name).toBe("v1");
  });

  it("answers quickly on a path built to make a backtracking engine explode", async () => {
    const r = await get(p.url, "svc", `/${"a".repeat(20_000)}!`);
    expect(r.status).toBe(200);
    expect(r.json().name).toBe("v1");
    expect((await get(p.url, "svc", `/${"a".repeat(20_000)}`)).json().name).toBe("v2");
  });

  it("allows CORS origins by regex", async () => {
    const ok = await get(p.url, "svc", "/cors", { origin: "https://shop.example.com", "access-control-request-method": "GET" }, "OPTIONS");
    expect(ok.status).toBe(200);
    expect(ok.headers["access-control-allow-origin"]).toBe("https://shop.example.com");
    const no = await get(p.url, "svc", "/cors", { origin: "https://shop.example.com.evil", "access-control-request-method": "GET" }, "OPTIONS");
    expect(no.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("regex validation", () => {
  it("names the file, line, field and the position in the pattern of an invalid regex", () => {
    const { diagnostics } = loadConfigText(
      "vs.yaml",
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {regex: "/(a)\\\\1"}}]
    route: [{destination: {host: svc}}]
  - match: [{headers: {x: {regex: "(?=x)y"}}}]
    rewrite: {uriRegexRewrite: {match: "/(a)", rewrite: "/\\\\2"}}
    route: [{destination: {host: svc}}]
`,
    );
    const errors = diagnostics.filter((d) => d.severity === "error").map((d) => `${d.file}:${d.line} ${d.path}: ${d.message}`);
    expect(errors).toEqual([
      expect.stringMatching(/^vs\.yaml:7 spec\.http\[0\]\.match\[0\]\.uri\.regex: invalid regex "\/\(a\)\\\\1" at position 5: backreferences are not supported/),
      expect.stringMatching(/^vs\.yaml:9 spec\.http\[1\]\.match\[0\]\.headers\.x\.regex: invalid regex .* at position 1: lookaround assertions are not supported/),
      expect.stringMatching(/^vs\.yaml:10 spec\.http\[1\]\.rewrite\.uriRegexRewrite\.rewrite: rewrite refers to \\2 but the pattern has 1 capture group$/),
    ]);
  });
});
