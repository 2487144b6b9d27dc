// Cluster state across config updates, over real sockets and real file
// reloads: ejections, circuit-breaker counts and health-check state stay with
// the clusters and endpoints that remain (Envoy's cluster manager across
// RDS/CDS/EDS); an endpoint update rewrites endpoints in the serving route core
// without building a new one; a removed endpoint's request in flight completes.

import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { destinationRuleYaml, get, serviceEntryYaml, settingsYaml, startTestProxy, waitFor, type TestProxy } from "../support/proxy.js";
import { failingUpstream, startUpstream, type Upstream } from "../support/upstream.js";

const SVC = "outbound|80||svc.default.svc.cluster.local";

function virtualService(marker: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: svc}}]
`;
}

function mesh(ports: number[], policy: string, marker = "1", settings = ""): string {
  return `${settingsYaml("h1", settings)}---
${serviceEntryYaml("svc", ports.map((port) => ({ port })))}---
${destinationRuleYaml("svc", policy)}---
${virtualService(marker)}`;
}

/** Writes `yaml` and waits until it serves; returns how it was applied. */
async function reload(p: TestProxy, yaml: string): Promise<string> {
  const version = p.proxy.holder.current.version;
  p.write(yaml);
  await waitFor(() => p.proxy.holder.current.version > version, "the reload");
  return p.proxy.holder.current.update;
}

async function clusters(p: TestProxy): Promise<string> {
  return request(`http://127.0.0.1:${p.proxy.admin.port}/clusters`).then((r) => r.body.text());
}

describe("an ejected endpoint", () => {
  let good: Upstream;
  let extra: Upstream;
  let bad: Awaited<ReturnType<typeof failingUpstream>>;
  let p: TestProxy;
  const policy = "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 60s, maxEjectionPercent: 50}}";
  beforeAll(async () => {
    good = await startUpstream("good");
    extra = await startUpstream("extra");
    bad = await failingUpstream(502);
    p = await startTestProxy(mesh([good.port, bad.port], policy), { watch: true });
  });
  afterAll(async () => {
    await p.close();
    await Promise.all([good.close(), extra.close(), bad.close()]);
  });

  it("stays ejected across a route change and an endpoint change", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(p.url, "svc", "/")).status);
    expect(statuses.filter((s) => s === 502)).toHaveLength(3);
    expect(await clusters(p)).toContain(`127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`);

    // A route change: a new route core, the same cluster and endpoints.
    expect(await reload(p, mesh([good.port, bad.port], policy, "2"))).toBe("routes");
    for (let i = 0; i < 10; i++) {
      const r = await get(p.url, "svc", "/");
      expect([r.status, r.headers["x-config"]]).toEqual([200, "2"]);
    }
    expect(bad.hits()).toBe(3);
    expect(await clusters(p)).toContain(`127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`);

    // An endpoint change: the serving core is patched, not rebuilt.
    const core = p.proxy.holder.current.core;
    expect(await reload(p, mesh([good.port, bad.port, extra.port], policy, "2"))).toBe("endpoints");
    expect(p.proxy.holder.current.core).toBe(core);
    const names = new Set<string>();
    for (let i = 0; i < 10; i++) names.add((await get(p.url, "svc", "/")).json().name as string);
    expect([...names].sort()).toEqual(["extra", "good"]);
    expect(bad.hits()).toBe(3);
  });
});

describe("load-balancer state", () => {
  it("round robin goes on where it was across a route change; a consistent hash keeps each key's endpoint", async () => {
    const ups = await Promise.all(["a", "b", "c"].map((n) => startUpstream(n)));
    const ports = ups.map((u) => u.port);
    const p = await startTestProxy(mesh(ports, "{loadBalancer: {simple: ROUND_ROBIN}}"), { watch: true });
    try {
      const names = async (n: number): Promise<string[]> => {
        const out: string[] = [];
        for (let i = 0; i < n; i++) out.push((await get(p.url, "svc", "/")).json().name);
        return out;
      };
      expect(await names(2)).toEqual(["a", "b"]);
      expect(await reload(p, mesh(ports, "{loadBalancer: {simple: ROUND_ROBIN}}", "2"))).toBe("routes");
      expect(await names(2)).toEqual(["c", "a"]); // not "a" again: the position came along

      const hashed = "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}";
      await reload(p, mesh(ports, hashed, "3"));
      const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
      const pick = async (): Promise<string[]> => Promise.all(users.map(async (u) => (await get(p.url, "svc", "/", { "x-user": u })).json().name));
      const before = await pick();
      expect(new Set(before).size).toBeGreaterThan(1);
      expect(await reload(p, mesh(ports, hashed, "4"))).toBe("routes");
      expect(await pick()).toEqual(before);
    } finally {
      await p.close();
      await Promise.all(ups.map((u) => u.close()));
    }
  });
});

describe("a circuit breaker", () => {
  it("keeps counting the requests in flight across a reload", async () => {
    const up = await startUpstream("up");
    const policy = "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}";
    const p = await startTestProxy(mesh([up.port], policy), { watch: true });
    try {
      // Held at the upstream until the test releases them: the reload cannot outlast them.
      const slow = [get(p.url, "svc", "/hold/breaker"), get(p.url, "svc", "/hold/breaker")];
      const breaker = p.proxy.holder.clusters.get(SVC)!.breaker;
      await waitFor(() => breaker.active === 2, "both slow requests to be admitted");
      expect(await reload(p, mesh([up.port], policy, "2"))).toBe("routes");
      // One on the connection, one pending: a third is over the limit, under the new config as under the old.
      const third = await get(p.url, "svc", "/");
      expect([third.status, third.headers["x-envoy-overloaded"]]).toEqual([503, "true"]);
      up.release("breaker");
      expect((await Promise.all(slow)).map((r) => r.status)).toEqual([200, 200]);
      expect(breaker.active).toBe(0);
      expect((await get(p.url, "svc", "/")).status).toBe(200);
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("active health-check state", () => {
  it("survives a reload: an unhealthy endpoint stays out of rotation", { timeout: 20_000 }, async () => {
    const good = await startUpstream("good");
    const bad = await failingUpstream(503);
    const checks = (interval: string): string => `  healthChecks: [{host: svc, path: /status/200, interval: ${interval}, timeout: 2s, unhealthyThreshold: 2, healthyThreshold: 2}]`;
    const policy = "{loadBalancer: {simple: ROUND_ROBIN}}";
    const p = await startTestProxy(mesh([good.port, bad.port], policy, "1", checks("50ms")), { watch: true });
    try {
      const flagged = `127.0.0.1:${bad.port}::health_flags::/failed_active_hc`;
      const until = Date.now() + 10_000;
      while (!(await clusters(p)).includes(flagged)) {
        if (Date.now() > until) throw new Error("the failing endpoint was never marked unhealthy");
        await new Promise((r) => setTimeout(r, 25));
      }
      // Checks from now on are an hour apart: whatever the endpoint's health is after the reload, it was carried.
      expect(await reload(p, mesh([good.port, bad.port], policy, "1", checks("1h")))).toBe("routes");
      const before = bad.hits();
      for (let i = 0; i < 10; i++) expect((await get(p.url, "svc", "/")).status).toBe(200);
      expect(bad.hits()).toBe(before);
      expect(await clusters(p)).toContain(flagged);
    } finally {
      await p.close();
      await good.close();
      await bad.close();
    }
  });
});

describe("an endpoint update", () => {
  it("lets a removed endpoint's request in flight complete, and sends new requests to the new endpoints", async () => {
    const a = await startUpstream("a");
    const b = await startUpstream("b");
    const p = await startTestProxy(mesh([a.port], "{}"), { watch: true });
    try {
      const slow = get(p.url, "svc", "/delay/800");
      await waitFor(() => a.arrived() >= 1, "the slow request to reach a");
      const core = p.proxy.holder.current.core;
      expect(await reload(p, mesh([b.port], "{}"))).toBe("endpoints");
      expect(p.proxy.holder.current.core).toBe(core);
      expect((await get(p.url, "svc", "/")).json().name).toBe("b");
      const r = await slow;
      expect([r.status, r.json().name]).toEqual([200, "a"]);
      const text = await clusters(p);
      expect(text).not.toContain(`127.0.0.1:${a.port}`);
      expect(text).toContain(`${SVC}::127.0.0.1:${b.port}::rq_active::0`);
    } finally {
      await p.close();
      await a.close();
      await b.close();
    }
  });

  it("under load, alternating with route changes: no request fails, and every in-flight count returns to zero", { timeout: 60_000 }, async () => {
    const ups = await Promise.all(Array.from({ length: 6 }, (_, i) => startUpstream(`u${i}`)));
    const ports = ups.map((u) => u.port);
    const policy = "{loadBalancer: {simple: LEAST_REQUEST}}";
    const p = await startTestProxy(mesh(ports.slice(0, 1), policy), { watch: true });
    try {
      let running = true;
      const failures: string[] = [];
      const seen = new Set<string>();
      const worker = async (): Promise<void> => {
        while (running) {
          const r = await get(p.url, "svc", "/delay/5").catch((err: Error) => ({ status: 0, text: String(err), json: () => ({ name: "" }) }));
          if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
          else seen.add(r.json().name as string);
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      const kinds: string[] = [];
      let moved = 0;
      for (let i = 1; i <= 16; i++) {
        const size = 1 + ((i * 5) % 6); // grows and shrinks: ranges move and the endpoint arrays are laid out again
        kinds.push(await reload(p, mesh(ports.slice(0, size), policy, i % 4 === 0 ? `r${i}` : "1")));
        moved = Math.max(moved, p.proxy.holder.current.core.layoutGeneration);
      }
      running = false;
      await Promise.all(workers);
      expect(failures).toEqual([]);
      expect(kinds).toContain("endpoints");
      expect(kinds).toContain("routes");
      expect(seen.size).toBe(6);
      expect(moved).toBeGreaterThan(0);
      const cluster = p.proxy.holder.clusters.get(SVC)!;
      expect(cluster.inFlight).toBe(0);
      expect(cluster.breaker.active).toBe(0);
      expect(Array.from(p.proxy.holder.current.core.active).every((n) => n === 0)).toBe(true);
    } finally {
      await p.close();
      await Promise.all(ups.map((u) => u.close()));
    }
  });
});
