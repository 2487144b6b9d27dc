// ServiceEntry resolution DNS: endpoints follow DNS answers while traffic flows,
// with a real DNS server (UDP) that the test changes.

import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeDns, type FakeDns } from "../support/dns-server.js";
import { get, settingsYaml, startTestProxy, waitFor, type TestProxy } from "../support/proxy.js";

/** An upstream answering its own name, on `address:port` (port 0: any). */
async function named(name: string, address: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    req.resume();
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(port, address, r));
  return { server, port: (server.address() as { port: number }).port };
}

describe("DNS resolution", () => {
  let dns: FakeDns;
  let a: Awaited<ReturnType<typeof named>>;
  let b: Awaited<ReturnType<typeof named>>;
  let p: TestProxy;

  beforeAll(async () => {
    // Two upstreams on one port, at two loopback addresses: DNS decides which one the name means.
    a = await named("a", "127.0.0.2", 0);
    b = await named("b", "127.0.0.3", a.port);
    dns = await startFakeDns({ "backend.example": ["127.0.0.2"], "pool.example": ["127.0.0.2", "127.0.0.3"] });
    p = await startTestProxy(`${settingsYaml("uws", `  dns: {servers: ["${dns.server}"], refreshRate: 100ms}`)}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend}
spec:
  hosts: [backend.example]
  ports: [{number: ${a.port}, name: http}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pool}
spec:
  hosts: [pool.internal]
  ports: [{number: ${a.port}, name: http}]
  resolution: DNS
  endpoints: [{address: pool.example}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool}
spec:
  host: pool.internal
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
`);
  });
  afterAll(async () => {
    await p.close();
    await dns.close();
    a.server.close();
    b.server.close();
  });

  it("resolves the host before serving, then follows a DNS change while traffic flows, failing nothing", async () => {
    const host = `backend.example:${a.port}`;
    expect((await get(p.url, host)).text).toBe("a");
    const { core, config } = p.proxy.holder.current;
    dns.records.set("backend.example", ["127.0.0.3"]);
    const seen: string[] = [];
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const r = await get(p.url, host);
      expect(r.status).toBe(200);
      seen.push(r.text);
      if (seen.slice(-5).join() === "b,b,b,b,b") break;
    }
    expect(seen.slice(-5)).toEqual(["b", "b", "b", "b", "b"]);
    expect(p.logs.join("\n")).toMatch(/dns: backend\.example resolved to 127\.0\.0\.3/);
    // A config given as an object has no worker to compile on: only the endpoints are read again and patched.
    expect(p.proxy.holder.current.core).toBe(core);
    expect(p.proxy.holder.current.update).toBe("endpoints");
    expect(p.proxy.holder.current.config.table).toBe(config.table); // the route table was not compiled again
  });

  it("turns every address of an endpoint name into an endpoint (STRICT_DNS)", async () => {
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) names.add((await get(p.url, `pool.internal:${a.port}`)).text);
    expect([...names].sort()).toEqual(["a", "b"]);
  });
});

describe("DNS resolution with a watched config", () => {
  it("recompiles on the config worker when addresses change, applied as an endpoint update; a reload's new name is resolved first", async () => {
    const a = await named("a", "127.0.0.2", 0);
    const b = await named("b", "127.0.0.3", a.port);
    const dns = await startFakeDns({ "backend.example": ["127.0.0.2"], "other.example": ["127.0.0.3"] });
    const entry = (name: string): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name.split(".")[0]}}
spec:
  hosts: [${name}]
  ports: [{number: ${a.port}, name: http}]
  resolution: DNS
`;
    const settings = settingsYaml("h1", `  dns: {servers: ["${dns.server}"], refreshRate: 100ms}`);
    const p = await startTestProxy(`${settings}---\n${entry("backend.example")}`, { watch: true });
    try {
      const host = `backend.example:${a.port}`;
      expect((await get(p.url, host)).text).toBe("a");
      const core = p.proxy.holder.current.core;
      dns.records.set("backend.example", ["127.0.0.3"]);
      await waitFor(() => p.logs.some((l) => l.includes("(DNS addresses changed:") && l.includes("endpoints of outbound|")), "the DNS change to be applied");
      expect((await get(p.url, host)).text).toBe("b");
      expect(p.proxy.holder.current.core).toBe(core); // endpoints patched in place, no new route core
      expect(p.proxy.holder.current.update).toBe("endpoints");

      // A file reload bringing a name nobody resolved yet: resolved, then compiled with its address.
      const version = p.proxy.holder.current.version;
      p.write(`${settings}---\n${entry("backend.example")}---\n${entry("other.example")}`);
      await waitFor(() => p.proxy.holder.current.version > version && p.proxy.holder.current.config.dnsNames.includes("other.example"), "the reload with the new name");
      expect((await get(p.url, `other.example:${a.port}`)).text).toBe("b");
    } finally {
      await p.close();
      await dns.close();
      a.server.close();
      b.server.close();
    }
  });
});
