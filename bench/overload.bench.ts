// `npm run bench:overload`: instio's memory and answers under 10x overload.
//
// An upstream that takes 50 ms per request sits behind a DestinationRule
// allowing 20 connections and 20 pending requests: about 400 req/s of
// capacity. autocannon offers 10x that for a while; the circuit breaker should
// shed the excess as 503 UO at once, and the proxy's memory should stay flat
// (nothing is queued beyond the limits). Prints one Markdown table row.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { benchMesh } from "./mesh.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROXY_PORT = 18101;
const DELAY_MS = 50;
const MAX_CONNECTIONS = 20;
const MAX_PENDING = 20;
const CAPACITY_RPS = (MAX_CONNECTIONS * 1000) / DELAY_MS;
const OFFERED_RPS = 10 * CAPACITY_RPS;
const SECONDS = Number(process.env.OVERLOAD_SECONDS ?? 15);

function rssKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
}

async function main(): Promise<void> {
  const upstream = createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end("ok"), DELAY_MS);
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const upPort = (upstream.address() as { port: number }).port;
  const dir = mkdtempSync(join(tmpdir(), "instio-overload-"));
  writeFileSync(join(dir, "mesh.yaml"), `${benchMesh({ port: PROXY_PORT, upstreamPort: upPort })}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bench}
spec:
  host: bench
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: ${MAX_CONNECTIONS}}, http: {http1MaxPendingRequests: ${MAX_PENDING}}}
`);
  const proxy = spawn(join(ROOT, "bin/instio.js"), ["proxy", "--config", dir], { stdio: ["ignore", "ignore", "inherit"] });
  // Asynchronously: the upstream runs in this process and must keep answering.
  for (let i = 0; i < 100; i++) {
    try {
      await (await request(`http://127.0.0.1:${PROXY_PORT}/`, { headers: { host: "bench" } })).body.dump();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const idleRss = rssKiB(proxy.pid!, "VmRSS");
  let maxRss = 0;
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssKiB(proxy.pid!, "VmRSS"))), 100);
  const out = await new Promise<string>((resolve) => {
    const ac = spawn(process.execPath, [join(ROOT, "node_modules/autocannon/autocannon.js"), "-R", String(OFFERED_RPS), "-c", "400", "-d", String(SECONDS), "-H", "Host=bench", "--json", `http://127.0.0.1:${PROXY_PORT}/`], { stdio: ["ignore", "pipe", "ignore"] });
    let text = "";
    ac.stdout.on("data", (c: Buffer) => (text += c.toString()));
    ac.on("exit", () => resolve(text));
  });
  clearInterval(sampler);
  const r = JSON.parse(out) as { "2xx": number; non2xx: number; latency: { p50: number; p99: number }; requests: { average: number } };
  const peak = rssKiB(proxy.pid!, "VmHWM");
  proxy.kill("SIGKILL");
  upstream.close();
  console.log(`capacity ~${CAPACITY_RPS} req/s (maxConnections ${MAX_CONNECTIONS}, http1MaxPendingRequests ${MAX_PENDING}, ${DELAY_MS} ms upstream); offered ${OFFERED_RPS} req/s for ${SECONDS} s, 400 connections\n`);
  console.log("| served (200) | shed (503 UO) | answered req/s | p50 | p99 | proxy RSS idle | RSS max during | peak RSS |");
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(`| ${r["2xx"]} | ${r.non2xx} | ${r.requests.average.toFixed(0)} | ${r.latency.p50} ms | ${r.latency.p99} ms | ${(idleRss / 1024).toFixed(0)} MiB | ${(maxRss / 1024).toFixed(0)} MiB | ${(peak / 1024).toFixed(0)} MiB |`);
}

void main();
