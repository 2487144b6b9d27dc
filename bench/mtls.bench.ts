// `npm run bench:mtls`: what mutual TLS between two sidecars costs, per request
// and per connection, against the plaintext path, in one run.
//
//   wrk ──> client sidecar (outbound) ──> server sidecar (inbound, PERMISSIVE) ──> nginx
//
// Both sidecars take their workload certificates from a running control plane
// (`instio control-plane --ca-dir`), as in a mesh. The client sidecar knows
// the server under four names that differ only in how it calls it:
//   bench-mtls          auto mTLS (the endpoint carries security.istio.io/tlsMode: istio), kept-alive connections
//   bench-plain         the same endpoint without the label: plaintext, kept-alive connections
//   bench-mtls-conn     mTLS with maxRequestsPerConnection: 1: a new connection and handshake per request
//   bench-plain-conn    plaintext with a new connection per request
// The server sidecar answers both on one port (PERMISSIVE tells them apart by
// the first byte), so the only difference between rows is the client's choice.
// Both sidecars are pinned to CPU 0, wrk and nginx to CPU 1; the rows alternate
// over BENCH_ROUNDS rounds and the best round of each is printed. The cost of
// mTLS is the difference in the two sidecars' CPU time per request:
//   per request     = mtls − plain (kept alive)
//   per connection  = (mtls-conn − plain-conn) − per request

import type { ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuSeconds, ensureTools, killTree, start, staticUpstream, waitForPort, wrk, type WrkResult } from "./processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UPSTREAM_PORT = 18380;
const CLIENT_PORT = 18301;
const SERVER_PORT = 18306;
const CP = { xds: 18310, monitoring: 18314, secure: 18312 };
const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

const ROWS = [
  { host: "bench-mtls", label: "mTLS, kept-alive connections" },
  { host: "bench-plain", label: "plaintext, kept-alive connections" },
  { host: "bench-mtls-conn", label: "mTLS, a new connection per request" },
  { host: "bench-plain-conn", label: "plaintext, a new connection per request" },
];

function settings(name: string, listeners: string): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: ${name}}
spec:
  namespace: default
  labels: {app: ${name}, version: v1}
  workload: {name: ${name}-v1, cluster: Kubernetes}
  passthrough: {allowLoopback: true}
  listeners:
${listeners}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
`;
}

/** The server as the client sees it under `host`: mesh-internal, its endpoint labelled for auto mTLS or not. */
function serverEntry(host: string, mtls: boolean, newConnectionEachRequest: boolean): string {
  return `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${host}, namespace: default}
spec:
  hosts: [${host}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${SERVER_PORT}}, serviceAccount: server, labels: {app: server${mtls ? ", security.istio.io/tlsMode: istio" : ""}}}]
${newConnectionEachRequest ? `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${host}, namespace: default}
spec: {host: ${host}.default.svc.cluster.local, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}}
` : ""}`;
}

function writeFiles(dir: string): { cp: string; tokens: string; ca: string; client: string; server: string } {
  const paths = { cp: join(dir, "cp"), tokens: join(dir, "tokens.yaml"), ca: join(dir, "ca"), client: join(dir, "client"), server: join(dir, "server") };
  for (const d of [paths.cp, paths.ca, paths.client, paths.server]) mkdirSync(d);
  writeFileSync(join(paths.cp, "mesh.yaml"), "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: none}\nspec: {hosts: [none.example], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 127.0.0.1}]}\n");
  writeFileSync(paths.tokens, "tokens:\n- {token: client-bench-token-0000, namespace: default, serviceAccount: client}\n- {token: server-bench-token-0000, namespace: default, serviceAccount: server}\n");
  writeFileSync(join(dir, "client.token"), "client-bench-token-0000\n");
  writeFileSync(join(dir, "server.token"), "server-bench-token-0000\n");
  writeFileSync(join(paths.client, "mesh.yaml"), settings("client", `    outbound: {address: 127.0.0.1, port: ${CLIENT_PORT}}`) + serverEntry("bench-mtls", true, false) + serverEntry("bench-plain", false, false) + serverEntry("bench-mtls-conn", true, true) + serverEntry("bench-plain-conn", false, true));
  // PERMISSIVE, Istio's default: mTLS and plaintext on the one inbound port.
  writeFileSync(join(paths.server, "mesh.yaml"), settings("server", `    outbound: {address: 127.0.0.1, port: 0}\n    inbound: {address: 127.0.0.1, port: ${SERVER_PORT}, appPort: ${UPSTREAM_PORT}}`));
  return paths;
}

interface Measured extends WrkResult {
  /** Both sidecars' CPU milliseconds per request. */
  cpuMsPerRequest: number;
}

async function main(): Promise<void> {
  ensureTools();
  const dir = mkdtempSync(join(tmpdir(), "instio-mtls-bench-"));
  chmodSync(dir, 0o755); // nginx's worker (www-data) reads the upstream's files
  const paths = writeFiles(dir);
  const children: ChildProcess[] = [];
  const cli = join(ROOT, "bin/instio.js");
  try {
    children.push(start(1, "nginx", ["-c", staticUpstream(join(dir, "upstream"), UPSTREAM_PORT), "-e", "stderr"]));
    children.push(start(1, cli, ["control-plane", "--config", paths.cp, "--ca-dir", paths.ca, "--ca-tokens", paths.tokens, "--address", "127.0.0.1", "--xds-port", String(CP.xds), "--monitoring-port", String(CP.monitoring), "--secure-port", String(CP.secure)]));
    await waitForFile(join(paths.ca, "root-cert.pem"));
    const sidecar = (name: string): ChildProcess => start(0, cli, ["proxy", "--config", join(dir, name), "--ca", `127.0.0.1:${CP.secure}`, "--ca-root", join(paths.ca, "root-cert.pem"), "--token", join(dir, `${name}.token`)]);
    const server = sidecar("server");
    const client = sidecar("client");
    children.push(server, client);
    for (const row of ROWS) await waitForPort(CLIENT_PORT, "/small", row.host);

    const best = new Map<string, Measured>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const row of ROWS) {
        wrk(CLIENT_PORT, "/small", CONNECTIONS, 2, undefined, row.host); // warm-up: JIT, pools, sessions
        const cpuBefore = cpuSeconds(server.pid!) + cpuSeconds(client.pid!);
        const r = wrk(CLIENT_PORT, "/small", CONNECTIONS, DURATION_S, undefined, row.host);
        const cpu = cpuSeconds(server.pid!) + cpuSeconds(client.pid!) - cpuBefore;
        if (r.errors > 0) console.error(`${row.host}: ${r.errors} errors in round ${round + 1}`);
        const m = { ...r, cpuMsPerRequest: (cpu * 1000) / r.requests };
        if (!best.has(row.host) || m.rps > best.get(row.host)!.rps) best.set(row.host, m);
      }
    }

    console.log(`\nmTLS between two instio sidecars: wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s, 256 B responses, best of ${ROUNDS} alternating rounds; both sidecars pinned to one core\n`);
    console.log("| client → server sidecar | req/s | p50 | p99 | sidecars' CPU per request |");
    console.log("|---|---:|---:|---:|---:|");
    for (const row of ROWS) {
      const m = best.get(row.host)!;
      console.log(`| ${row.label} | ${m.rps.toFixed(0)} | ${m.p50.toFixed(2)} ms | ${m.p99.toFixed(2)} ms | ${(m.cpuMsPerRequest * 1000).toFixed(0)} µs |`);
    }
    const us = (host: string): number => best.get(host)!.cpuMsPerRequest * 1000;
    const perRequest = us("bench-mtls") - us("bench-plain");
    const perConnection = us("bench-mtls-conn") - us("bench-plain-conn") - perRequest;
    console.log(`\nmTLS costs ${perRequest.toFixed(0)} µs of CPU per request on kept-alive connections (${((perRequest / us("bench-plain")) * 100).toFixed(0)}% over plaintext) and ${perConnection.toFixed(0)} µs per new connection (the handshake, both sides).`);
  } finally {
    for (const c of children) killTree(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function waitForFile(path: string): Promise<void> {
  const until = Date.now() + 20_000;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new Error(`${path} never appeared: did the control plane start?`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

void main();
