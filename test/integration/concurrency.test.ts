// `concurrency: N`: serving threads sharing the listeners with SO_REUSEPORT, as
// Envoy's workers. Every thread takes connections, every thread serves each
// config the main thread applies, one scrape sums them all, and requests in
// flight on a worker hold the drain as the main thread's do.

import { mkdtempSync, writeFileSync } from "node:fs";
import { get, type IncomingMessage } from "node:http";
import { createServer, type Server } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfigPath, requireConfig } from "../../host/config/load.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";
import { socketAddon } from "../../host/listeners/socket-addon.js";
import { SHARED_BREAKER_SLOTS, SharedBreakerTable } from "../../host/cluster/shared-breakers.js";
import { parseExposition } from "../support/prometheus.js";
import { serviceEntryYaml, settingsYaml } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

/** One request on a connection of its own (agent: false), so that the kernel picks a thread for each. */
function fresh(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, headers: { host }, agent: false }, (res: IncomingMessage) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    }).on("error", reject);
  });
}

async function scrape(proxy: RunningProxy): Promise<ReturnType<typeof parseExposition>> {
  const res = await fetch(`http://127.0.0.1:${proxy.admin.port}/stats/prometheus`);
  return parseExposition(await res.text());
}

function configDir(yaml: string): { dir: string; write(text: string): void } {
  const dir = mkdtempSync(join(tmpdir(), "instio-concurrency-"));
  const write = (text: string): void => writeFileSync(join(dir, "mesh.yaml"), text);
  write(yaml);
  return { dir, write };
}

/** Requests every serving thread handled, from one scrape. */
function byThreadTotal(m: ReturnType<typeof parseExposition>): number {
  return m.sum("instio_serving_thread_requests_total");
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const HOST = "svc.default.svc.cluster.local";

describe("concurrency: serving threads", () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it("spreads connections over every thread, applies each reload on all of them and sums them in one scrape", async () => {
    const a = await startUpstream("a");
    const b = await startUpstream("b");
    cleanup.push(() => a.close(), () => b.close());
    const config = (up: Upstream): string => `${settingsYaml("h1", "  concurrency: 2")}---\n${serviceEntryYaml("svc", [{ port: up.port }])}`;
    const files = configDir(config(a));
    const logs: string[] = [];
    const proxy = await startProxy({ config: requireConfig(loadConfigPath(files.dir)), configPath: files.dir, log: (l) => logs.push(l) });
    cleanup.push(() => proxy.close());
    expect(logs).toContain("instio: 2 serving threads (concurrency 2), listeners shared with SO_REUSEPORT");

    const round = async (): Promise<string[]> => {
      const answers = await Promise.all(Array.from({ length: 64 }, () => fresh(proxy.outbound.port, "/", HOST)));
      for (const r of answers) expect(r.status).toBe(200);
      return answers.map((r) => (JSON.parse(r.body) as { name: string }).name);
    };
    expect(new Set(await round())).toEqual(new Set(["a"]));
    let metrics = await scrape(proxy);
    const byThread = (m: typeof metrics, thread: string): number => m.sum("instio_serving_thread_requests_total", { thread });
    // 64 connections, each thread's share binomial(64, ½): both have some (1 − 2⁻⁶³ of the time).
    expect(byThread(metrics, "0")).toBeGreaterThan(0);
    expect(byThread(metrics, "1")).toBeGreaterThan(0);
    expect(byThread(metrics, "0") + byThread(metrics, "1")).toBe(64);
    expect(metrics.sum("istio_requests_total", { destination_service: HOST, response_code: "200" })).toBe(64);
    // What each thread holds a copy of is not summed: one endpoint, not two.
    expect(metrics.sum("envoy_cluster_membership_total", { cluster_name: `outbound|80||${HOST}` })).toBe(1);
    // Process-wide series once, from the main thread.
    expect(metrics.find("process_resident_memory_bytes")).toHaveLength(1);

    // The same service moves to upstream b: every thread serves the new config once the worker applied it.
    files.write(config(b));
    await until(() => logs.some((l) => /^worker 1: config: version 2 applied/.test(l)), "the worker to apply version 2");
    expect(logs.some((l) => /^config: version 2 applied/.test(l))).toBe(true);
    expect(new Set(await round())).toEqual(new Set(["b"]));
    metrics = await scrape(proxy);
    expect(metrics.sum("instio_config_version")).toBe(2);
    expect(byThread(metrics, "0") + byThread(metrics, "1")).toBe(128);
  });

  it("refuses passthrough to the proxy's own admin and agent ports on every thread", async () => {
    const files = configDir(settingsYaml("h1", "  concurrency: 2"));
    const proxy = await startProxy({ config: requireConfig(loadConfigPath(files.dir)), log: () => {} });
    cleanup.push(() => proxy.close());
    // allowLoopback is on (settingsYaml), so only the guard's own-port check stands between a client and the admin port.
    for (const port of [proxy.admin.port, ...proxy.agentPorts.map((l) => l.port)]) {
      const answers = await Promise.all(Array.from({ length: 32 }, () => fresh(proxy.outbound.port, "/ready", `127.0.0.1:${port}`)));
      expect(answers.map((r) => r.status), `port ${port}`).toEqual(Array<number>(32).fill(502));
    }
    expect((await scrape(proxy)).sum("instio_serving_thread_requests_total", { thread: "1" })).toBeGreaterThan(0);
  });

  it("holds the drain while any thread has requests in flight, and exits when all are done", async () => {
    const slow = await startUpstream("slow");
    cleanup.push(() => slow.close());
    const files = configDir(`${settingsYaml("h1", "  concurrency: 2\n  drain: {duration: 1s}")}---\n${serviceEntryYaml("svc", [{ port: slow.port }])}`);
    const logs: string[] = [];
    let exitedAt = 0;
    const exited = new Promise<number>((resolve) => {
      void startProxy({ config: requireConfig(loadConfigPath(files.dir)), log: (l) => logs.push(l), onExit: (code) => ((exitedAt = Date.now()), resolve(code)) }).then((p) => {
        proxy = p;
        started();
      });
    });
    let proxy: RunningProxy | undefined;
    let started!: () => void;
    await new Promise<void>((r) => (started = r));
    const p = proxy!;
    cleanup.push(() => p.close());

    const finished: number[] = [];
    const inFlight = Array.from({ length: 16 }, () => fresh(p.outbound.port, "/delay/1500", HOST).then((r) => (finished.push(Date.now()), r)));
    // All 16 in flight, counted across both threads through their shared cells.
    await until(() => slow.arrived() === 16, "16 requests at the upstream");
    const metrics = await scrape(p);
    expect(metrics.sum("envoy_http_downstream_rq_active", { listener: "outbound" })).toBe(16);
    expect(p.lifecycle.inFlight).toBe(16);

    void p.lifecycle.terminate();
    expect(await exited).toBe(0);
    const answers = await Promise.all(inFlight);
    for (const r of answers) expect(r.status).toBe(200);
    expect(finished).toHaveLength(16);
    expect(Math.max(...finished)).toBeLessThanOrEqual(exitedAt);
    // Requests end at 1.5 s, the drain cuts them at 2 s: the proxy exited because nothing was left, on either thread.
    expect(logs).toContain("shutdown: no requests in flight, exiting");
  });

  it("counts circuit-breaker limits across threads, as Envoy's workers share them", async () => {
    const up = await startUpstream("held");
    cleanup.push(() => up.close());
    // At most 1 connection and 1 pending request: 2 requests in flight for the whole proxy, whichever thread takes them.
    const files = configDir(`${settingsYaml("h1", "  concurrency: 2")}---\n${serviceEntryYaml("svc", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec: {host: svc, trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}}
`);
    const proxy = await startProxy({ config: requireConfig(loadConfigPath(files.dir)), log: () => {} });
    cleanup.push(() => proxy.close());
    const answers = Array.from({ length: 12 }, () => fresh(proxy.outbound.port, "/hold/k", HOST));
    // The ones over the limit are answered at once (503 UO); the admitted ones wait at the upstream.
    const refused = await Promise.race([Promise.all(answers), new Promise<undefined>((r) => setTimeout(() => r(undefined), 1500))]);
    expect(refused).toBeUndefined();
    // One connection per thread's pool (Envoy's pools are per worker too): the second admitted request waits as
    // pending on its thread, or is on the other thread's connection.
    await until(() => up.held("k") >= 1, "a request held at the upstream");
    const metrics = await scrape(proxy);
    expect(up.held("k")).toBeLessThanOrEqual(2);
    const cluster = `outbound|80||${HOST}`;
    expect(metrics.sum("envoy_cluster_upstream_rq_pending_overflow", { cluster_name: cluster })).toBe(10);
    expect(metrics.sum("envoy_cluster_circuit_breakers_default_remaining_rq", { cluster_name: cluster })).toBe(2 ** 32 - 1 - 2);
    up.release("k");
    const statuses = (await Promise.all(answers)).map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, ...Array<number>(10).fill(503)]);
    expect(byThreadTotal(await scrape(proxy))).toBe(12);
  });

  it("gives one name the same breaker counters in every table over the same memory, distinct names distinct ones, until the table is full", () => {
    const a = new SharedBreakerTable();
    const b = new SharedBreakerTable(a.block);
    const names = Array.from({ length: SHARED_BREAKER_SLOTS }, (_, i) => `outbound|80||svc-${i}.default.svc.cluster.local`);
    const fromA = names.map((n) => a.countersFor(n)!);
    names.forEach((n, i) => {
      const c = b.countersFor(n)!;
      expect(c.byteOffset).toBe(fromA[i]!.byteOffset);
    });
    expect(new Set(fromA.map((c) => c.byteOffset)).size).toBe(SHARED_BREAKER_SLOTS);
    expect(a.countersFor("one cluster too many")).toBeUndefined();
  });

  it("refuses a port another socket holds without SO_REUSEPORT, with the kernel's reason", async () => {
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise<void>((r) => holder.close(() => r())));
    const port = (holder.address() as { port: number }).port;
    const files = configDir(settingsYaml("h1", "  concurrency: 2").replace("outbound: {address: 127.0.0.1, port: 0", `outbound: {address: 127.0.0.1, port: ${port}`));
    await expect(startProxy({ config: requireConfig(loadConfigPath(files.dir)), log: () => {} })).rejects.toThrow(new RegExp(`bind 127\\.0\\.0\\.1:${port}: Address already in use`));
  });

  it("binds SO_REUSEPORT sockets only on IP literals, and a second one shares the port", () => {
    const { addon } = socketAddon();
    expect(() => addon!.reusePortListener("localhost", 0, 511)).toThrow(/must be an IPv4 or IPv6 address/);
    expect(() => addon!.reusePortListener("127.0.0.1", 70_000, 511)).toThrow(/port 0\.\.65535/);
    const probe = createServer();
    const fd = addon!.reusePortListener("127.0.0.1", 0, 511);
    return new Promise<void>((resolve) => {
      probe.listen({ fd }, () => {
        const port = (probe.address() as { port: number }).port;
        const second = createServer();
        second.listen({ fd: addon!.reusePortListener("127.0.0.1", port, 511) }, () => {
          second.close();
          probe.close(() => resolve());
        });
      });
    });
  });

  it("is a settings error with the uws engine, and 0 means one thread per CPU", () => {
    const uws = configDir(settingsYaml("uws", "  concurrency: 2"));
    const result = loadConfigPath(uws.dir);
    expect(result.diagnostics.map((d) => `${d.line}: ${d.message}`)).toContainEqual(expect.stringMatching(/^\d+: concurrency 2 needs listeners on the h1, node or h2c engine/));
    const all = configDir(settingsYaml("h1", "  concurrency: 0"));
    expect(requireConfig(loadConfigPath(all.dir)).settings.concurrency).toBe(Math.min(availableParallelism(), 64));
    const bad = configDir(settingsYaml("h1", "  concurrency: -1"));
    expect(loadConfigPath(bad.dir).diagnostics.some((d) => d.severity === "error" && /concurrency/.test(d.path))).toBe(true);
  });
});
