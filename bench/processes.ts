// Process helpers the whole-process benchmarks share: tools from Debian,
// CPU pinning, a process tree's CPU time and peak memory, wrk runs.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus } from "node:os";
import { request } from "undici";

export const TWO_CPUS = cpus().length >= 2;

export function has(cmd: string): boolean {
  try {
    execFileSync("which", [cmd], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** wrk, nginx and HAProxy come from Debian's packages, installed here when missing. */
export function ensureTools(): void {
  if (has("wrk") && has("nginx") && has("haproxy")) return;
  if (process.getuid?.() !== 0) throw new Error("wrk, nginx and haproxy are needed: apt-get install -y wrk nginx-light haproxy");
  console.log("installing wrk, nginx-light, haproxy from Debian's packages ...");
  try {
    execFileSync("apt-get", ["install", "-y", "wrk", "nginx-light", "haproxy"], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  } catch {
    execFileSync("apt-get", ["update"], { stdio: "inherit" });
    execFileSync("apt-get", ["install", "-y", "wrk", "nginx-light", "haproxy"], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  }
}

/** `cmd` pinned to `cpu` (undefined: free to run on any CPU, as processes in a pod share its cores). */
export function pinned(cpu: number | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu !== undefined && TWO_CPUS && has("taskset") ? ["taskset", ["-c", String(cpu), cmd, ...args]] : [cmd, args];
}

export function start(cpu: number | undefined, cmd: string, args: string[]): ChildProcess {
  const [c, a] = pinned(cpu, cmd, args);
  const child = spawn(c, a, { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.on("data", (d: Buffer) => {
    const s = d.toString();
    if (/error|emerg|alert|Error/.test(s)) process.stderr.write(`[${cmd}] ${s}`);
  });
  return child;
}

export async function waitForPort(port: number, path = "/small", host = "bench"): Promise<void> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    try {
      // undici's request, not fetch: fetch drops a Host header.
      const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host } });
      await res.body.arrayBuffer();
      if (res.statusCode === 200) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on port ${port}`);
}

/** Every process in the tree rooted at `pid` (nginx and HAProxy fork workers). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      /* exited */
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** CPU seconds (user + system) used so far by the tree. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* exited */
    }
  }
  return ticks / 100;
}

/** Peak resident memory of the tree, MiB (sum of each process's VmHWM). */
export function peakRssMiB(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    try {
      kb += Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))![1]);
    } catch {
      /* exited */
    }
  }
  return kb / 1024;
}

/** Kills a whole tree: an nginx worker outlives a killed master and keeps the port. */
export function killTree(c: ChildProcess): void {
  if (c.pid === undefined) return;
  // Parent first: an nginx master that outlives its worker's kill forks a new one, which keeps the port.
  for (const p of processTree(c.pid)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
}

export function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "ms" ? 1 : 1000);
}

export function wrk(port: number, path: string, connections: number, seconds: number, script?: string, host = "bench", cpu: number | undefined = 1): WrkResult {
  const [c, a] = pinned(cpu, "wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", ...(script ? ["-s", script] : []), "-H", `Host: ${host}`, `http://127.0.0.1:${port}${path}`]);
  const out = execFileSync(c, a, { encoding: "utf8" });
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    p99: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    requests: num(/(\d+) requests in/),
    errors: (errors ? errors.slice(1).reduce((n, x) => n + Number(x), 0) : 0) + (Number.isNaN(non2xx) ? 0 : non2xx),
  };
}


/** An nginx config serving /small (256 B) and /big (64 KiB) from `dir` on 127.0.0.1:`port`, one worker: the benchmarks' upstream. */
export function staticUpstream(dir: string, port: number): string {
  mkdirSync(join(dir, "www"), { recursive: true });
  writeFileSync(join(dir, "www", "small"), "x".repeat(255) + "\n");
  writeFileSync(join(dir, "www", "big"), Buffer.alloc(64 * 1024, "abcdefghijklmnop"));
  const conf = join(dir, "upstream.conf");
  writeFileSync(conf, `worker_processes 1; daemon off; pid ${dir}/upstream.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s; default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${dir}/www; location / { } } }
`);
  return conf;
}
