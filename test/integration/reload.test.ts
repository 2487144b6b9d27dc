// Hot reload while traffic flows: every request succeeds, good configs take
// effect, bad ones are rejected with file:line and the last good one keeps serving.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, waitFor } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

function mesh(a: Upstream, b: Upstream, subset: "a" | "b"): string {
  return `${settingsYaml("uws")}---
${serviceEntryYaml("svc", [{ port: a.port, labels: { v: "a" } }, { port: b.port, labels: { v: "b" } }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  subsets: [{name: a, labels: {v: a}}, {name: b, labels: {v: b}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - route: [{destination: {host: svc, subset: ${subset}}}]
`;
}

const BAD = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - route:
    - destination: {host: svc}
      weight: -5
`;

describe("config reload", () => {
  let a: Upstream;
  let b: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    a = await startUpstream("a");
    b = await startUpstream("b");
    p = await startTestProxy(mesh(a, b, "a"), { watch: true });
  });
  afterAll(async () => {
    await p.close();
    await a.close();
    await b.close();
  });

  it("loses no request while the config changes 30 times under load", async () => {
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (running) {
        try {
          const r = await get(p.url, "svc", "/");
          if (r.status === 200) ok++;
          else failures.push(`${r.status} ${r.text}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    for (let i = 0; i < 30; i++) {
      const version = p.proxy.holder.current.version;
      if (i % 5 === 4) {
        const rejected = p.proxy.updates.stats.rejected;
        p.write(BAD);
        await waitFor(() => p.proxy.updates.stats.rejected > rejected, "the bad config to be rejected");
      } else {
        p.write(mesh(a, b, i % 2 === 0 ? "b" : "a"));
        await waitFor(() => p.proxy.holder.current.version > version, `reload ${i}`);
      }
    }
    running = false;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
    expect(p.proxy.updates.stats.applied).toBe(24);
    expect(p.proxy.updates.stats.rejected).toBe(6);
  }, 60_000);

  it("keeps serving the last good config after a bad one and logs file:line:column and field", async () => {
    const version = p.proxy.holder.current.version;
    p.write(mesh(a, b, "b"));
    await waitFor(() => p.proxy.holder.current.version > version, "the good config");
    expect((await get(p.url, "svc")).json().name).toBe("b");
    const rejected = p.proxy.updates.stats.rejected;
    p.write(BAD);
    await waitFor(() => p.proxy.updates.stats.rejected > rejected, "the rejection");
    expect((await get(p.url, "svc")).json().name).toBe("b");
    expect(p.logs.join("\n")).toMatch(/mesh\.yaml:9:15: error: spec\.http\[0\]\.route\[0\]\.weight: must be between 0 and 2147483647, got -5/);
    expect(p.logs.join("\n")).toMatch(/config \(file reload\): rejected; still serving version/);
  });
});

describe("a cluster removed by a reload", () => {
  it("lets its request in flight finish, then its pool closes and leaves the registry (Envoy's cluster drain)", async () => {
    const up = await startUpstream("old");
    const withPool = (name: string): string => `${serviceEntryYaml(name, [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}}
spec:
  host: ${name}
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}
`;
    const p = await startTestProxy(`${settingsYaml("h1")}---\n${withPool("keep")}---\n${withPool("gone")}`, { watch: true });
    try {
      expect((await get(p.url, "keep", "/")).status).toBe(200);
      const pools = p.proxy.holder.pools.size;
      const slow = get(p.url, "gone", "/delay/600");
      await waitFor(() => up.arrived() >= 2, "the slow request to reach the upstream");
      const version = p.proxy.holder.current.version;
      p.write(`${settingsYaml("h1")}---\n${withPool("keep")}`);
      await waitFor(() => p.proxy.holder.current.version > version, "the reload");
      expect(p.proxy.holder.pools.size).toBe(pools - 1);
      expect((await slow).status).toBe(200); // the removed cluster's request in flight completed
      expect((await get(p.url, "keep", "/")).status).toBe(200); // the kept cluster's pool still serves
      expect((await get(p.url, "gone", "/")).status).not.toBe(200);
    } finally {
      await p.close();
      await up.close();
    }
  });
});
