// Runs the built CLI as a child process, as a user would, for tests that measure
// the proxy process itself (memory) or its command-line behaviour.

import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../dist/host/cli.js", import.meta.url));

export interface ChildProxy {
  child: ChildProcess;
  outboundPort: number;
  adminPort: number;
  stderr: () => string;
  /** Peak resident memory of the proxy process so far, in bytes (Linux VmHWM). */
  peakRss(): number;
  stop(): Promise<void>;
}

/** `instio proxy --config configPath`, with `extraArgs` after it (an Envoy bootstrap, say). */
export async function startChildProxy(configPath: string, extraArgs: string[] = []): Promise<ChildProxy> {
  const child = spawn(process.execPath, [CLI, "proxy", "--config", configPath, ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const ports = await new Promise<{ out: number; admin: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start:\n${err}`)), 10_000);
    child.stderr!.on("data", () => {
      const m = /outbound [\d.]+:(\d+).*admin [\d.]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ out: Number(m[1]), admin: Number(m[2]) });
      }
    });
    child.once("exit", (code) => reject(new Error(`proxy exited with ${code}:\n${err}`)));
  });
  return {
    child,
    outboundPort: ports.out,
    adminPort: ports.admin,
    stderr: () => err,
    peakRss() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
