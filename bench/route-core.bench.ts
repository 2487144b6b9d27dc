// Route core microbenchmark, in one process and one run for each comparison:
// the Wasm core, the pure-TypeScript reference matcher (first match by linear
// scan, as Envoy matches), a naive linear scan of prefixes, and find-my-way (a
// radix-tree router, on the path-only workload it can express). Each measured
// call decides a batch of requests so that timer resolution does not distort
// per-decision figures.
//
//   npm run bench     (writes bench/results/route-core.json and route-core.svg)

import { mkdirSync, writeFileSync } from "node:fs";
import FindMyWay from "find-my-way";
import { Bench } from "tinybench";
import type { RouteRequest } from "../host/core/decision.js";
import { emptyDecision } from "../host/core/decision.js";
import { ReferenceMatcher } from "../host/core/reference-matcher.js";
import { writeRequest } from "../host/core/request-fields.js";
import { RouteCore } from "../host/core/route-core.js";
import type { MatchEntry, RouteTable } from "../host/core/route-table.js";

const SIZES = [10, 1_000, 10_000, 100_000];

function request(authority: string, path: string, headers: Record<string, string> = {}): RouteRequest {
  return { method: "GET", authority, path, query: undefined, scheme: "http", header: (n) => headers[n] };
}

interface Workload {
  name: string;
  table: RouteTable;
  /** The prefixes of a path-only table, for the naive scan and find-my-way; undefined otherwise. */
  prefixes: string[] | undefined;
  cases: { name: string; req: RouteRequest }[];
}

/** One virtual host, N prefix routes: the path-only case an index can serve. */
function pathOnly(n: number): Workload {
  const entries: MatchEntry[] = [];
  const routes = [];
  const prefixes: string[] = [];
  for (let i = 0; i < n; i++) {
    prefixes.push(`/svc${i}/api/`);
    entries.push({ route: i, uri: { kind: "prefix", value: `/svc${i}/api/`, ignoreCase: false }, conditions: [] });
    routes.push({ destinations: [{ cluster: i % 4, weight: 1 }] });
  }
  return {
    name: "path-only",
    table: { virtualHosts: [{ name: "web", domains: ["web", "web:80"], entryStart: 0, entryCount: n }], entries, routes, clusters: Array.from({ length: 4 }, () => ({ endpointCount: 3, passthrough: false })), headerNames: [] },
    prefixes,
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
    prefixes: undefined,
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
  impl: string;
  ns: number;
}

function nsPerOp(task: { result: unknown } | undefined, batch: number): number {
  const r = task?.result as { period?: number } | undefined;
  if (!r?.period) throw new Error("benchmark task did not complete");
  return (r.period * 1e6) / batch;
}

async function measure(w: Workload): Promise<Row[]> {
  const core = new RouteCore(w.table);
  const reference = new ReferenceMatcher(w.table, core.active);
  const out = emptyDecision();
  const n = w.table.entries.length;
  const slowBatch = n > 1000 ? 10 : 1000; // linear scans of 10^5 routes take milliseconds each
  const bench = new Bench({ time: 300, warmup: true });
  const batches = new Map<string, number>();
  let sink = 0;
  const add = (name: string, batch: number, fn: (i: number) => number): void => {
    batches.set(name, batch);
    bench.add(name, () => {
      for (let i = 0; i < batch; i++) sink += fn(i);
    });
  };
  let router: FindMyWay.Instance<FindMyWay.HTTPVersion.V1> | undefined;
  if (w.prefixes) {
    router = FindMyWay();
    w.prefixes.forEach((p, i) => router!.on("GET", `${p}*`, () => i));
  }
  for (const c of w.cases) {
    add(`wasm|${c.name}`, 1000, (i) => {
      writeRequest(core, w.table.headerNames, c.req);
      return core.route(Math.imul(i, 2654435761));
    });
    add(`wasm-copy|${c.name}`, 1000, () => (writeRequest(core, w.table.headerNames, c.req) ? 1 : 0));
    add(`wasm-call|${c.name}`, 1000, (i) => core.route(Math.imul(i, 2654435761)));
    add(`reference|${c.name}`, slowBatch, (i) => reference.decide(c.req, Math.imul(i, 2654435761), out));
    if (w.prefixes) {
      const prefixes = w.prefixes;
      const path = c.req.path;
      add(`naive scan|${c.name}`, slowBatch, () => {
        for (let k = 0; k < prefixes.length; k++) if (path.startsWith(prefixes[k]!)) return k;
        return -1;
      });
      add(`find-my-way|${c.name}`, 1000, () => (router!.find("GET", path) ? 1 : 0));
    }
  }
  // wasm-call measures route() on whatever fields were written last: write each case's first.
  await bench.run();
  if (sink === 0.5) console.log(sink);
  const rows: Row[] = [];
  for (const [name, batch] of batches) {
    const [impl, caseName] = name.split("|") as [string, string];
    rows.push({ workload: w.name, routes: n, case: caseName, impl, ns: nsPerOp(bench.getTask(name), batch) });
  }
  return rows;
}

/** Log-log chart of ns per decision against table size for the path-only "last route" case. */
function chart(rows: Row[]): string {
  const series = ["wasm", "reference", "naive scan", "find-my-way"];
  const colors = ["#0b7a3e", "#b23b3b", "#d08a1c", "#3b5bb2"];
  const pts = rows.filter((r) => r.workload === "path-only" && r.case === "last route");
  const W = 640, H = 400, L = 70, B = 50, T = 30, R = 150;
  const x = (n: number) => L + ((Math.log10(n) - 1) / 4) * (W - L - R);
  const maxNs = Math.max(...pts.map((p) => p.ns));
  const yTop = Math.ceil(Math.log10(maxNs));
  const y = (ns: number) => T + (1 - (Math.log10(ns) - 1) / (yTop - 1)) * (H - T - B);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n`;
  svg += `<rect width="${W}" height="${H}" fill="white"/>\n<text x="${L}" y="18" font-size="14">Route lookup, path-only table, request matches the last route</text>\n`;
  for (let e = 1; e <= yTop; e++) svg += `<line x1="${L}" x2="${W - R}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/><text x="${L - 8}" y="${y(10 ** e) + 4}" text-anchor="end">${10 ** e >= 1e6 ? `${10 ** (e - 6)} ms` : 10 ** e >= 1e3 ? `${10 ** (e - 3)} µs` : `${10 ** e} ns`}</text>\n`;
  for (const n of SIZES) svg += `<text x="${x(n)}" y="${H - B + 18}" text-anchor="middle">${n.toLocaleString("en")}</text>\n`;
  svg += `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">routes in the table</text>\n`;
  series.forEach((s, i) => {
    const line = pts.filter((p) => p.impl === s).sort((a, b) => a.routes - b.routes);
    if (line.length === 0) return;
    svg += `<polyline fill="none" stroke="${colors[i]}" stroke-width="2" points="${line.map((p) => `${x(p.routes).toFixed(1)},${y(p.ns).toFixed(1)}`).join(" ")}"/>\n`;
    svg += `<text x="${W - R + 10}" y="${T + 20 + i * 18}" fill="${colors[i]}">${s}</text>\n`;
  });
  return svg + "</svg>\n";
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const make of [pathOnly, istioShaped]) for (const n of SIZES) rows.push(...(await measure(make(n))));
  const get = (r: Row, impl: string) => rows.find((x) => x.workload === r.workload && x.routes === r.routes && x.case === r.case && x.impl === impl)?.ns;
  console.log("route core: ns per decision (lower is better); Wasm = field copy + call; ratios are the other's time over Wasm's\n");
  console.log("| workload | routes | case | Wasm core | (copy / call) | TS reference | naive scan | find-my-way |");
  console.log("|---|---:|---|---:|---:|---:|---:|---:|");
  for (const r of rows.filter((x) => x.impl === "wasm")) {
    const cell = (impl: string) => {
      const ns = get(r, impl);
      return ns === undefined ? "—" : `${ns.toFixed(0)} ns (${(ns / r.ns).toFixed(1)}×)`;
    };
    console.log(`| ${r.workload} | ${r.routes} | ${r.case} | ${r.ns.toFixed(0)} ns, ${(1e9 / r.ns / 1e6).toFixed(1)} M/s | ${get(r, "wasm-copy")!.toFixed(0)} / ${get(r, "wasm-call")!.toFixed(0)} ns | ${cell("reference")} | ${cell("naive scan")} | ${cell("find-my-way")} |`);
  }
  const at = (n: number) => rows.find((r) => r.workload === "path-only" && r.routes === n && r.case === "last route" && r.impl === "wasm")!.ns;
  console.log(`\nWasm lookup at 100 000 routes vs 10 routes (path-only, last route): ${(at(100_000) / at(10)).toFixed(2)}×`);
  const dir = new URL("../../bench/results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL("route-core.json", dir), JSON.stringify({ date: new Date().toISOString(), node: process.version, rows }, null, 2) + "\n");
  writeFileSync(new URL("route-core.svg", dir), chart(rows));
}

await main();
