// Transparent capture on a real kernel, without Kubernetes: two "pods" as
// network namespaces joined by a veth pair, each with an app and an instio
// sidecar running as UID 1337 behind the rules `instio iptables` installs with
// the injector's flags. Pod A's app is a plain client that knows nothing of the
// proxy; it calls pod B by name (/etc/netns/A/hosts) and by address. The
// request goes A's app → A's sidecar (15001) → B's sidecar (15006) → B's app,
// which sees it arrive from 127.0.0.6 (Istio's inbound passthrough source).
// Skipped, with the reason, where namespaces, iptables or the addon are not
// available; .ci/run installs iptables, and CI runs as root.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { looksLikeHttp } from "../../host/listeners/listener-capture.js";
import { captureUnavailable } from "../../host/listeners/original-destination.js";
import { CLI } from "../support/child-proxy.js";
import { eventually } from "../support/mesh.js";
import { parseExposition } from "../support/prometheus.js";
import "../support/fast-check-seed.js";

const SUFFIX = `${process.pid % 10000}`;
const A = `instio-a-${SUFFIX}`;
const B = `instio-b-${SUFFIX}`;
/** A /24 of the test's own, picked per run so that parallel runs do not collide. */
const NET = `10.${200 + (process.pid % 50)}.${process.pid % 250}`;
const A_IP = `${NET}.1`;
const B_IP = `${NET}.2`;
/** The control plane's own namespace, linked to each pod by a veth pair of its own (two more /24s). */
const CP = `instio-cp-${SUFFIX}`;
const NET_A = `10.${200 + (process.pid % 50)}.${(process.pid + 1) % 250}`;
const NET_B = `10.${200 + (process.pid % 50)}.${(process.pid + 2) % 250}`;
/** The injector's capture flags, plus one outbound port (A) and one inbound port (B) left alone. */
const INJECTED = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*"];

function unavailable(): string | undefined {
  if (process.platform !== "linux") return "needs Linux network namespaces";
  if (process.getuid?.() !== 0) return "needs root (ip netns, iptables)";
  for (const tool of ["ip", "iptables", "iptables-restore", "setpriv"]) {
    try {
      execFileSync("which", [tool], { stdio: "ignore" });
    } catch {
      return `needs ${tool} (apt-get install -y iproute2 iptables util-linux)`;
    }
  }
  const addon = captureUnavailable();
  if (addon) return addon;
  try {
    execFileSync("ip", ["netns", "add", `instio-probe-${SUFFIX}`]);
    execFileSync("ip", ["netns", "del", `instio-probe-${SUFFIX}`]);
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message.split("\n")[0]}`;
  }
  return undefined;
}

const skip = unavailable();
if (skip) console.warn(`test/mesh/capture.test.ts skipped: ${skip}`);

const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const inNs = (ns: string, args: string[]): string => run("ip", ["netns", "exec", ns, ...args]);

const children: ChildProcess[] = [];
let dir: string;

/** A process in `ns` (as UID/GID 1337 for a sidecar); its output is kept for failure messages. */
function start(ns: string, args: string[], asProxy = false): ChildProcess & { output: () => string } {
  const argv = asProxy ? ["netns", "exec", ns, "setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", ...args] : ["netns", "exec", ns, ...args];
  const child = spawn("ip", argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  children.push(child);
  return Object.assign(child, { output: () => out });
}

/** Node code run in `ns` as the app (root, not 1337: captured), printing one JSON line. */
function app(ns: string, code: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = start(ns, [process.execPath, "--input-type=module", "-e", code]);
    child.once("exit", (status) => {
      const out = child.output().trim();
      try {
        resolve(JSON.parse(out.split("\n").at(-1)!));
      } catch {
        reject(new Error(`app exited ${status}: ${out}`));
      }
    });
  });
}

/** A plain HTTP GET from pod A's app (node:http, no proxy settings). */
const getFromA = (url: string): Promise<{ status?: number; body?: { remote: string; headers: Record<string, string>; url: string }; error?: string }> =>
  app(A, `import http from "node:http";
http.get(${JSON.stringify(url)}, (res) => { let b = ""; res.on("data", (c) => (b += c)); res.on("end", () => { let body; try { body = JSON.parse(b); } catch { body = { text: b, headers: res.headers }; } console.log(JSON.stringify({ status: res.statusCode, body })); }); })
  .on("error", (e) => console.log(JSON.stringify({ error: e.code ?? e.message })));`) as never;

/** Pod B's app: HTTP on 9080 and 7777 answering with what it saw; a TCP echo on 5000 prefixed with the peer's address. */
const B_APP = `import http from "node:http"; import net from "node:net";
const answer = (req, res) => { const delay = req.url.startsWith("/slow") ? 400 : 0; setTimeout(() => res.end(JSON.stringify({ remote: req.socket.remoteAddress, headers: req.headers, url: req.url })), delay); };
http.createServer(answer).listen(9080, "0.0.0.0");
http.createServer(answer).listen(7777, "0.0.0.0");
net.createServer((s) => s.on("data", (d) => s.write(s.remoteAddress + " " + d)).on("error", () => {})).listen(5000, "0.0.0.0");
console.log("listening");`;

function sidecarSettings(pod: string, extra = ""): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: ${pod}}
spec:
  namespace: default
  labels: {app: ${pod}, version: v1}
  workload: {name: ${pod}-v1, cluster: Kubernetes}
  listeners:
    outbound: {address: 0.0.0.0, port: 15001, capture: true}
    inbound: {address: 0.0.0.0, port: 15006, capture: true}
  admin: {address: 127.0.0.1, port: 15000}
  agent: {address: 0.0.0.0, statusPort: 15020, prometheusPort: 15090, healthPort: 15021}
  drain: {duration: 1s}
${extra}`;
}

/** reviews, as pod A's sidecar knows it: pod B's address on 9080 (HTTP) and 5000 (TCP). */
const REVIEWS = `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http}, {number: 5000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: ${B_IP}}]
`;

function sidecar(pod: string, ns: string, config: string): ChildProcess & { output: () => string } {
  const d = join(dir, pod);
  mkdirSync(d);
  writeFileSync(join(d, "mesh.yaml"), config);
  return start(ns, [process.execPath, CLI, "proxy", "--config", d], true);
}

const ready = (ns: string): boolean => {
  try {
    return inNs(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:15021/healthz/ready"]) === "200";
  } catch {
    return false;
  }
};

const prometheusText = (ns: string): string => inNs(ns, ["curl", "-s", "http://127.0.0.1:15090/stats/prometheus"]);
const metrics = (ns: string) => parseExposition(prometheusText(ns));
/** A sidecar's request and inbound-refusal series, for failure messages. */
const requestSeries = (ns: string): string => prometheusText(ns).split("\n").filter((l) => l.startsWith("istio_requests_total") || l.startsWith("instio_inbound")).join("\n");

let sidecarA: ChildProcess & { output: () => string };
let sidecarB: ChildProcess & { output: () => string };

describe.skipIf(skip !== undefined)("two pods in network namespaces behind instio iptables, sidecars as UID 1337", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "instio-capture-"));
    chmodSync(dir, 0o755); // the sidecars run as 1337
    run("ip", ["netns", "add", A]);
    run("ip", ["netns", "add", B]);
    run("ip", ["link", "add", `va${SUFFIX}`, "type", "veth", "peer", "name", `vb${SUFFIX}`]);
    run("ip", ["link", "set", `va${SUFFIX}`, "netns", A]);
    run("ip", ["link", "set", `vb${SUFFIX}`, "netns", B]);
    for (const [ns, nic, ip] of [[A, `va${SUFFIX}`, A_IP], [B, `vb${SUFFIX}`, B_IP]] as const) {
      inNs(ns, ["ip", "addr", "add", `${ip}/24`, "dev", nic]);
      inNs(ns, ["ip", "link", "set", nic, "up"]);
      inNs(ns, ["ip", "link", "set", "lo", "up"]);
    }
    // Pod A resolves reviews to pod B (ip netns exec mounts /etc/netns/A/hosts over /etc/hosts).
    mkdirSync(`/etc/netns/${A}`, { recursive: true });
    writeFileSync(`/etc/netns/${A}/hosts`, `127.0.0.1 localhost\n${B_IP} reviews reviews.default.svc.cluster.local\n`);
    // The rules as the injector's init container installs them; A leaves outbound 7777 alone, B inbound 7777.
    inNs(A, [process.execPath, CLI, "iptables", ...INJECTED, "-d", "15090,15021,15020", "-o", "7777"]);
    inNs(B, [process.execPath, CLI, "iptables", ...INJECTED, "-d", "15090,15021,15020,7777"]);
    const bApp = start(B, [process.execPath, "--input-type=module", "-e", B_APP]);
    await eventually(() => bApp.output().includes("listening"), 10_000, "pod B's app");
    sidecarB = sidecar("b", B, sidecarSettings("reviews"));
    await eventually(() => ready(B), 20_000, () => `pod B's sidecar to be ready:\n${sidecarB.output()}`);
  }, 60_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    for (const ns of [A, B, CP]) {
      try {
        run("ip", ["netns", "del", ns]);
      } catch {
        // not made
      }
    }
    rmSync(`/etc/netns/${A}`, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe("transparent capture, sidecars configured from files", () => {

    it("starts the sidecar before the app: with the rules in place and no sidecar, the app's call is refused; once the sidecar is ready, the first call succeeds", { timeout: 40_000 }, async () => {
      // Without a sidecar listening on 15001 the redirected connection has nowhere to go: why the app must wait.
      expect((await getFromA("http://reviews:9080/too-early")).error).toBe("ECONNREFUSED");
      sidecarA = sidecar("a", A, sidecarSettings("productpage", REVIEWS));
      // The native sidecar's startup probe, or classic mode's postStart `instio wait`: the app starts once 15021 answers ready.
      const wait = start(A, [process.execPath, CLI, "wait", "--timeout", "20"]);
      const waited = await new Promise<number | null>((resolve) => wait.once("exit", resolve));
      expect(waited, `instio wait: ${wait.output()}\n${sidecarA.output()}`).toBe(0);
      expect(ready(A)).toBe(true);
      const first = await getFromA("http://reviews:9080/first");
      expect(first.status).toBe(200);
    });

    it("carries a plain client's request through both sidecars to the app, and both record it", async () => {
      const r = await getFromA("http://reviews:9080/reviews/1");
      expect(r.status).toBe(200);
      // B's app sees the request from 127.0.0.6 (B's sidecar), with what the sidecars add.
      expect(r.body!.remote).toBe("127.0.0.6");
      expect(r.body!.url).toBe("/reviews/1");
      expect(r.body!.headers["x-request-id"]).toBeDefined();
      await eventually(() => metrics(A).find("istio_requests_total", { reporter: "source", destination_service: "reviews.default.svc.cluster.local", response_code: "200" }).length === 1, 5000, "pod A's metrics");
      const source = metrics(A).sum("istio_requests_total", { reporter: "source", destination_service: "reviews.default.svc.cluster.local" });
      // The sidecar's own connection to B (UID 1337) was not captured again: one request, not a loop.
      expect(source).toBe(2);
      await eventually(() => metrics(B).sum("istio_requests_total", { reporter: "destination", destination_workload: "reviews-v1", response_code: "200" }) >= 2, 5000, "pod B's metrics");
    });

    it("passes a call to an address it has no service for through to that address (PassthroughCluster)", async () => {
      const r = await getFromA(`http://${B_IP}:9080/by-address`);
      expect(r.status).toBe(200);
      expect(r.body!.url).toBe("/by-address");
      expect(r.body!.remote).toBe("127.0.0.6");
    });

    it("relays a TCP service both ways through both sidecars", async () => {
      const echoed = await app(A, `import net from "node:net";
  const s = net.connect(5000, "reviews", () => s.write("ping"));
  s.on("data", (d) => { console.log(JSON.stringify(String(d))); s.destroy(); });
  s.on("error", (e) => console.log(JSON.stringify("error " + e.code)));`);
      expect(echoed).toBe("127.0.0.6 ping");
    });

    it("leaves excluded ports alone: the app reaches the other app directly", async () => {
      const before = metrics(A).sum("istio_requests_total", { reporter: "source" });
      const r = await getFromA("http://reviews:7777/excluded");
      expect(r.status).toBe(200);
      // From A's own address: neither sidecar was on the way.
      expect(r.body!.remote).toBe(A_IP);
      expect(r.body!.headers["x-request-id"]).toBeUndefined();
      expect(metrics(A).sum("istio_requests_total", { reporter: "source" })).toBe(before);
    });

    it("does not let another pod use its sidecar's own ports (15001 as an open proxy into the pod)", async () => {
      // Pod A asks for pod B's 15001 with a Host that B's sidecar would forward to B's app.
      const r = await app(A, `import net from "node:net";
  const s = net.connect(15001, "${B_IP}", () => s.write("GET /via-b HTTP/1.1\\r\\nhost: ${B_IP}:9080\\r\\nconnection: close\\r\\n\\r\\n"));
  let text = ""; s.on("data", (d) => (text += d)); s.on("close", () => console.log(JSON.stringify(text.split("\\r\\n")[0] ?? ""))); s.on("error", () => {});`);
      // B's sidecar closes it (A's sidecar, which made the connection, answers 503): B's app never sees /via-b.
      expect(r).not.toMatch(/ 200 /);
      const seen = await getFromA("http://reviews:9080/after-the-probe");
      expect(seen.status).toBe(200);
      expect(seen.body!.url).toBe("/after-the-probe");
    });

    it("survives hostile bytes on captured connections (HTTP and other ports), and keeps serving", { timeout: 40_000 }, async () => {
      const payload = fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 400 }).map((b) => Buffer.from(b)),
        fc.string({ maxLength: 120 }).map((t) => Buffer.from(`GET /${t} HTTP/1.1\r\nhost: reviews\r\n\r\n`, "latin1")),
        fc.constantFrom("GET", "POST /x HTTP/1.1\r\ncontent-length: 99\r\n\r\nab", "\x16\x03\x01\x02\x00", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "G").map((t) => Buffer.from(t, "latin1")),
      );
      const cases = fc.sample(fc.tuple(payload, fc.constantFrom(9080, 5000, 6000, 9999)), { numRuns: 80 }).map(([bytes, port]) => ({ port, data: bytes.toString("base64") }));
      const sent = await app(A, `import net from "node:net";
  const cases = ${JSON.stringify(cases)};
  let closed = 0;
  await Promise.all(cases.map((c) => new Promise((resolve) => {
    const s = net.connect(c.port, "${B_IP}", () => s.end(Buffer.from(c.data, "base64")));
    s.on("data", () => {}); s.on("error", () => resolve()); s.on("close", () => { closed++; resolve(); });
    s.setTimeout(3000, () => { s.destroy(); resolve(); });
  })));
  console.log(JSON.stringify(closed));`);
      expect(typeof sent).toBe("number");
      expect(sidecarA.exitCode).toBeNull();
      expect(sidecarB.exitCode).toBeNull();
      const r = await getFromA("http://reviews:9080/after-the-fuzz");
      expect(r.status, `${JSON.stringify(r)}\nA: ${sidecarA.output()}\nB: ${sidecarB.output()}`).toBe(200);
      expect(sidecarA.output()).not.toMatch(/internal error/);
      expect(sidecarB.output()).not.toMatch(/internal error/);
    });

    it("keeps the sidecar serving the app's calls in flight when the app stops, then exits after it (native sidecar order)", { timeout: 30_000 }, async () => {
      // A Job-style app: calls in a loop; on SIGTERM it finishes the calls in flight and exits with its tally.
      const job = start(A, [process.execPath, "--input-type=module", "-e", `import http from "node:http";
  let ok = 0, failed = 0, stopping = false, inFlight = 0;
  const call = () => { if (stopping) return; inFlight++;
    http.get("http://reviews:9080/slow", (res) => { res.resume(); res.on("end", () => { res.statusCode === 200 ? ok++ : failed++; inFlight--; done(); call(); }); })
      .on("error", () => { failed++; inFlight--; done(); }); };
  const done = () => { if (stopping && inFlight === 0) { console.log(JSON.stringify({ ok, failed })); process.exit(0); } };
  process.on("SIGTERM", () => { stopping = true; done(); });
  for (let i = 0; i < 4; i++) call();
  console.log("calling");`]);
      await eventually(() => job.output().includes("calling"), 10_000, "the job");
      await new Promise((r) => setTimeout(r, 1000));
      // The kubelet stops the app first; its calls in flight (400 ms each) still go through the sidecar.
      const jobExit = new Promise<number | null>((resolve) => job.once("exit", resolve));
      process.kill(job.pid!, "SIGTERM"); // (ip netns exec runs the command in its own process: this pid)
      expect(await jobExit).toBe(0);
      const tally = JSON.parse(job.output().trim().split("\n").at(-1)!) as { ok: number; failed: number };
      expect(tally.failed).toBe(0);
      expect(tally.ok).toBeGreaterThanOrEqual(4);
      // Then the sidecar: it drains (1 s here) and exits on its own.
      const sidecarExit = new Promise<number | null>((resolve) => sidecarA.once("exit", resolve));
      process.kill(sidecarA.pid!, "SIGTERM");
      expect(await sidecarExit).toBe(0);
    });
  });

  describe("injected pods: sidecars run as the injector writes them, configured by the control plane, mTLS between them", () => {
    let cpDir: string;
    let a: ChildProcess & { output: () => string };
    let b: ChildProcess & { output: () => string };
    let cp: ChildProcess & { output: () => string };

    /** The injected instio-proxy's command line (inject.ts), the control plane reached at `cpIp`, and the pod's environment. */
    function injectedSidecar(ns: string, cpIp: string, pod: { name: string; ip: string; account: string; app: string }): ChildProcess & { output: () => string } {
      const token = join(cpDir, `${pod.account}.token`);
      return start(ns, ["env", `POD_NAME=${pod.name}`, "POD_NAMESPACE=default", `INSTANCE_IP=${pod.ip}`, `SERVICE_ACCOUNT=${pod.account}`, `ISTIO_METAJSON_LABELS={"app":"${pod.app}","version":"v1","security.istio.io/tlsMode":"istio"}`,
        process.execPath, CLI, "proxy", "--xds", `${cpIp}:15010`, "--ca", `${cpIp}:15012`, "--capture", "--ca-root", join(cpDir, "ca", "root-cert.pem"), "--token", token], true);
    }

    beforeAll(async () => {
      // The earlier sidecars are gone (the last test above stopped A's; B's is stopped here).
      sidecarB?.kill("SIGKILL");
      cpDir = join(dir, "control-plane");
      mkdirSync(join(cpDir, "kube"), { recursive: true });
      mkdirSync(join(cpDir, "ca"), { recursive: true });
      writeFileSync(join(cpDir, "kube", "bookinfo.yaml"), KUBE);
      writeFileSync(join(cpDir, "tokens.yaml"), "tokens:\n- {token: productpage-token-0123456789, namespace: default, serviceAccount: bookinfo-productpage}\n- {token: reviews-token-0123456789, namespace: default, serviceAccount: bookinfo-reviews}\n");
      writeFileSync(join(cpDir, "bookinfo-productpage.token"), "productpage-token-0123456789\n");
      writeFileSync(join(cpDir, "bookinfo-reviews.token"), "reviews-token-0123456789\n");
      run("ip", ["netns", "add", CP]);
      inNs(CP, ["ip", "link", "set", "lo", "up"]);
      for (const [ns, net, tag] of [[A, NET_A, "a"], [B, NET_B, "b"]] as const) {
        const [pod, cp] = [`c${tag}p${SUFFIX}`, `c${tag}c${SUFFIX}`];
        run("ip", ["link", "add", pod, "type", "veth", "peer", "name", cp]);
        run("ip", ["link", "set", pod, "netns", ns]);
        run("ip", ["link", "set", cp, "netns", CP]);
        inNs(ns, ["ip", "addr", "add", `${net}.1/24`, "dev", pod]);
        inNs(ns, ["ip", "link", "set", pod, "up"]);
        inNs(CP, ["ip", "addr", "add", `${net}.2/24`, "dev", cp]);
        inNs(CP, ["ip", "link", "set", cp, "up"]);
      }
      cp = start(CP, [process.execPath, CLI, "control-plane", "--kube-dir", join(cpDir, "kube"), "--ca-dir", join(cpDir, "ca"), "--ca-tokens", join(cpDir, "tokens.yaml")]);
      await eventually(() => cp.output().includes("injection webhook on"), 20_000, () => `the control plane:\n${cp.output()}`);
      b = injectedSidecar(B, `${NET_B}.2`, { name: "reviews-v1", ip: B_IP, account: "bookinfo-reviews", app: "reviews" });
      a = injectedSidecar(A, `${NET_A}.2`, { name: "productpage-v1", ip: A_IP, account: "bookinfo-productpage", app: "productpage" });
      await eventually(() => ready(A) && ready(B), 30_000, () => `both sidecars ready:\nA: ${a.output()}\nB: ${b.output()}`);
    }, 60_000);

    it("carries the plain client's request over mTLS between the sidecars, each knowing the other's identity", async () => {
      const r = await getFromA("http://reviews:9080/reviews/mtls");
      expect(r.status, `${JSON.stringify(r)}\nCP: ${cp.output()}\nA: ${a.output()}\nB: ${b.output()}\nA stats: ${requestSeries(A)}\nB stats: ${requestSeries(B)}`).toBe(200);
      expect(r.body!.remote).toBe("127.0.0.6");
      await eventually(() => metrics(B).find("istio_requests_total", { reporter: "destination", connection_security_policy: "mutual_tls", source_principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage", response_code: "200" }).length === 1, 5000, () => `pod B's mTLS series:\n${requestSeries(B)}`);
      expect(metrics(A).find("istio_requests_total", { reporter: "source", destination_principal: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews", response_code: "200" })).toHaveLength(1);
    });

    it("says, at the policy, that a sidecar it configures does not enforce inbound policies yet (no silent no-op)", () => {
      expect(cp.output()).toMatch(/ads: reviews-v1\.default: .*bookinfo\.yaml:\d+:\d+: warning: spec: AuthorizationPolicy default\/reviews-viewers selects this workload, but the control plane sends no inbound listeners yet/);
      expect(cp.output()).not.toMatch(/ads: productpage-v1\.default: .*reviews-viewers/);
    });
  });
});

describe("telling HTTP/1.x from other bytes on a captured connection (Envoy's http_inspector)", () => {
  it("says HTTP for request lines of any method, and not for TLS, HTTP/2's preface or binary bytes", () => {
    for (const line of ["GET / HTTP/1.1", "POST /x HTTP/1.1", "M-SEARCH * HTTP/1.1", "PROPFIND /", "GE"]) expect(looksLikeHttp(Buffer.from(line)), line).toBe(true);
    for (const bytes of ["\x16\x03\x01", "get / HTTP/1.1", " GET", "\x00\x01", "SSH-2.0-OpenSSH", "VERYLONGMETHODNAMEOVER16 /"]) expect(looksLikeHttp(Buffer.from(bytes, "latin1")), bytes).toBe(false);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => typeof looksLikeHttp(Buffer.from(b)) === "boolean"));
  });
});

/** The Kubernetes objects the control plane watches: reviews (pod B) and productpage (pod A), both injected (tlsMode istio). */
const KUBE = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {clusterIP: 10.96.0.20, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: default, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: bookinfo-reviews}
status: {podIP: ${B_IP}}
---
apiVersion: v1
kind: Pod
metadata: {name: productpage-v1, namespace: default, labels: {app: productpage, version: v1, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: bookinfo-productpage}
status: {podIP: ${A_IP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: default, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints: [{addresses: ["${B_IP}"], conditions: {ready: true}, targetRef: {kind: Pod, name: reviews-v1, namespace: default}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewers, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]}]
`;
