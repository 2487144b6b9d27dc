// Istio's traffic-management tasks, with the YAML a user would write for
// Bookinfo's reviews service: request routing by the end-user header, then
// traffic shifting 50/50 and 100% by editing the VirtualService under load.
// (Fault injection, timeouts, retries and mirroring tasks: test/integration.)

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { get, serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, waitFor } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

const DESTINATION_RULE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
`;

/** The request-routing task's rule: jason sees v2, everyone else v1. */
const ROUTE_BY_USER = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
`;

/** The traffic-shifting task's rule (virtual-service-reviews-50-v3.yaml, then -v3.yaml). */
const shift = (v1: number, v3: number): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: ${v1}
    - destination: {host: reviews, subset: v3}
      weight: ${v3}
`;

describe("Istio traffic management tasks on Bookinfo's reviews", () => {
  const versions: Upstream[] = [];
  let base: string;
  let p: TestProxy;

  beforeAll(async () => {
    for (const v of ["v1", "v2", "v3"]) versions.push(await startUpstream(v));
    base = `${settingsYaml("uws")}---
${serviceEntryYaml("reviews", versions.map((u, i) => ({ port: u.port, labels: { version: `v${i + 1}` } })))}---
${DESTINATION_RULE}---
`;
    p = await startTestProxy(base + ROUTE_BY_USER, { watch: true });
  });
  afterAll(async () => {
    await p.close();
    for (const u of versions) await u.close();
  });

  async function tally(n: number, headers: Record<string, string> = {}): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const r = await get(p.url, "reviews", "/reviews/0", headers);
      expect(r.status).toBe(200);
      const name = r.json().name;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  }

  it("request routing: end-user jason goes to v2, everyone else to v1", async () => {
    expect(await tally(20, { "end-user": "jason" })).toEqual({ v2: 20 });
    expect(await tally(20, { "end-user": "mike" })).toEqual({ v1: 20 });
    expect(await tally(20)).toEqual({ v1: 20 });
  });

  it("traffic shifting: 50/50 between v1 and v3, then 100% to v3, by editing the VirtualService", async () => {
    let version = p.proxy.holder.current.version;
    p.write(base + shift(50, 50));
    await waitFor(() => p.proxy.holder.current.version > version, "the 50/50 rule");
    const n = 400;
    const half = await tally(n);
    expect(Object.keys(half).sort()).toEqual(["v1", "v3"]);
    // Binomial(400, 0.5): standard deviation 10; 5 of them is a 1-in-3-million false alarm.
    expect(Math.abs(half.v1! - n / 2)).toBeLessThan(50);

    version = p.proxy.holder.current.version;
    p.write(base + shift(0, 100));
    await waitFor(() => p.proxy.holder.current.version > version, "the 100% v3 rule");
    expect(await tally(50)).toEqual({ v3: 50 });
  });
});
