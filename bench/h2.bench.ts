// `npm run bench:h2`: an HTTP/2 load check with h2load (Debian's
// nghttp2-client, installed when missing): h2load against a node:http2
// server directly, and through instio's h2c listener (HTTP/2 in, HTTP/1.1 to
// the same kind of node upstream). Prints one Markdown table.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createH1 } from "node:http";
import { createServer as createH2 } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchMesh } from "./mesh.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROXY_PORT = 18201;
const BODY = Buffer.alloc(256, 97);

function ensureH2load(): void {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
  } catch {
    console.error("installing nghttp2-client (h2load) from Debian");
    execFileSync("apt-get", ["install", "-y", "nghttp2-client"], { stdio: "inherit" });
  }
}

/** h2load: 4 clients, 32 streams each, for `seconds`; returns req/s and mean/max latency. */
async function h2load(port: number, seconds: number): Promise<{ rps: number; mean: string; max: string }> {
  const out = await new Promise<string>((resolve) => {
    const p = spawn("h2load", ["-c", "4", "-m", "32", "-D", String(seconds), "-H", "host: bench", `http://127.0.0.1:${port}/`]);
    let text = "";
    p.stdout.on("data", (c: Buffer) => (text += c.toString()));
    p.on("exit", () => resolve(text));
  });
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const lat = /time for request:\s+\S+\s+(\S+)\s+(\S+)/.exec(out);
  return { rps, mean: lat?.[2] ?? "?", max: lat?.[1] ?? "?" };
}

async function main(): Promise<void> {
  ensureH2load();
  const h2 = createH2((_req, res) => res.end(BODY));
  await new Promise<void>((r) => h2.listen(0, "127.0.0.1", r));
  const h1 = createH1((req, res) => {
    req.resume();
    res.end(BODY);
  });
  await new Promise<void>((r) => h1.listen(0, "127.0.0.1", r));
  const dir = mkdtempSync(join(tmpdir(), "instio-h2bench-"));
  writeFileSync(join(dir, "mesh.yaml"), benchMesh({ port: PROXY_PORT, engine: "h2c", upstreamPort: (h1.address() as { port: number }).port }));
  const proxy = spawn(join(ROOT, "bin/instio.js"), ["proxy", "--config", dir], { stdio: ["ignore", "ignore", "inherit"] });
  await new Promise((r) => setTimeout(r, 1500));
  const seconds = Number(process.env.H2_SECONDS ?? 8);
  const direct = await h2load((h2.address() as { port: number }).port, seconds);
  const through = await h2load(PROXY_PORT, seconds);
  proxy.kill("SIGKILL");
  h1.close();
  h2.close();
  console.log(`h2load -c 4 -m 32 -D ${seconds} (256 B responses)\n`);
  console.log("| target | req/s | mean latency | max latency |");
  console.log("|---|---:|---:|---:|");
  console.log(`| node:http2 server, direct | ${direct.rps.toFixed(0)} | ${direct.mean} | ${direct.max} |`);
  console.log(`| instio h2c -> HTTP/1.1 upstream | ${through.rps.toFixed(0)} | ${through.mean} | ${through.max} |`);
}

void main();
