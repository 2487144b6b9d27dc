// `instio quickstart --mesh` as a newcomer runs it: a child process with the
// control plane on istiod's ports, gRPC clients bootstrapped through the
// GRPC_XDS_BOOTSTRAP file it writes, and `instio status` showing them synced.

import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CLI } from "../support/child-proxy.js";
import { eventually } from "../support/mesh.js";

describe("instio quickstart --mesh", () => {
  it("configures gRPC clients from the embedded Istio and Kubernetes YAML: the 80/20 canary, jason on v2, and a synced status", async () => {
    const child = spawn(process.execPath, [CLI, "quickstart", "--mesh"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await eventually(() => /via instio sidecar +50 calls: .*\| {3}end-user jason:/.test(out), 20_000, `a report from both kinds of client; output so far:\n${out}`);
      // The proxyless gRPC clients and the instio sidecar are configured alike: the 80/20 canary, jason on v2.
      for (const who of ["proxyless gRPC", "via instio sidecar"]) {
        const report = new RegExp(`${who} +50 calls: (.*)\\| {3}end-user jason: (\\S+)`).exec(out)!;
        expect(report[2]).toBe("reviews-v2");
        const counts = Object.fromEntries([...report[1]!.matchAll(/(reviews-v\d|error \w+) (\d+)/g)].map((m) => [m[1], Number(m[2])]));
        expect(Object.keys(counts).sort()).toEqual(expect.arrayContaining(["reviews-v1"]));
        expect(counts["reviews-v2"]).toBeUndefined(); // only jason goes to v2
        expect(Object.keys(counts).filter((k) => k.startsWith("error"))).toEqual([]);
        expect((counts["reviews-v1"] ?? 0) + (counts["reviews-v3"] ?? 0)).toBe(50);
      }
      expect(out).toMatch(/GRPC_XDS_BOOTSTRAP=\S+grpc-bootstrap\.json/);
      const status = spawnSync(process.execPath, [CLI, "status", "--control-plane", "127.0.0.1:15014"], { encoding: "utf8" });
      expect(status.status).toBe(0);
      const row = status.stdout.split("\n").find((l) => l.startsWith("productpage-v1-6b746f74dc-9stvs.default"));
      expect(row).toBeDefined();
      expect(row).toMatch(/SYNCED/);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });
});
