// `npm run bench:proxy-wasm`: what a Proxy-Wasm filter costs per request, in one
// run, on one proxy.
//
//   wrk ──> instio (outbound) ──> nginx
//
// The service has three ports; a WasmPlugin's match.ports puts a plugin on two:
//   :80  no plugin
//   :81  the empty filter (examples/proxy-wasm/filters/empty.ts: Continue everywhere)
//   :82  the header filter (headers.ts: adds and removes request headers, adds a response header)
// Both filters are built from the published AssemblyScript SDK, as a user would
// build them. The rows alternate over BENCH_ROUNDS rounds; the best round of
// each is printed. The filter's cost is the proxy's CPU time per request minus
// the no-plugin row's. The proxy is pinned to CPU 0, wrk and nginx to CPU 1.

import { createHash } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildFilters } from "../test/support/proxy-wasm-filters.js";
import { cpuSeconds, ensureTools, killTree, start, staticUpstream, waitForPort, wrk, type WrkResult } from "./processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UPSTREAM_PORT = 18480;
const PROXY_PORT = 18401;
const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const ROWS = [
  { host: "bench:80", label: "no plugin" },
  { host: "bench:81", label: "empty filter" },
  { host: "bench:82", label: "header filter (add 1, remove 1 request header; add 1 response header)" },
];

function plugin(name: string, file: string, port: number): string {
  const sha = createHash("sha256").update(readFileSync(file)).digest("hex");
  return `---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: default}
spec:
  url: file://${file}
  sha256: ${sha}
  pluginConfig: {value: bench}
  match: [{mode: CLIENT, ports: [{number: ${port}}]}]
`;
}

interface Measured extends WrkResult {
  cpuUsPerRequest: number;
}

async function main(): Promise<void> {
  ensureTools();
  const filters = await buildFilters(["empty", "headers"]);
  const dir = mkdtempSync(join(tmpdir(), "instio-wasm-bench-"));
  chmodSync(dir, 0o755); // nginx's worker (www-data) reads the upstream's files
  const config = join(dir, "proxy");
  mkdirSync(config);
  writeFileSync(
    join(config, "mesh.yaml"),
    `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: bench}
spec:
  namespace: default
  passthrough: {allowLoopback: true}
  listeners:
    outbound: {address: 127.0.0.1, port: ${PROXY_PORT}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench]
  ports: [{number: 80, name: http-80, targetPort: ${UPSTREAM_PORT}}, {number: 81, name: http-81, targetPort: ${UPSTREAM_PORT}}, {number: 82, name: http-82, targetPort: ${UPSTREAM_PORT}}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
${plugin("empty", filters.empty, 81)}${plugin("headers", filters.headers, 82)}`,
  );
  const children: ChildProcess[] = [];
  try {
    children.push(start(1, "nginx", ["-c", staticUpstream(join(dir, "upstream"), UPSTREAM_PORT), "-e", "stderr"]));
    const proxy = start(0, join(ROOT, "bin/instio.js"), ["proxy", "--config", config]);
    children.push(proxy);
    for (const row of ROWS) await waitForPort(PROXY_PORT, "/small", row.host);

    const best = new Map<string, Measured>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const row of ROWS) {
        wrk(PROXY_PORT, "/small", CONNECTIONS, 2, undefined, row.host); // warm-up: JIT, pools
        const before = cpuSeconds(proxy.pid!);
        const r = wrk(PROXY_PORT, "/small", CONNECTIONS, DURATION_S, undefined, row.host);
        const cpu = cpuSeconds(proxy.pid!) - before;
        if (r.errors > 0) console.error(`${row.host}: ${r.errors} errors in round ${round + 1}`);
        const m = { ...r, cpuUsPerRequest: (cpu * 1e6) / r.requests };
        if (!best.has(row.host) || m.cpuUsPerRequest < best.get(row.host)!.cpuUsPerRequest) best.set(row.host, m);
      }
    }

    console.log(`\nProxy-Wasm filters in instio: wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, 256 B responses, best of ${ROUNDS} alternating rounds; the proxy pinned to one core\n`);
    console.log("| plugin | req/s | p50 | p99 | proxy CPU per request | added by the filter |");
    console.log("|---|---:|---:|---:|---:|---:|");
    const base = best.get(ROWS[0]!.host)!.cpuUsPerRequest;
    for (const row of ROWS) {
      const m = best.get(row.host)!;
      const added = row === ROWS[0] ? "—" : `${(m.cpuUsPerRequest - base).toFixed(1)} µs`;
      console.log(`| ${row.label} | ${m.rps.toFixed(0)} | ${m.p50.toFixed(2)} ms | ${m.p99.toFixed(2)} ms | ${m.cpuUsPerRequest.toFixed(1)} µs | ${added} |`);
    }
  } finally {
    for (const c of children) killTree(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
