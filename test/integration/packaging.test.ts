// What a platform team installs. The single binary (npm run build:binary →
// dist/instio), as a user without Node runs it: copied alone into an empty
// directory, started with a PATH that has no node and no node_modules anywhere
// near. `instio quickstart` serves the Bookinfo demo (run in a network
// namespace of its own, so its fixed ports cannot meet another test's), and the
// other commands answer. Then the image (npm run build:image): read by skopeo
// as an OCI layout and as a docker-save tarball, the same digest from the same
// inputs, and unpacked by umoci and run in fresh namespaces (unshare + chroot)
// as UID 1337, where the quickstart serves requests. One file, because the
// image is made of the binary this file builds.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../host/packaging/image.js";
import { VERSION } from "../../host/version.js";
import { eventually } from "../support/mesh.js";
import { buildFilters } from "../support/proxy-wasm-filters.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NS = `instio-bin-${process.pid % 10000}`;
let dir: string;
let binary: string;
let netns = false;
const children: ChildProcess[] = [];

/** The binary with nothing of Node around it: no node on PATH, a home and a data directory of its own. */
function env(): NodeJS.ProcessEnv {
  return { PATH: "/nonexistent", HOME: dir, INSTIO_DATA_DIR: join(dir, "data") };
}

/** The binary's command line, in the test's namespace when there is one (root), else here; and the environment to start it with. */
function argv(args: string[]): [string, string[], NodeJS.ProcessEnv] {
  if (!netns) return [binary, args, env()];
  return ["ip", ["netns", "exec", NS, "env", "-i", ...Object.entries(env()).map(([k, v]) => `${k}=${v}`), binary, ...args], process.env];
}

function run(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const [cmd, a, e] = argv(args);
  try {
    const stdout = execFileSync(cmd, a, { cwd: dir, env: e, encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
    return { status: 0, stdout, stderr: "" };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { status: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}

/** curl from where the binary runs (its namespace, else here). */
function curl(args: string[]): string {
  return execFileSync(netns ? "ip" : "curl", netns ? ["netns", "exec", NS, "curl", "-s", ...args] : ["-s", ...args], { encoding: "utf8" });
}

beforeAll(async () => {
  execFileSync(process.execPath, [join(ROOT, "dist/host/packaging/binary.js")], { stdio: ["ignore", "ignore", "inherit"] });
  dir = mkdtempSync(join(tmpdir(), "instio-binary-"));
  binary = join(dir, "instio");
  copyFileSync(join(ROOT, "dist/instio"), binary);
  execFileSync("chmod", ["755", binary]);
  if (process.getuid?.() === 0) {
    try {
      execFileSync("ip", ["netns", "add", NS]);
      execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
      netns = true;
    } catch {
      // no namespaces here: the quickstart runs on this machine's loopback
    }
  }
}, 180_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (netns) execFileSync("ip", ["netns", "del", NS]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the single binary", () => {
  it("is one file that runs with no Node and no node_modules", () => {
    expect(statSync(binary).size).toBeGreaterThan(10 * 1024 * 1024);
    expect(existsSync(join(dir, "node_modules"))).toBe(false);
    const help = run(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("instio proxy --config PATH");
  });

  it("serves the quickstart: requests routed by the Wasm core, jason to v2, Istio's metrics", async () => {
    const [cmd, a, e] = argv(["quickstart"]);
    const child = spawn(cmd, a, { cwd: dir, env: e, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes("Ctrl-C to stop"), 30_000, () => `the quickstart to start:\n${out}`);
    const jason = JSON.parse(curl(["-H", "Host: reviews:9080", "-H", "end-user: jason", "http://127.0.0.1:15001/reviews/1"])) as { version: string };
    expect(jason.version).toBe("v2");
    const versions = new Set<string>();
    for (let i = 0; i < 40; i++) versions.add((JSON.parse(curl(["-H", "Host: reviews:9080", "http://127.0.0.1:15001/reviews/1"])) as { version: string }).version);
    expect([...versions].every((v) => v === "v1" || v === "v3")).toBe(true);
    expect(curl(["http://127.0.0.1:15090/stats/prometheus"])).toMatch(/istio_requests_total\{[^}]*destination_version="v2"[^}]*\} 1/);
    // The native addon came along: the capture support is there.
    expect(out).not.toMatch(/error/i);
    child.kill("SIGINT");
  }, 60_000);

  it("runs a Proxy-Wasm filter (its instrumentation included) on two serving threads and compiles a route table for Envoy", async () => {
    const { deny } = await buildFilters(["deny"]);
    copyFileSync(deny, join(dir, "deny.wasm"));
    const config = join(dir, "wasm-config");
    execFileSync("mkdir", ["-p", config]);
    writeFileSync(join(config, "mesh.yaml"), `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: wasm}
spec:
  listeners: {outbound: {address: 127.0.0.1, port: 18999}}
  admin: {address: 127.0.0.1, port: 18998}
  agent: {enabled: false}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: deny, namespace: default}
spec: {url: "file://${join(dir, "deny.wasm")}"}
`);
    // Two serving threads: the worker's bundle, the socket addon from the binary and the plugin on the worker.
    const [cmd, a, e] = argv(["proxy", "--config", config, "--concurrency", "2"]);
    const child = spawn(cmd, a, { cwd: dir, env: e, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let out = "";
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes("config version 1"), 30_000, () => `the proxy to start:\n${out}`);
    expect(out).toContain("2 serving threads");
    // Each curl is a connection of its own: the kernel spreads them over both threads, and one scrape counts them all.
    for (let i = 0; i < 8; i++) expect(curl(["-H", "Host: anything", "-H", "x-deny: 1", "http://127.0.0.1:18999/"])).toBe("denied by wasm");
    const threads = curl(["http://127.0.0.1:18998/stats/prometheus"]).split("\n").filter((l) => l.startsWith("instio_serving_thread_requests_total"));
    expect(threads.reduce((n, l) => n + Number(l.split(" ")[1]), 0)).toBe(8);
    child.kill("SIGINT");
    const table = run(["compile-table", config, "--envoy"]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toContain("cluster_header: x-instio-cluster");
  }, 60_000);

  it("validates, explains, writes capture rules and injects pods", () => {
    writeFileSync(join(dir, "bad.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: -1}]}]}\n");
    const bad = run(["validate", join(dir, "bad.yaml")]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/bad\.yaml:4:\d+: error/);
    const quickstart = join(dir, "data");
    const explained = run(["explain", "--config", join(quickstart, execFileSync("ls", [quickstart], { encoding: "utf8" }).trim().split("\n")[0]!, "examples/quickstart"), "GET http://reviews:9080/reviews/1", "-H", "end-user: jason"]);
    expect(explained.status, explained.stderr).toBe(0);
    expect(explained.stdout).toMatch(/v2/);
    expect(run(["iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-i", "*", "-b", "*", "--dry-run"]).stdout).toContain("-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
    const injected = run(["inject", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: app:1}]}\n");
    expect(injected.status, injected.stderr).toBe(0);
    expect(injected.stdout).toContain("name: instio-proxy");
  });
});

const hasImageTools = ((): string | undefined => {
  if (process.getuid?.() !== 0) return "needs root (umoci unpack, namespaces, chroot)";
  for (const tool of ["skopeo", "umoci", "unshare", "chroot", "ip"]) {
    try {
      execFileSync("which", [tool], { stdio: "ignore" });
    } catch {
      return `needs ${tool} (apt-get install -y skopeo umoci)`;
    }
  }
  return undefined;
})();
if (hasImageTools) console.warn(`test/integration/packaging.test.ts: the image tests are skipped: ${hasImageTools}`);

describe.skipIf(hasImageTools !== undefined)("the container image", () => {
  let built: ReturnType<typeof buildImage>;
  const IMAGE_NS = `instio-img-${process.pid % 10000}`;

  beforeAll(() => {
    built = buildImage();
  }, 120_000);

  afterAll(() => {
    try {
      execFileSync("ip", ["netns", "del", IMAGE_NS], { stdio: "ignore" });
    } catch {
      // not made
    }
  });

  it("is an OCI image and a docker-save tarball skopeo reads: UID/GID 1337, entrypoint instio, Istio's ports, labels", () => {
    const config = JSON.parse(execFileSync("skopeo", ["inspect", "--config", `oci:${built.ociDir}:${VERSION}`], { encoding: "utf8" })) as { config: { User: string; Entrypoint: string[]; ExposedPorts: Record<string, unknown>; Labels: Record<string, string> } };
    expect(config.config.User).toBe("1337:1337");
    expect(config.config.Entrypoint).toEqual(["/usr/local/bin/instio"]);
    expect(Object.keys(config.config.ExposedPorts).sort()).toEqual(["15000/tcp", "15001/tcp", "15006/tcp", "15010/tcp", "15012/tcp", "15014/tcp", "15017/tcp", "15020/tcp", "15021/tcp", "15090/tcp"]);
    expect(config.config.Labels).toMatchObject({ "org.opencontainers.image.version": VERSION, "org.opencontainers.image.source": expect.stringMatching(/^https:\/\//) });
    const raw = JSON.parse(execFileSync("skopeo", ["inspect", "--raw", `oci:${built.ociDir}:${VERSION}`], { encoding: "utf8" })) as { layers: { mediaType: string }[] };
    expect(raw.layers.map((l) => l.mediaType)).toEqual(["application/vnd.oci.image.layer.v1.tar+gzip"]);
    const saved = JSON.parse(execFileSync("skopeo", ["inspect", "--config", `docker-archive:${built.tarball}`], { encoding: "utf8" })) as { config: { User: string } };
    expect(saved.config.User).toBe("1337:1337");
    // No shell, no package manager: the binary, its libraries, certificates and the accounts.
    const files = execFileSync("tar", ["-tf", built.tarball, "--wildcards", "*/layer.tar"], { encoding: "utf8" });
    expect(files).toContain("layer.tar");
  });

  it("gives the same digest from the same inputs", () => {
    expect(buildImage().manifestDigest).toBe(built.manifestDigest);
  }, 120_000);

  it("unpacked by umoci and run in fresh namespaces as UID 1337, serves the quickstart", async () => {
    const bundle = join(dir, "bundle");
    execFileSync("umoci", ["unpack", "--image", `${built.ociDir}:${VERSION}`, bundle], { stdio: "ignore" });
    for (const shell of ["bin/sh", "usr/bin/sh", "bin/bash"]) expect(existsSync(join(bundle, "rootfs", shell))).toBe(false);
    execFileSync("ip", ["netns", "add", IMAGE_NS]);
    execFileSync("ip", ["netns", "exec", IMAGE_NS, "ip", "link", "set", "lo", "up"]);
    const child = spawn("ip", ["netns", "exec", IMAGE_NS, "unshare", "--mount", "--pid", "--fork", "--ipc", "--uts", "env", "-i", "PATH=/usr/local/bin", "INSTIO_DATA_DIR=/var/lib/instio", "/usr/sbin/chroot", "--userspec=1337:1337", join(bundle, "rootfs"), "/usr/local/bin/instio", "quickstart"], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes("Ctrl-C to stop"), 30_000, () => `the quickstart in the image to start:\n${out}`);
    const answer = JSON.parse(execFileSync("ip", ["netns", "exec", IMAGE_NS, "curl", "-s", "-H", "Host: reviews:9080", "-H", "end-user: jason", "http://127.0.0.1:15001/reviews/1"], { encoding: "utf8" })) as { version: string };
    expect(answer.version).toBe("v2");
    // It runs as 1337 (the process the namespace holds, seen from here).
    const pids = execFileSync("ip", ["netns", "pids", IMAGE_NS], { encoding: "utf8" }).trim().split("\n");
    const users = pids.map((pid) => /Uid:\s+(\d+)/.exec(execFileSync("cat", [`/proc/${pid}/status`], { encoding: "utf8" }))![1]);
    expect(users).toContain("1337");
    for (const pid of pids) process.kill(Number(pid), "SIGKILL");
  }, 60_000);
});
