// TLS termination and HTTP/2 downstream, checked with curl (a third-party
// client): h2 and http/1.1 by ALPN, certificates by SNI, TLS 1.2 minimum,
// certificates re-read on change without dropping a connection, h2c with prior
// knowledge, and a bad certificate named at validation.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { connect as h2connect } from "node:http2";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigText } from "../../host/config/load.js";
import { makeCa } from "../support/certs.js";
import { serviceEntryYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

const execFileAsync = promisify(execFile);
const ca = makeCa();
const f = (name: string): string => ca.path(name);
const issue = (file: string, name: string): void => ca.issue(file, [name]);

/** curl, run asynchronously: the proxy under test shares this process's event loop. */
async function curl(...args: string[]): Promise<{ status: string; version: string; body: string }> {
  const { stdout: out } = await execFileAsync("curl", ["-s", "--max-time", "5", "--cacert", f("ca.pem"), "-w", "\n%{http_code} %{http_version}", ...args], { encoding: "utf8" });
  const lines = out.split("\n");
  const [status, version] = lines.pop()!.split(" ");
  return { status: status!, version: version!, body: lines.join("\n") };
}

function settings(listener: string): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: test}
spec:
  namespace: default
  listeners:
    outbound: ${listener}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
`;
}

/** SHA-256 fingerprint of the certificate a TLS handshake with `servername` presents. */
function fingerprint(port: number, servername: string, maxVersion?: "TLSv1.1"): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false, ...(maxVersion ? { maxVersion, minVersion: "TLSv1" } : {}) }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on("error", reject);
  });
}

describe("TLS termination and HTTP/2 (curl)", () => {
  let up: Upstream;
  let p: TestProxy;
  let port: number;

  beforeAll(async () => {
    issue("svc", "svc");
    issue("other", "other.example");
    up = await startUpstream("svc");
    p = await startTestProxy(`${settings(`{address: 127.0.0.1, port: 0, tls: {certFile: ${f("svc.pem")}, keyFile: ${f("svc.key")}, sni: [{hosts: [other.example], certFile: ${f("other.pem")}, keyFile: ${f("other.key")}}]}}`)}---
${serviceEntryYaml("svc", [{ port: up.port }])}`);
    port = p.proxy.outbound.port;
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  it("serves HTTP/2 and HTTP/1.1 by ALPN through the same routes, as https", async () => {
    const target = ["--connect-to", `svc:443:127.0.0.1:${port}`, "https://svc/hello?x=1"];
    const h2 = await curl("--http2", ...target);
    expect(h2.status).toBe("200");
    expect(h2.version).toBe("2");
    const seen = JSON.parse(h2.body) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe("/hello?x=1");
    expect(seen.headers.host).toBe("svc");
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
    const h1 = await curl("--http1.1", ...target);
    expect(h1.status).toBe("200");
    expect(h1.version).toBe("1.1");
  });

  it("chooses the certificate by SNI, and refuses TLS below 1.2", async () => {
    const r = await curl("--http2", "--connect-to", `other.example:443:127.0.0.1:${port}`, "-H", "Host: svc", "https://other.example/sni");
    expect(r.status).toBe("200"); // curl verified other.example's certificate against the CA
    expect(await fingerprint(port, "other.example")).not.toBe(await fingerprint(port, "svc"));
    await expect(fingerprint(port, "svc", "TLSv1.1")).rejects.toThrow();
  });

  it("re-reads certificates when the files change, without dropping an open HTTP/2 connection", async () => {
    const session = h2connect(`https://127.0.0.1:${port}`, { ca: readFileSync(f("ca.pem")), servername: "svc" });
    const get = (path: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const s = session.request({ ":path": path, ":authority": "svc" });
        s.on("response", (h) => resolve(Number(h[":status"])));
        s.on("error", reject);
        s.resume();
        s.end();
      });
    expect(await get("/before")).toBe(200);
    const before = await fingerprint(port, "svc");
    issue("svc", "svc"); // new key and certificate in the same files
    const until = Date.now() + 10_000;
    while ((await fingerprint(port, "svc")) === before) {
      if (Date.now() > until) throw new Error("the new certificate was not picked up");
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await get("/after")).toBe(200); // same session, same connection
    session.close();
    expect(p.logs.join("\n")).toMatch(/tls: certificates reloaded/);
  });
});

describe("h2c (HTTP/2 with prior knowledge)", () => {
  it("serves curl --http2-prior-knowledge through the same routes", async () => {
    const up = await startUpstream("svc");
    const p = await startTestProxy(`${settings("{address: 127.0.0.1, port: 0, engine: h2c}")}---
${serviceEntryYaml("svc", [{ port: up.port }])}`);
    try {
      const { stdout: r } = await execFileAsync("curl", ["-s", "--max-time", "5", "--http2-prior-knowledge", "-H", "Host: svc", "-w", "\n%{http_version}", `http://127.0.0.1:${p.proxy.outbound.port}/prior`], { encoding: "utf8" });
      const lines = r.split("\n");
      expect(lines.pop()).toBe("2");
      expect((JSON.parse(lines.join("\n")) as { url: string }).url).toBe("/prior");
    } finally {
      await p.close();
      await up.close();
    }
  });
});

describe("TLS validation", () => {
  it("names the listener, the files and the reason when a certificate cannot be used", () => {
    writeFileSync(f("broken.pem"), "not a certificate");
    const { diagnostics } = loadConfigText("mesh.yaml", settings(`{address: 127.0.0.1, port: 0, engine: uws, tls: {certFile: ${f("broken.pem")}, keyFile: ${f("nope.key")}}}`));
    const errors = diagnostics.filter((d) => d.severity === "error").map((d) => `${d.line} ${d.path}: ${d.message}`);
    expect(errors).toEqual([
      expect.stringMatching(/^7 spec\.listeners\.outbound\.engine: a TLS listener is served by node:http2/),
      expect.stringMatching(/^7 spec\.listeners\.outbound\.tls: cannot use certificate .*broken\.pem with key .*nope\.key: ENOENT/),
    ]);
  });
});
