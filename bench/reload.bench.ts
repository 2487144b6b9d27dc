// `npm run bench:reload`: requests keep flowing while a 10 000-route config reloads.
//
// The proxy serves a VirtualService of ROUTES routes; a paced load (autocannon
// -R) runs once with the config left alone and once while the file is rewritten
// every two seconds (each rewrite a complete reload: read, parse, validate,
// compile on the config worker thread, then the snapshot swap on the serving
// thread). Prints the latencies of both runs side by side and how many reloads
// were applied.

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { benchMesh } from "./mesh.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROXY_PORT = 18201;
const ROUTES = Number(process.env.RELOAD_ROUTES ?? 10_000);
const SECONDS = Number(process.env.RELOAD_SECONDS ?? 12);
const RATE = 500;
const RELOAD_EVERY_MS = 2000;

function config(upPort: number, generation: number): string {
  let routes = "";
  for (let i = 0; i < ROUTES; i++) routes += `  - match: [{uri: {prefix: /g${generation}/r${i}/}, headers: {x-user: {exact: u${i}}}}]\n    route: [{destination: {host: bench}}]\n`;
  return `${benchMesh({ port: PROXY_PORT, upstreamPort: upPort })}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: [bench]
  http:
${routes}  - route: [{destination: {host: bench}}]
`;
}

interface Latency {
  p50: number;
  p99: number;
  max: number;
  ok: number;
  errors: number;
}

function load(): Promise<Latency> {
  return new Promise((resolve) => {
    const ac = spawn(process.execPath, [join(ROOT, "node_modules/autocannon/autocannon.js"), "-R", String(RATE), "-c", "10", "-d", String(SECONDS), "-H", "Host=bench", "--json", `http://127.0.0.1:${PROXY_PORT}/`], { stdio: ["ignore", "pipe", "ignore"] });
    let text = "";
    ac.stdout.on("data", (c: Buffer) => (text += c.toString()));
    ac.on("exit", () => {
      const r = JSON.parse(text) as { "2xx": number; non2xx: number; errors: number; latency: { p50: number; p99: number; max: number } };
      resolve({ p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, ok: r["2xx"], errors: r.non2xx + r.errors });
    });
  });
}

async function main(): Promise<void> {
  const upstream = createServer((req, res) => {
    req.resume();
    res.end("ok");
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const upPort = (upstream.address() as { port: number }).port;
  const dir = mkdtempSync(join(tmpdir(), "instio-reload-"));
  const file = join(dir, "mesh.yaml");
  writeFileSync(file, config(upPort, 0));
  const proxy = spawn(join(ROOT, "bin/instio.js"), ["proxy", "--config", dir], { stdio: ["ignore", "ignore", "pipe"] });
  let applied = 0;
  let log = "";
  proxy.stderr!.on("data", (c: Buffer) => {
    log += c.toString();
    applied = (log.match(/config: version \d+ applied/g) ?? []).length;
  });
  for (let i = 0; i < 300; i++) {
    try {
      await (await request(`http://127.0.0.1:${PROXY_PORT}/`, { headers: { host: "bench" } })).body.dump();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const quiet = await load();
  let generation = 0;
  const rewriter = setInterval(() => writeFileSync(file, config(upPort, ++generation)), RELOAD_EVERY_MS);
  const reloading = await load();
  clearInterval(rewriter);
  await new Promise((r) => setTimeout(r, 3000)); // the last rewrite's reload
  proxy.kill("SIGKILL");
  upstream.close();
  console.log(`${ROUTES} routes; autocannon -R ${RATE} -c 10 -d ${SECONDS}; the config rewritten every ${RELOAD_EVERY_MS} ms during the second run (${generation} rewrites, ${applied} reloads applied)\n`);
  console.log("| run | p50 | p99 | max | 2xx | errors |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const [name, r] of [["config unchanged", quiet], ["reloading", reloading]] as const) console.log(`| ${name} | ${r.p50} ms | ${r.p99} ms | ${r.max} ms | ${r.ok} | ${r.errors} |`);
}

void main();
