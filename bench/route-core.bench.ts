// Route core microbenchmark: the Wasm core vs the pure-TypeScript reference
// matcher (a linear scan, as Envoy matches), on the same tables and requests,
// in one process and one run. Each measured call decides BATCH requests so that
// timer resolution does not distort per-decision figures.
//
//   npm run bench            (writes bench/results/route-core.json)

import { writeFileSync, mkdirSync } from "node:fs";
import { Bench } from "tinybench";
import type { RouteRequest } from "../host/core/decision.js";
import { emptyDecision } from "../host/core/decision.js";
import { ReferenceMatcher } from "../host/core/reference-matcher.js";
import { writeRequest } from "../host/core/request-fields.js";
import { RouteCore } from "../host/core/route-core.js";
import type { MatchEntry, RouteTable } from "../host/core/route-table.js";

const BATCH = 1000;
const SIZES = [10, 1_000, 10_000];

function request(authority: string, path: string, headers: Record<string, string> = {}): RouteRequest {
  return { method: "GET", authority, path, query: undefined, scheme: "http", header: (n) => headers[n] };
}

interface Workload {
  name: string;
  table: RouteTable;
  cases: { name: string; req: RouteRequest }[];
}

/** One virtual host, N prefix routes: the path-only case an index can serve. */
function pathOnly(n: number): Workload {
  const entries: MatchEntry[] = [];
  const routes = [];
  for (let i = 0; i < n; i++) {
    entries.push({ route: i, uri: { kind: "prefix", value: `/svc${i}/api`, ignoreCase: false }, conditions: [] });
    routes.push({ destinations: [{ cluster: i % 4, weight: 1 }] });
  }
  return {
    name: "path-only",
    table: { virtualHosts: [{ name: "web", domains: ["web", "web:80"], entryStart: 0, entryCount: n }], entries, routes, clusters: Array.from({ length: 4 }, () => ({ endpointCount: 3, passthrough: false })), headerNames: [] },
    cases: [
      { name: "first route", req: request("web", "/svc0/api/items/42") },
      { name: "last route", req: request("web", `/svc${n - 1}/api/items/42`) },
    ],
  };
}

/**
 * Istio-shaped: N routes over N/10 services. Each service has a header route per
 * user, a prefix route and a weighted canary split as its catch-all.
 */
function istioShaped(n: number): Workload {
  const services = Math.max(1, Math.floor(n / 10));
  const table: RouteTable = { virtualHosts: [], entries: [], routes: [], clusters: [], headerNames: ["end-user"] };
  for (let s = 0; s < services; s++) {
    const entryStart = table.entries.length;
    const c = table.clusters.length;
    table.clusters.push({ endpointCount: 2, passthrough: false }, { endpointCount: 2, passthrough: false }, { endpointCount: 2, passthrough: false });
    for (let r = 0; r < 8; r++) {
      table.routes.push({ destinations: [{ cluster: c + 1, weight: 1 }] });
      table.entries.push({ route: table.routes.length - 1, conditions: [{ source: "header", name: "end-user", kind: "exact", value: `user${r}`, invert: false }] });
    }
    table.routes.push({ destinations: [{ cluster: c + 2, weight: 1 }] });
    table.entries.push({ route: table.routes.length - 1, uri: { kind: "prefix", value: "/v3/", ignoreCase: false }, conditions: [] });
    table.routes.push({ destinations: [{ cluster: c, weight: 80 }, { cluster: c + 1, weight: 15 }, { cluster: c + 2, weight: 5 }] });
    table.entries.push({ route: table.routes.length - 1, conditions: [] });
    const host = `svc${s}.default.svc.cluster.local`;
    table.virtualHosts.push({ name: host, domains: [host, `${host}:9080`, `svc${s}`, `svc${s}:9080`], entryStart, entryCount: table.entries.length - entryStart });
  }
  const last = services - 1;
  return {
    name: "istio-shaped",
    table,
    cases: [
      { name: "header route", req: request("svc0:9080", "/reviews/1", { "end-user": "user3" }) },
      { name: "weighted split, last service", req: request(`svc${last}:9080`, "/reviews/1", { "end-user": "nobody" }) },
    ],
  };
}

interface Row {
  workload: string;
  routes: number;
  case: string;
  wasmNs: number;
  referenceNs: number;
  speedup: number;
}

function nsPerDecision(task: { result: unknown } | undefined): number {
  const r = task?.result as { period?: number } | undefined;
  if (!r?.period) throw new Error("benchmark task did not complete");
  return (r.period * 1e6) / BATCH;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const make of [pathOnly, istioShaped]) {
    for (const n of SIZES) {
      const w = make(n);
      const core = new RouteCore(w.table);
      const reference = new ReferenceMatcher(w.table, core.active);
      const out = emptyDecision();
      const bench = new Bench({ time: 400, warmup: true });
      for (const c of w.cases) {
        let sink = 0;
        bench.add(`wasm ${c.name}`, () => {
          for (let i = 0; i < BATCH; i++) {
            writeRequest(core, w.table.headerNames, c.req);
            sink += core.route(i * 2654435761);
          }
        });
        bench.add(`reference ${c.name}`, () => {
          for (let i = 0; i < BATCH; i++) sink += reference.decide(c.req, i * 2654435761, out);
        });
        if (sink === 0.5) console.log(sink);
      }
      await bench.run();
      for (const c of w.cases) {
        const wasmNs = nsPerDecision(bench.getTask(`wasm ${c.name}`));
        const referenceNs = nsPerDecision(bench.getTask(`reference ${c.name}`));
        rows.push({ workload: w.name, routes: w.table.entries.length, case: c.name, wasmNs, referenceNs, speedup: referenceNs / wasmNs });
      }
    }
  }
  console.log("route core: ns per decision (field copy into Wasm memory + one call), lower is better\n");
  console.log("| workload | routes | case | Wasm core | TS reference (linear) | speed-up |");
  console.log("|---|---:|---|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.workload} | ${r.routes} | ${r.case} | ${r.wasmNs.toFixed(0)} ns | ${r.referenceNs.toFixed(0)} ns | ${r.speedup.toFixed(1)}× |`);
  const dir = new URL("../../bench/results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL("route-core.json", dir), JSON.stringify({ date: new Date().toISOString(), node: process.version, rows }, null, 2) + "\n");
}

await main();
