// Whole-proxy benchmark: wrk against the upstream directly and through instio,
// nginx, HAProxy and a Node proxy, in alternating runs on this machine.
//
//   npm run bench:proxy           (installs wrk, nginx-light, haproxy from Debian when missing)
//
// Two layouts on a 2-core machine (BENCH_LAYOUTS="pinned;shared" by default):
//   pinned: the proxy under test on CPU 0; the upstream (nginx serving static
//           files) and wrk share CPU 1. Every peer gets one worker/thread.
//   shared: nothing pinned, as processes in a pod share its cores: wrk, the
//           upstream and the proxy compete for both CPUs. Peers run with one
//           worker and with two (instio `concurrency: 2`, Istio's default;
//           nginx `worker_processes 2`; HAProxy `nbthread 2`).
// Every peer gets the same upstream, payloads, connection counts and
// durations. Results: bench/results/proxy.json and a Markdown table on stdout.

import { execFileSync, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchMesh } from "./mesh.js";
import { cpuSeconds, ensureTools, killTree, median, peakRssMiB, pinned, processTree, start, staticUpstream, waitForPort, wrk } from "./processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UPSTREAM_PORT = 18080;
const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
/**
 * Moderate load: 8 connections, each waiting 2 ms after every response (wrk's
 * Lua delay()), about 3 000 req/s, far below every peer's capacity, so that
 * the latency added is the proxy's own and not queueing at saturation.
 */
const MODERATE_CONNECTIONS = 8;
const MODERATE_THINK_MS = 2;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const STEADY_S = 10;
const PAYLOADS = [
  { name: "small (256 B)", path: "/small" },
  { name: "64 KiB", path: "/big" },
];

// ── Peers ────────────────────────────────────────────────────────────────────

type Layout = "pinned" | "shared";
const LAYOUTS = (process.env.BENCH_LAYOUTS ?? "pinned;shared").split(";") as Layout[];
/** Where the proxy under test runs, and where the load (wrk, the upstream): a CPU, or undefined for any. */
const PLACEMENT: Record<Layout, { proxy: number | undefined; load: number | undefined }> = { pinned: { proxy: 0, load: 1 }, shared: { proxy: undefined, load: undefined } };

interface Peer {
  name: string;
  port: number;
  /** The layouts it runs in: one-worker peers in both, two-worker peers only where they can use two CPUs. */
  layouts: Layout[];
  start(dir: string, cpu: number | undefined): ChildProcess;
}

const BOTH: Layout[] = ["pinned", "shared"];
/** One-worker peers run in both layouts; more workers only where nothing is pinned, so that they have cores to use. */
const layoutsFor = (workers: number): Layout[] => (workers > 1 ? ["shared"] : BOTH);

const instioSettings = (port: number, engine?: "h1" | "uws"): string => benchMesh({ port, upstreamPort: UPSTREAM_PORT, registryOnly: true, engine });

/** A few hundred services, each with header routes and a weighted canary, in front of the bench service. */
function realisticMesh(count: number): string {
  let y = "";
  for (let i = 0; i < count; i++) {
    y += `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc${i}}
spec:
  hosts: [svc${i}.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${UPSTREAM_PORT}}, labels: {version: v1}}, {address: 127.0.0.1, ports: {http: ${UPSTREAM_PORT}}, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc${i}}
spec: {host: svc${i}, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc${i}}
spec:
  hosts: [svc${i}]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: svc${i}, subset: v2}}]
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: svc${i}, subset: v2}}]
  - route: [{destination: {host: svc${i}, subset: v1}, weight: 90}, {destination: {host: svc${i}, subset: v2}, weight: 10}]
`;
  }
  return y + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bench}
spec: {host: bench, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: [bench]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: bench, subset: v1}}]
  - route: [{destination: {host: bench, subset: v1}, weight: 100}]
`;
}

function instioPeer(name: string, port: number, extra: string, engine?: "h1" | "uws", root = ROOT, concurrency = 1, layouts = layoutsFor(concurrency)): Peer {
  return {
    name,
    port,
    layouts,
    start(dir, cpu) {
      const d = join(dir, name.replace(/\W+/g, "-"));
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "mesh.yaml"), instioSettings(port, engine) + extra);
      return start(cpu, join(root, "bin/instio.js"), ["proxy", "--config", d, "--concurrency", String(concurrency)]); // as users run it, with its V8 flags
    },
  };
}

function nginxPeer(name: string, port: number, workers: number): Peer {
  return {
    name,
    port,
    layouts: layoutsFor(workers),
    start(dir, cpu) {
      const conf = join(dir, `nginx-proxy-${port}.conf`);
      writeFileSync(conf, `worker_processes ${workers}; daemon off; pid ${dir}/nginx-proxy-${port}.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream u { server 127.0.0.1:${UPSTREAM_PORT}; keepalive 128; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; } } }
`);
      return start(cpu, "nginx", ["-c", conf, "-e", "stderr"]);
    },
  };
}

function haproxyPeer(name: string, port: number, threads: number): Peer {
  return {
    name,
    port,
    layouts: layoutsFor(threads),
    start(dir, cpu) {
      const conf = join(dir, `haproxy-${port}.cfg`);
      writeFileSync(conf, `global
  nbthread ${threads}
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:${port}
  default_backend b
backend b
  server s1 127.0.0.1:${UPSTREAM_PORT}
`);
      return start(cpu, "haproxy", ["-f", conf, "-db"]);
    },
  };
}

const ALL_PEERS: Peer[] = [
  instioPeer("instio", 18001, ""),
  instioPeer("instio (300 VirtualServices)", 18005, realisticMesh(300), undefined, ROOT, 1, ["pinned"]),
  // The uWebSockets.js listener, the default before instio's own: the new default must be at least as fast.
  instioPeer("instio, uWS listener", 18006, "", "uws", ROOT, 1, ["pinned"]),
  // BENCH_BASELINE=<another checkout, built>: the same config through that build, for a same-run A/B of a change.
  ...(process.env.BENCH_BASELINE ? [instioPeer("instio, baseline build", 18007, "", undefined, process.env.BENCH_BASELINE)] : []),
  nginxPeer("nginx", 18002, 1),
  haproxyPeer("HAProxy", 18003, 1),
  // Two workers each, where nothing is pinned: Istio runs Envoy with concurrency 2.
  instioPeer("instio, 2 threads", 18008, "", undefined, ROOT, 2),
  nginxPeer("nginx, 2 workers", 18009, 2),
  haproxyPeer("HAProxy, 2 threads", 18010, 2),
  {
    name: "node http-proxy",
    port: 18004,
    layouts: ["pinned"],
    start(_dir, cpu) {
      return start(cpu, process.execPath, [join(ROOT, "dist/bench/peers/node-proxy.js"), "18004", `http://127.0.0.1:${UPSTREAM_PORT}`]);
    },
  },
];

/** BENCH_PEERS="instio;nginx" runs only the peers of these names (the upstream directly is always measured). */
const PEERS = process.env.BENCH_PEERS ? ALL_PEERS.filter((p) => process.env.BENCH_PEERS!.split(";").includes(p.name)) : ALL_PEERS;

interface Row {
  layout: Layout;
  target: string;
  payload: string;
  rps: number;
  p50: number;
  p99: number;
  cpuPer1000: number | undefined;
  peakRssMiB: number | undefined;
  moderateP50: number;
  moderateP99: number;
  errors: number;
}

async function main(): Promise<void> {
  ensureTools();
  const dir = mkdtempSync(join(tmpdir(), "instio-bench-"));
  chmodSync(dir, 0o755); // nginx workers run as www-data
  const upstreamConf = staticUpstream(dir, UPSTREAM_PORT);
  const thinkScript = join(dir, "think.lua");
  writeFileSync(thinkScript, `function delay() return ${MODERATE_THINK_MS} end\n`);
  const running: ChildProcess[] = [];
  const stopAll = (): void => running.forEach(killTree);
  process.on("exit", stopAll);
  try {
    const rows: Row[] = [];
    for (const layout of LAYOUTS) {
      const place = PLACEMENT[layout];
      const upstream = start(place.load, "nginx", ["-c", upstreamConf, "-e", "stderr"]);
      running.push(upstream);
      await waitForPort(UPSTREAM_PORT);
      for (const payload of PAYLOADS) {
        const targets: (Peer | undefined)[] = [undefined, ...PEERS.filter((p) => p.layouts.includes(layout))]; // undefined: the upstream directly
        const best = new Map<string, Row>();
        // The moderate-load latencies of every round: this machine's wake-up delays swing them, so the median is reported.
        const moderate = new Map<string, { p50: number; p99: number }[]>();
        for (let round = 0; round < ROUNDS; round++) {
          for (const peer of targets) {
            // One peer runs at a time: idle peers on the same CPU would still take wake-ups.
            const child = peer?.start(dir, place.proxy);
            if (child) running.push(child);
            const port = peer?.port ?? UPSTREAM_PORT;
            const name = peer?.name ?? "direct (no proxy)";
            try {
              await waitForPort(port);
              wrk(port, payload.path, CONNECTIONS, 2, undefined, "bench", place.load); // warm-up: JIT, pools
              const cpuBefore = child ? cpuSeconds(child.pid!) : 0;
              const r = wrk(port, payload.path, CONNECTIONS, DURATION_S, undefined, "bench", place.load);
              const cpu = child ? cpuSeconds(child.pid!) - cpuBefore : undefined;
              const m = wrk(port, payload.path, MODERATE_CONNECTIONS, 5, thinkScript, "bench", place.load);
              const row: Row = {
                layout,
                target: name,
                payload: payload.name,
                rps: r.rps,
                p50: r.p50,
                p99: r.p99,
                cpuPer1000: cpu === undefined ? undefined : (cpu / r.requests) * 1000,
                peakRssMiB: child ? peakRssMiB(child.pid!) : undefined,
                moderateP50: m.p50,
                moderateP99: m.p99,
                errors: r.errors + m.errors,
              };
              const prev = best.get(name);
              if (!prev || row.rps > prev.rps) best.set(name, row);
              moderate.set(name, [...(moderate.get(name) ?? []), { p50: m.p50, p99: m.p99 }]);
              console.error(`${layout}, ${payload.name} round ${round + 1}: ${name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, moderate p99 ${m.p99} ms`);
            } finally {
              if (child) {
                killTree(child);
                await new Promise((r) => setTimeout(r, 300));
              }
            }
          }
        }
        for (const row of best.values()) {
          const rounds = moderate.get(row.target)!;
          row.moderateP50 = median(rounds.map((x) => x.p50));
          row.moderateP99 = median(rounds.map((x) => x.p99));
          rows.push(row);
        }
      }
      killTree(upstream);
      await new Promise((r) => setTimeout(r, 300));
    }
    const upstream = start(1, "nginx", ["-c", upstreamConf, "-e", "stderr"]);
    running.push(upstream);
    await waitForPort(UPSTREAM_PORT);
    // Istio's published sidecar figure is per 1 000 req/s: hold that rate and read the resident memory.
    const steady: { target: string; rssMiB: number; peakRssMiB: number; cpuPercent: number }[] = [];
    for (const peer of PEERS) {
      const child = peer.start(dir, 0);
      running.push(child);
      try {
        await waitForPort(peer.port);
        const cpuBefore = cpuSeconds(child.pid!);
        const [c, a] = pinned(1, process.execPath, [join(ROOT, "node_modules/autocannon/autocannon.js"), "-R", "1000", "-c", "16", "-d", String(STEADY_S), "-H", "Host=bench", "--json", `http://127.0.0.1:${peer.port}/small`]);
        execFileSync(c, a, { stdio: ["ignore", "ignore", "ignore"] });
        const cpu = cpuSeconds(child.pid!) - cpuBefore;
        let rss = 0;
        for (const p of processTree(child.pid!)) rss += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0);
        steady.push({ target: peer.name, rssMiB: rss / 1024, peakRssMiB: peakRssMiB(child.pid!), cpuPercent: (100 * cpu) / STEADY_S });
        console.error(`1000 req/s: ${peer.name}: RSS ${(rss / 1024).toFixed(0)} MiB`);
      } finally {
        killTree(child);
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    const direct = (layout: Layout, payload: string) => rows.find((r) => r.layout === layout && r.payload === payload && r.target.startsWith("direct"))!;
    console.log(`\nwhole proxy: wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s (best of ${ROUNDS} alternating rounds); "moderate" = -c${MODERATE_CONNECTIONS} with ${MODERATE_THINK_MS} ms between a response and the next request (about 3 000 req/s; median of the rounds)\n`);
    console.log("| layout | payload | target | req/s | p50 | p99 | moderate p50 | moderate p99 | added p99 (moderate) | CPU s / 1000 req | peak RSS |");
    console.log("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const r of rows) {
      const d = direct(r.layout, r.payload);
      const added = r === d ? "—" : `${(r.moderateP99 - d.moderateP99).toFixed(2)} ms`;
      console.log(`| ${r.layout} | ${r.payload} | ${r.target} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${r.moderateP50.toFixed(2)} ms | ${r.moderateP99.toFixed(2)} ms | ${added} | ${r.cpuPer1000 === undefined ? "—" : r.cpuPer1000.toFixed(3)} | ${r.peakRssMiB === undefined ? "—" : `${r.peakRssMiB.toFixed(0)} MiB`} |${r.errors ? ` errors: ${r.errors}` : ""}`);
    }
    console.log(`\nat a steady 1 000 req/s (small payload, autocannon -R 1000 -c 16 -d ${STEADY_S}):\n`);
    console.log("| target | RSS | peak RSS | CPU |");
    console.log("|---|---:|---:|---:|");
    for (const r of steady) console.log(`| ${r.target} | ${r.rssMiB.toFixed(0)} MiB | ${r.peakRssMiB.toFixed(0)} MiB | ${r.cpuPercent.toFixed(0)}% of a core |`);
    mkdirSync(join(ROOT, "bench/results"), { recursive: true });
    writeFileSync(join(ROOT, "bench/results/proxy.json"), JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, connections: CONNECTIONS, durationS: DURATION_S, rows, steady }, null, 2) + "\n");
  } finally {
    stopAll();
  }
}

await main();
