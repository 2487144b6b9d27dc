// Runs instio in-process on port 0 against a config written to a temp directory.

import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { loadConfigPath, requireConfig } from "../../host/config/load.js";
import type { ListenerEngine } from "../../host/config/model.js";
import { startProxy, type RunningProxy } from "../../host/proxy/server.js";

export interface TestProxy {
  proxy: RunningProxy;
  dir: string;
  url: string;
  logs: string[];
  write(yaml: string): void;
  close(): Promise<void>;
}

/** The HTTP/1.1 front doors every listener test runs on: instio's own (the default), uWebSockets.js and node:http. */
export const HTTP1_ENGINES = ["h1", "uws", "node"] as const;
export type Http1Engine = (typeof HTTP1_ENGINES)[number];

export function settingsYaml(engine: ListenerEngine, extra = ""): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: test}
spec:
  namespace: default
  listeners:
    outbound: {address: 127.0.0.1, port: 0, engine: ${engine}}
  passthrough: {allowLoopback: true}   # the tests' upstreams are on loopback
  admin: {address: 127.0.0.1, port: 0}
  agent: {address: 127.0.0.1, statusPort: 0, prometheusPort: 0, healthPort: 0}
${extra ? `${extra}\n` : ""}`;
}

/**
 * A STATIC ServiceEntry `<name>.default.svc.cluster.local` on port 80 whose
 * endpoints are loopback ports, each with optional labels.
 */
export function serviceEntryYaml(name: string, endpoints: { port: number; labels?: Record<string, string>; weight?: number }[]): string {
  const eps = endpoints.map((e) => `  - {address: 127.0.0.1, ports: {http: ${e.port}}${e.labels ? `, labels: {${Object.entries(e.labels).map(([k, v]) => `${k}: ${v}`).join(", ")}}` : ""}${e.weight === undefined ? "" : `, weight: ${e.weight}`}}`).join("\n");
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}}
spec:
  hosts: [${name}.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
${eps}
`;
}

export async function startTestProxy(yaml: string, options: { watch?: boolean } = {}): Promise<TestProxy> {
  const dir = mkdtempSync(join(tmpdir(), "instio-test-"));
  const file = join(dir, "mesh.yaml");
  writeFileSync(file, yaml);
  const logs: string[] = [];
  const proxy = await startProxy({ config: requireConfig(loadConfigPath(dir)), configPath: options.watch ? dir : undefined, log: (l) => logs.push(l) });
  return {
    proxy,
    dir,
    url: `http://127.0.0.1:${proxy.outbound.port}`,
    logs,
    write: (text) => writeFileSync(file, text),
    close: () => proxy.close(),
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => { name: string; url: string; headers: Record<string, string>; bodyBytes: number; method: string };
}

/** One request through the proxy with a given Host header. */
export async function get(proxyUrl: string, host: string, path = "/", headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  const res = await request(`${proxyUrl}${path}`, { method: method as "GET", headers: { host, ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

/** Polls `cond` every 10 ms for up to 5 s (a config reload applying, a DNS change landing). */
export async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback port free right now, for listeners whose port number is configured (TCP, gateway). */
export async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A DestinationRule for `host` with `trafficPolicy` (YAML flow text). */
export function destinationRuleYaml(host: string, trafficPolicy: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${host}}
spec:
  host: ${host}
  trafficPolicy: ${trafficPolicy}
`;
}
