// `npm run bench:binary`: the single binary beside `node dist/host/cli.js`
// (and bin/instio.js, which adds V8 flags): its size, the time from start to
// ready (the admin's /ready answering 200) for the quickstart's config, and the
// resident memory once idle. Builds dist/instio first when it is missing.
// Rounds alternate; medians are printed.

import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median } from "./processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const ADMIN = 18790;

const variants = [
  { name: "dist/instio (single binary)", argv: [join(ROOT, "dist/instio")] },
  { name: "node dist/host/cli.js", argv: [process.execPath, join(ROOT, "dist/host/cli.js")] },
  { name: "bin/instio.js", argv: [join(ROOT, "bin/instio.js")] },
];

async function once(argv: string[], config: string, dataDir: string): Promise<{ readyMs: number; rssMiB: number }> {
  const started = performance.now();
  const child = spawn(argv[0]!, [...argv.slice(1), "proxy", "--config", config], { stdio: "ignore", env: { ...process.env, INSTIO_DATA_DIR: dataDir } });
  try {
    for (;;) {
      try {
        if ((await fetch(`http://127.0.0.1:${ADMIN}/ready`)).status === 200) break;
      } catch {
        // not up yet
      }
      if (performance.now() - started > 30_000) throw new Error(`${argv.join(" ")} not ready after 30 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const readyMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, 2000));
    const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) / 1024;
    return { readyMs, rssMiB };
  } finally {
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, "dist/instio"))) execFileSync("npm", ["run", "build:binary"], { cwd: ROOT, stdio: "inherit" });
  const dir = mkdtempSync(join(tmpdir(), "instio-binary-bench-"));
  const config = join(dir, "config");
  cpSync(join(ROOT, "examples/quickstart"), config, { recursive: true });
  // The quickstart's config on ports of the bench's own: outbound on any free port, the admin where the bench asks.
  for (const file of ["mesh.yaml"]) {
    const path = join(config, file);
    writeFileSync(path, readFileSync(path, "utf8").replace(/port: 15001/, "port: 0").replace(/admin: \{[^}]*\}/, `admin: {address: 127.0.0.1, port: ${ADMIN}}`).replace(/agent: \{[^}]*\}/, "agent: {enabled: false}"));
  }
  const results = new Map<string, { ready: number[]; rss: number[] }>(variants.map((v) => [v.name, { ready: [], rss: [] }]));
  // One start to unpack the binary's assets (later starts reuse them), as a deployed binary runs.
  await once(variants[0]!.argv, config, join(dir, "data"));
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) {
      const r = await once(v.argv, config, join(dir, "data"));
      results.get(v.name)!.ready.push(r.readyMs);
      results.get(v.name)!.rss.push(r.rssMiB);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`\nstart to ready and idle memory, the quickstart's config, median of ${ROUNDS} alternating rounds\n`);
  console.log("| how it runs | size | start to ready | idle RSS |");
  console.log("|---|---:|---:|---:|");
  for (const v of variants) {
    const r = results.get(v.name)!;
    const size = v.argv.length === 1 && v.name.startsWith("dist/instio") ? `${(statSync(v.argv[0]!).size / 1024 / 1024).toFixed(1)} MiB` : "(Node + node_modules)";
    console.log(`| ${v.name} | ${size} | ${median(r.ready).toFixed(0)} ms | ${median(r.rss).toFixed(1)} MiB |`);
  }
}

void main();
