// The command line as a user runs it: validate, explain, proxy (with inbound).

import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { QUICKSTART_CONFIG } from "../../host/quickstart.js";
import { CLI, startChildProxy } from "../support/child-proxy.js";
import { startUpstream } from "../support/upstream.js";

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tempConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "instio-cli-"));
  writeFileSync(join(dir, "a.yaml"), text);
  return dir;
}

describe("instio CLI", () => {
  it("--help lists the commands with examples", () => {
    const r = run("--help");
    expect(r.status).toBe(0);
    for (const c of ["proxy --config", "validate", "explain", "quickstart", "Examples:"]) expect(r.stdout).toContain(c);
  });

  it("proxy refuses a --concurrency that is not a thread count, and one the uws engine cannot serve", () => {
    for (const bad of ["-1", "2.5", "65", "two"]) {
      const r = run("proxy", "--config", "examples/quickstart", `--concurrency=${bad}`);
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toContain(`--concurrency must be an integer from 0 to 64, got "${bad}"`);
    }
    const dir = tempConfig(`apiVersion: instio.dev/v1alpha1
kind: ProxySettings
spec:
  listeners: {outbound: {address: 127.0.0.1, port: 0, engine: uws}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
`);
    const r = run("proxy", "--config", dir, "--concurrency", "2");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("concurrency 2 needs listeners on the h1, node or h2c engine: the uws engine serves from one thread");
  });

  it("bench times a config's own routes: a generated corpus (every route, last routes, misses) or the user's requests", () => {
    const generated = run("bench", "--config", QUICKSTART_CONFIG, "--samples", "3");
    expect(generated.status, generated.stderr).toBe(0);
    expect(generated.stdout).toMatch(/route image [\d.]+ KiB in Wasm memory/);
    expect(generated.stdout).toMatch(/\| Wasm route core \(field copy \+ call\) \| [\d.]+ (ns|µs) \|/);
    expect(generated.stdout).toMatch(/\| TypeScript reference matcher \| [\d.]+ (ns|µs) \|/);
    // The header route (end-user: jason) and the host's last route are in the corpus, with their file:line.
    expect(generated.stdout).toMatch(/slowest requests through the Wasm core:\n(.*\n){0,4}.*(route|miss)/);
    const dir = tempConfig("");
    writeFileSync(join(dir, "requests.txt"), "# method, URL, headers\nGET http://reviews:9080/reviews/1 end-user=jason\nGET http://reviews:9080/reviews/2\n");
    const mine = run("bench", "--config", QUICKSTART_CONFIG, "--requests", join(dir, "requests.txt"), "--samples", "3");
    expect(mine.status, mine.stderr).toBe(0);
    expect(mine.stdout).toContain("corpus: 2 requests");
    expect(mine.stdout).toContain("requests.txt:2");
    writeFileSync(join(dir, "bad.txt"), "GET http://reviews:9080/\nGET not-a-url\n");
    const bad = run("bench", "--config", QUICKSTART_CONFIG, "--requests", join(dir, "bad.txt"));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/bad\.txt:2: expected METHOD URL/);
  });

  it("validate accepts the quickstart and rejects a bad file with every error and exit 1", () => {
    expect(run("validate", QUICKSTART_CONFIG).status).toBe(0);
    const dir = tempConfig(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDM}}
  subsets: [{name: v1}, {name: v1}]
`);
    const r = run("validate", dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('a.yaml:6:42: error: spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, ROUND_ROBIN, RANDOM, PASSTHROUGH, got "RANDM"');
    expect(r.stderr).toContain('a.yaml:7:32: error: spec.subsets[1].name: duplicate subset "v1"');
    expect(r.stderr).toContain("2 error(s)");
  });

  it("explain shows the virtual host, why earlier routes failed, and the chosen endpoint", () => {
    const r = run("explain", "--config", QUICKSTART_CONFIG, "GET http://reviews:9080/reviews/1", "-H", "end-user: mike");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("virtual host: reviews.default.svc.cluster.local:9080");
    expect(r.stdout).toContain('✗ route 0 "jason" of VirtualService default/reviews');
    expect(r.stdout).toContain('header end-user exact "jason": is "mike"');
    expect(r.stdout).toContain('✓ route 1 "canary"');
    expect(r.stdout).toMatch(/decision: forward to 127\.0\.0\.1:1908[13]/);
    expect(r.stdout).toContain("retries: 2 on connectFailure, grpcStatuses 1/14"); // Istio's default policy
    const blocked = run("explain", "--config", QUICKSTART_CONFIG, "GET http://example.com/");
    expect(blocked.stdout).toContain("decision: 502 (block_all");
  });

  it("explain shows the decision the proxy takes: a fault abort before the route's destination, and every circuit breaker", () => {
    const dir = tempConfig(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc}
spec:
  host: svc
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 10}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {prefix: /always}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    route: [{destination: {host: svc}}]
`);
    const always = run("explain", "--config", dir, "GET http://svc/always");
    expect(always.stdout).toContain('decision: 503 FI "fault filter abort" (fault.abort for every request)');
    expect(always.stdout).not.toContain("forward");
    const half = run("explain", "--config", dir, "GET http://svc/half");
    expect(half.stdout).toContain('fault: 50% of requests end here with 500 FI "fault filter abort"; the others:');
    expect(half.stdout).toContain("circuit breakers: maxRequestsPerConnection 10 (then a new connection)");
    expect(half.stdout).toContain("decision: forward to 10.0.0.1:80");
  });

  it("proxy forwards the inbound listener to the local application port", async () => {
    const app = await startUpstream("app");
    const dir = tempConfig(`apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: s}
spec:
  listeners:
    outbound: {address: 127.0.0.1, port: 0}
    inbound: {address: 127.0.0.1, port: 0, appPort: ${app.port}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {address: 127.0.0.1, statusPort: 0, prometheusPort: 0, healthPort: 0}
`);
    const proxy = await startChildProxy(dir);
    try {
      const m = /inbound 127\.0\.0\.1:(\d+)/.exec(proxy.stderr());
      expect(m).not.toBeNull();
      const res = await request(`http://127.0.0.1:${m![1]}/hello`, { headers: { host: "productpage:9080" } });
      const body = (await res.body.json()) as { name: string; url: string; headers: Record<string, string> };
      expect(body.name).toBe("app");
      expect(body.url).toBe("/hello");
      expect(body.headers.host).toBe("productpage:9080");
      const ready = await request(`http://127.0.0.1:${proxy.adminPort}/ready`);
      expect(ready.statusCode).toBe(200);
      await ready.body.text();
    } finally {
      await proxy.stop();
      await app.close();
    }
  });
});
