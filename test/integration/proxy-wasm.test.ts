// Third-party Proxy-Wasm filters in the proxy, configured by Istio's WasmPlugin:
// filters built in the test setup from the published AssemblyScript SDK
// (examples/proxy-wasm/filters), over real sockets. Each plugin matches one
// port of the service (WasmPlugin match.ports), so one proxy carries them all.

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseExposition } from "../support/prometheus.js";
import { buildFilters, type FilterName } from "../support/proxy-wasm-filters.js";
import { get, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const HOST = "svc.default.svc.cluster.local";

/** Ports of the service, one per plugin under test. */
const PORT = { headers: 8001, deny: 8002, body: 8003, callout: 8004, failClose: 8005, failOpen: 8006, stats: 8007, ordered: 8008 } as const;

function pluginYaml(name: string, file: string, port: number, extra = ""): string {
  const sha = createHash("sha256").update(readFileSync(file)).digest("hex");
  return `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: default}
spec:
  url: file://${file}
  sha256: ${sha}
  match: [{mode: CLIENT, ports: [{number: ${port}}]}]
${extra}`;
}

describe("Proxy-Wasm filters (WasmPlugin)", () => {
  let up: Upstream;
  let auth: { server: Server; port: number; status: number; calls: number };
  let p: TestProxy;
  let filters: Record<FilterName, string>;

  beforeAll(async () => {
    filters = await buildFilters();
    up = await startUpstream("svc");
    auth = { server: createServer((_req, res) => {
      auth.calls++;
      res.writeHead(auth.status).end();
    }), port: 0, status: 200, calls: 0 };
    await new Promise<void>((r) => auth.server.listen(0, "127.0.0.1", r));
    auth.port = (auth.server.address() as AddressInfo).port;
    const ports = Object.values(PORT).map((n) => `{number: ${n}, name: http-${n}, targetPort: ${up.port}}`).join(", ");
    p = await startTestProxy(`${settingsYaml("h1")}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [${HOST}]
  ports: [${ports}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: auth}
spec:
  hosts: [auth.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${auth.port}}}]
---
${pluginYaml("headers", filters.headers, PORT.headers, "  pluginConfig: {value: hello}\n")}---
${pluginYaml("deny", filters.deny, PORT.deny)}---
${pluginYaml("body", filters.body, PORT.body)}---
${pluginYaml("callout", filters.callout, PORT.callout, '  pluginConfig: {cluster: "outbound|80||auth.default.svc.cluster.local"}\n')}---
${pluginYaml("hostile-closed", filters.hostile, PORT.failClose)}---
${pluginYaml("hostile-open", filters.hostile, PORT.failOpen, "  failStrategy: FAIL_OPEN\n")}---
${pluginYaml("stats", filters.stats, PORT.stats, "  phase: STATS\n")}---
${pluginYaml("ordered-headers", filters.headers, PORT.ordered, "  pluginConfig: {value: ordered}\n")}---
${pluginYaml("ordered-deny", filters.deny, PORT.ordered, "  phase: AUTHZ\n")}`);
  }, 120_000);

  afterAll(async () => {
    await p?.close();
    await up?.close();
    await new Promise((r) => auth?.server.close(r));
  });

  const at = (port: number): string => `${HOST}:${port}`;
  const metrics = async (): Promise<ReturnType<typeof parseExposition>> => {
    const res = await request(`http://127.0.0.1:${p.proxy.admin.port}/stats/prometheus`);
    return parseExposition(await res.body.text());
  };

  it("adds and removes request headers and adds a response header", async () => {
    const r = await get(p.url, at(PORT.headers), "/h", { "x-remove-me": "secret", "x-keep": "1" });
    expect(r.status).toBe(200);
    const seen = r.json().headers;
    expect(seen["x-wasm-added"]).toBe('{"value":"hello"}'); // pluginConfig, as Istio passes it: JSON
    expect(seen["x-remove-me"]).toBeUndefined();
    expect(seen["x-keep"]).toBe("1");
    expect(r.headers["x-wasm-response"]).toBe("yes");
    // A plugin matches its own port only.
    const other = await get(p.url, at(PORT.deny), "/h", { "x-remove-me": "secret" });
    expect(other.json().headers["x-remove-me"]).toBe("secret");
    expect(other.headers["x-wasm-response"]).toBeUndefined();
  });

  it("answers locally when a filter denies, and nothing goes upstream", async () => {
    const before = up.received.length;
    const denied = await get(p.url, at(PORT.deny), "/d", { "x-deny": "1" });
    expect(denied.status).toBe(403);
    expect(denied.text).toBe("denied by wasm");
    expect(denied.headers["x-denied-by"]).toBe("wasm");
    expect(denied.headers.server).toBe("envoy");
    expect(up.received.length).toBe(before);
    expect((await get(p.url, at(PORT.deny), "/d")).status).toBe(200);
  });

  it("rewrites response bodies, small and streamed over many chunks", async () => {
    const small = await get(p.url, at(PORT.body), "/hello");
    expect(small.status).toBe(200);
    expect(small.text).toContain('"NAME":"SVC"');
    const big = await get(p.url, at(PORT.body), "/download/300000");
    expect(big.text.length).toBe(300000);
    expect(big.text).toMatch(/^[^a-z]*$/); // every letter upper-cased, across chunk boundaries
    expect(big.headers["content-length"]).toBeUndefined(); // the filter removed it: chunked
  });

  it("rewrites request bodies on their way upstream", async () => {
    const body = "hello wasm ".repeat(20_000); // 220 KB: many chunks
    const res = await request(`${p.url}/upload`, { method: "POST", headers: { host: at(PORT.body), "content-type": "text/plain" }, body });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const seen = up.received.at(-1)!;
    expect(seen.bodyBytes).toBe(body.length);
    expect(seen.bodySha256).toBe(createHash("sha256").update(body.toUpperCase()).digest("hex"));
    expect(seen.headers["content-length"]).toBeUndefined(); // removed by the filter: sent chunked
  });

  it("calls out to a cluster and continues the request when it answers 200", async () => {
    auth.status = 200;
    const calls = auth.calls;
    const ok = await get(p.url, at(PORT.callout), "/c");
    expect(ok.status).toBe(200);
    expect(ok.json().headers["x-auth"]).toBe("ok");
    expect(auth.calls).toBe(calls + 1);
    auth.status = 503;
    const refused = await get(p.url, at(PORT.callout), "/c");
    expect(refused.status).toBe(401);
    expect(refused.headers["x-auth-failure"]).toBe("503");
  });

  it("contains a filter that traps, loops or exhausts its memory: 503 for that request (FAIL_CLOSE), and the proxy keeps serving", async () => {
    for (const header of ["x-trap", "x-loop", "x-grow"]) {
      const failed = await get(p.url, at(PORT.failClose), "/f", { [header]: "1" });
      expect(failed.status, header).toBe(503);
      // The VM is restarted: the next request is served.
      expect((await get(p.url, at(PORT.failClose), "/f")).status, `after ${header}`).toBe(200);
    }
    const m = await metrics();
    expect(m.sum("instio_wasm_plugin_failures_total", { plugin_name: "default.hostile-closed" })).toBeGreaterThanOrEqual(3);
    expect(p.logs.some((l) => l.includes("plugin default.hostile-closed") && l.includes("time budget"))).toBe(true);
  }, 30_000);

  it("lets the request through a failed filter under FAIL_OPEN", async () => {
    const r = await get(p.url, at(PORT.failOpen), "/o", { "x-trap": "1" });
    expect(r.status).toBe(200);
  });

  it("exports a plugin's metrics, runs its timer and its on_log", async () => {
    for (let i = 0; i < 5; i++) expect((await get(p.url, at(PORT.stats), `/s${i}`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 100));
    const m = await metrics();
    expect(m.sum("wasm_stats_requests")).toBe(5);
    expect(m.sum("wasm_stats_ticks")).toBeGreaterThan(0);
  });

  it("runs plugins in Istio's phase order: an AUTHZ plugin answers before an unspecified-phase plugin sees the request", async () => {
    const denied = await get(p.url, at(PORT.ordered), "/x", { "x-deny": "1" });
    expect(denied.status).toBe(403);
    const passed = await get(p.url, at(PORT.ordered), "/x");
    expect(passed.json().headers["x-wasm-added"]).toBe('{"value":"ordered"}');
  });
});
