// `instio bench --config PATH [--requests FILE]`: what a config's routes cost
// per decision, before it ships. It compiles the user's own config, builds a
// request corpus (from a file of `METHOD URL [name=value ...]` lines, or
// generated: a request for every route it can write one for, the last route of
// each virtual host, and misses), and times each request's decision through the
// Wasm route core (the field copy into Wasm memory counted, as in the proxy)
// and through the TypeScript reference matcher: per-decision percentiles over
// the corpus, the route image's size, and the slowest routes by file:line.

import { readFileSync } from "node:fs";
import type { CompiledConfig } from "./config/compile.js";
import { emptyDecision, type RouteRequest } from "./core/decision.js";
import { encodeImage } from "./core/image.js";
import { ReferenceMatcher } from "./core/reference-matcher.js";
import { writeRequest } from "./core/request-fields.js";
import { RouteCore } from "./core/route-core.js";
import type { MatchEntry } from "./core/route-table.js";

export interface BenchCase {
  /** What the request is for: "route N of HOST", "last route", "miss", or the file's line. */
  label: string;
  req: RouteRequest;
}

function request(method: string, authority: string, pathAndQuery: string, headers: Record<string, string>): RouteRequest {
  const q = pathAndQuery.indexOf("?");
  return { method, authority, path: q < 0 ? pathAndQuery : pathAndQuery.slice(0, q), query: q < 0 ? undefined : pathAndQuery.slice(q + 1), scheme: "http", header: (n) => headers[n] };
}

/** A corpus from lines `METHOD URL [name=value ...]`; # comments and blank lines skipped. Throws with file:line. */
export function readRequests(file: string, text: string): BenchCase[] {
  const cases: BenchCase[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [method, url, ...rest] = line.split(/\s+/);
    let parsed: URL;
    try {
      parsed = new URL(url ?? "");
    } catch {
      throw new Error(`${file}:${i + 1}: expected METHOD URL [name=value ...], got "${line}"`);
    }
    const headers: Record<string, string> = {};
    for (const h of rest) {
      const eq = h.indexOf("=");
      if (eq <= 0) throw new Error(`${file}:${i + 1}: a header is name=value, got "${h}"`);
      headers[h.slice(0, eq).toLowerCase()] = h.slice(eq + 1);
    }
    cases.push({ label: `${file}:${i + 1}`, req: request(method!.toUpperCase(), headers.host ?? parsed.host, `${parsed.pathname}${parsed.search}`, headers) });
  });
  return cases;
}

/** A request that satisfies `entry`, where one can be written without solving a regex; undefined otherwise. */
function satisfying(entry: MatchEntry, authority: string): RouteRequest | undefined {
  const headers: Record<string, string> = {};
  const query: string[] = [];
  for (const c of entry.conditions) {
    if (c.invert) continue; // withoutHeaders: leaving the header out satisfies it
    if (c.kind === "regex") return undefined;
    const value = c.kind === "present" ? "x" : c.value;
    if (c.source === "header") headers[c.name] = value;
    else query.push(`${encodeURIComponent(c.name)}=${encodeURIComponent(value)}`);
  }
  if (entry.uri?.kind === "regex" || entry.method?.kind === "regex" || entry.authority || entry.scheme) return undefined;
  const path = entry.uri ? (entry.uri.kind === "exact" ? entry.uri.value : `${entry.uri.value}${entry.uri.value.endsWith("/") ? "" : "/"}x`) : "/";
  return request(entry.method?.value ?? "GET", authority, `${path}${query.length > 0 ? `?${query.join("&")}` : ""}`, headers);
}

/** Every route it can write a request for, the last route of each virtual host, and two misses. */
export function generatedRequests(config: CompiledConfig): BenchCase[] {
  const table = config.table;
  const cases: BenchCase[] = [];
  for (const vh of table.virtualHosts) {
    const authority = vh.domains.find((d) => !d.includes("*")) ?? vh.name;
    for (let i = vh.entryStart; i < vh.entryStart + vh.entryCount; i++) {
      const req = satisfying(table.entries[i]!, authority);
      if (req) cases.push({ label: `${i === vh.entryStart + vh.entryCount - 1 ? "last route" : "route"} ${i - vh.entryStart} of ${vh.name}${entrySource(config, i)}`, req });
    }
    cases.push({ label: `miss (no route) on ${vh.name}`, req: request("GET", authority, "/__instio-bench-miss__/x", {}) });
  }
  cases.push({ label: "miss (unknown host)", req: request("GET", "instio-bench.invalid", "/", {}) });
  return cases;
}

function entrySource(config: CompiledConfig, entry: number): string {
  const s = config.entries[entry]?.source;
  return s ? ` (${s.file}:${s.line})` : "";
}

export interface BenchResult {
  label: string;
  wasmNs: number;
  referenceNs: number;
}

/** Nanoseconds per call of `fn`, the median of `samples` timed batches of `batch` calls. */
function timed(fn: (i: number) => number, batch: number, samples: number): number {
  let sink = 0;
  const times: number[] = [];
  for (let w = 0; w < batch; w++) sink += fn(w); // warm-up: JIT, caches
  for (let s = 0; s < samples; s++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) sink += fn(i);
    times.push(Number(process.hrtime.bigint() - start) / batch);
  }
  if (sink === 0.5) process.stdout.write(""); // keep the results alive
  return times.sort((a, b) => a - b)[times.length >> 1]!;
}

export function benchRoutes(config: CompiledConfig, cases: BenchCase[], o: { batch: number; samples: number }): BenchResult[] {
  const table = config.table;
  const core = new RouteCore(table);
  const reference = new ReferenceMatcher(table, core.active);
  const out = emptyDecision();
  // The reference scans linearly: fewer calls per batch on a big table keep its run short.
  const referenceBatch = Math.max(10, Math.floor(o.batch / Math.max(1, table.entries.length / 100)));
  // One pass over the whole corpus first, so that the first case measured does not pay for the JIT's warm-up.
  for (const { req } of cases) {
    timed((i) => {
      writeRequest(core, table.headerNames, req);
      return core.route(Math.imul(i, 2654435761));
    }, o.batch, 1);
    timed((i) => reference.decide(req, Math.imul(i, 2654435761), out), referenceBatch, 1);
  }
  return cases.map(({ label, req }) => ({
    label,
    wasmNs: timed((i) => {
      writeRequest(core, table.headerNames, req);
      return core.route(Math.imul(i, 2654435761));
    }, o.batch, o.samples),
    referenceNs: timed((i) => reference.decide(req, Math.imul(i, 2654435761), out), referenceBatch, o.samples),
  }));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ns = (v: number): string => (v >= 1e6 ? `${(v / 1e6).toFixed(2)} ms` : v >= 1e3 ? `${(v / 1e3).toFixed(2)} µs` : `${v.toFixed(0)} ns`);

export function renderBench(config: CompiledConfig, results: BenchResult[], corpus: string): string {
  const lines: string[] = [];
  const table = config.table;
  const imageBytes = encodeImage(table, 0).bytes.length;
  lines.push(`config: ${table.virtualHosts.length} virtual hosts, ${table.entries.length} route matches, ${table.routes.length} routes, ${table.clusters.length} clusters; route image ${(imageBytes / 1024).toFixed(1)} KiB in Wasm memory`);
  lines.push(`corpus: ${results.length} requests (${corpus}); per decision, the median of timed batches, then percentiles over the corpus`);
  lines.push("");
  lines.push("| decision by | p50 | p90 | p99 | max |");
  lines.push("|---|---:|---:|---:|---:|");
  for (const [name, pick] of [["Wasm route core (field copy + call)", (r: BenchResult) => r.wasmNs], ["TypeScript reference matcher", (r: BenchResult) => r.referenceNs]] as const) {
    const sorted = results.map(pick).sort((a, b) => a - b);
    lines.push(`| ${name} | ${ns(percentile(sorted, 50))} | ${ns(percentile(sorted, 90))} | ${ns(percentile(sorted, 99))} | ${ns(sorted.at(-1)!)} |`);
  }
  lines.push("");
  lines.push("slowest requests through the Wasm core:");
  for (const r of [...results].sort((a, b) => b.wasmNs - a.wasmNs).slice(0, 5)) lines.push(`  ${ns(r.wasmNs).padStart(9)}  (reference ${ns(r.referenceNs)})  ${r.label}`);
  return lines.join("\n");
}

/** The corpus `instio bench` uses: the requests file when given, else generated from the config. */
export function benchCorpus(config: CompiledConfig, requestsFile: string | undefined): { cases: BenchCase[]; what: string } {
  if (requestsFile) return { cases: readRequests(requestsFile, readFileSync(requestsFile, "utf8")), what: requestsFile };
  return { cases: generatedRequests(config), what: "generated: every route a request can be written for, each host's last route, misses" };
}
