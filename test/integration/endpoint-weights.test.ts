// WorkloadEntry / ServiceEntry endpoint weights over real sockets, as Envoy
// applies load_balancing_weight: weighted round robin's exact cycle, least
// request and ring hash in proportion, RANDOM ignoring them, a weight changed
// by an endpoint update (no route rebuilt), and an ejection leaving the weights
// of the rest in force.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { destinationRuleYaml, get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

/** Which upstream answered each of `n` sequential requests to `host`. */
async function tally(p: TestProxy, host: string, n: number, headers: (i: number) => Record<string, string> = () => ({})): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await get(p.url, host, "/", headers(i));
    expect(r.status).toBe(200);
    const name = String(r.headers["x-upstream"]);
    seen[name] = (seen[name] ?? 0) + 1;
  }
  return seen;
}

/** Whether `count` of `n` draws is within 5 standard deviations of a share `p`. */
function near(count: number, n: number, p: number): boolean {
  return Math.abs(count - n * p) <= 5 * Math.sqrt(n * p * (1 - p));
}

describe("endpoint weights", () => {
  let heavy: Upstream;
  let light: Upstream;
  let p: TestProxy;
  const yaml = (weights: { heavy?: number; light?: number }): string => {
    const eps = [{ port: heavy.port, weight: weights.heavy }, { port: light.port, weight: weights.light }];
    return `${settingsYaml("uws")}---
${serviceEntryYaml("rr", eps)}---
${destinationRuleYaml("rr", "{loadBalancer: {simple: ROUND_ROBIN}}")}---
${serviceEntryYaml("lr", eps)}---
${serviceEntryYaml("random", eps)}---
${destinationRuleYaml("random", "{loadBalancer: {simple: RANDOM}}")}---
${serviceEntryYaml("ring", eps)}---
${destinationRuleYaml("ring", "{loadBalancer: {consistentHash: {httpHeaderName: x-user}}}")}---
${serviceEntryYaml("ejecting", [{ port: heavy.port, weight: 3 }, { port: light.port, weight: 1 }, { port: 1, weight: 5 }])}---
${destinationRuleYaml("ejecting", "{loadBalancer: {simple: ROUND_ROBIN}, outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}")}`;
  };

  beforeAll(async () => {
    heavy = await startUpstream("heavy");
    light = await startUpstream("light");
    p = await startTestProxy(yaml({ heavy: 3 }), { watch: true });
  });
  afterAll(async () => {
    await p.close();
    await heavy.close();
    await light.close();
  });

  it("cycles ROUND_ROBIN in Envoy's weighted order, 3 : 1 (a weight left out is 1)", async () => {
    const order: string[] = [];
    for (let i = 0; i < 8; i++) order.push(String((await get(p.url, "rr")).headers["x-upstream"]));
    expect(order).toEqual(["heavy", "heavy", "light", "heavy", "heavy", "heavy", "light", "heavy"]);
    const clusters = await fetch(`http://127.0.0.1:${p.proxy.admin.port}/clusters`).then((r) => r.text());
    expect(clusters).toContain(`outbound|80||rr.default.svc.cluster.local::127.0.0.1:${heavy.port}::weight::3`);
    expect(clusters).toContain(`outbound|80||rr.default.svc.cluster.local::127.0.0.1:${light.port}::weight::1`);
  });

  it("draws LEAST_REQUEST's choices by weight: sequential requests split 3 : 1", async () => {
    const seen = await tally(p, "lr", 800);
    expect(near(seen.heavy ?? 0, 800, 0.75)).toBe(true);
  });

  it("leaves RANDOM unweighted, as Envoy's random load balancer", async () => {
    const seen = await tally(p, "random", 800);
    expect(near(seen.heavy ?? 0, 800, 0.5)).toBe(true);
  });

  it("gives ring hash points by weight: keys split about 3 : 1, each key sticky", async () => {
    const seen = await tally(p, "ring", 600, (i) => ({ "x-user": `user-${i}` }));
    // Keys over a ring of 1024 points: the split follows the points' arcs, near but not exactly 3 : 1.
    expect(seen.heavy! / 600).toBeGreaterThan(0.6);
    expect(seen.heavy! / 600).toBeLessThan(0.9);
    const again = await tally(p, "ring", 20, () => ({ "x-user": "user-7" }));
    expect(Object.keys(again)).toHaveLength(1);
  });

  it("keeps the weights of the endpoints left after an ejection (the schedule is rebuilt from the eligible ones)", async () => {
    // Port 1 refuses: ejected at its first failure (which the retry policy answers from another endpoint).
    const first: string[] = [];
    for (let i = 0; i < 12; i++) first.push(String((await get(p.url, "ejecting")).headers["x-upstream"]));
    const after: string[] = [];
    for (let i = 0; i < 8; i++) after.push(String((await get(p.url, "ejecting")).headers["x-upstream"]));
    expect(after.filter((n) => n === "heavy")).toHaveLength(6);
    expect(after.filter((n) => n === "light")).toHaveLength(2);
  });

  it("applies a weight change as an endpoint update, the route core kept", async () => {
    const core = p.proxy.holder.current.core;
    p.write(yaml({ light: 3 }));
    await expect.poll(() => p.proxy.holder.current.config.clusters.find((c) => c.host === "rr.default.svc.cluster.local")?.endpoints[1]?.weight, { timeout: 5000 }).toBe(3);
    expect(p.proxy.holder.current.core).toBe(core);
    const order: string[] = [];
    for (let i = 0; i < 8; i++) order.push(String((await get(p.url, "rr")).headers["x-upstream"]));
    expect(order.filter((n) => n === "light")).toHaveLength(6);
  });
});
