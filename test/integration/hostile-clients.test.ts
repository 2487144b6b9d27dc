// No client input may end the proxy process: aborted bodies, broken chunked
// framing, bogus transfer-encodings, and a fuzz of random and mutated requests
// with aborts at every byte, on every HTTP/1.1 engine. The proxy runs as a
// child process, so a crash shows as an exit, not as a test-runner error.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startChildProxy, type ChildProxy } from "../support/child-proxy.js";
import { get, HTTP1_ENGINES, serviceEntryYaml, settingsYaml } from "../support/proxy.js";
import { rawExchange, sendAndAbort, statuses } from "../support/raw-http.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

/** A valid request with a body, on a route with Istio's default retry policy (so the body is kept for replay). */
const POST = "POST /api/upload?x=1 HTTP/1.1\r\nHost: svc\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n\r\n0123456789abcdef0123456789abcdef";
const CHUNKED_POST = "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";

describe.each(HTTP1_ENGINES)("hostile clients on the %s listener", (engine) => {
  let up: Upstream;
  let proxy: ChildProxy;

  beforeAll(async () => {
    up = await startUpstream("svc");
    const dir = mkdtempSync(join(tmpdir(), "instio-hostile-"));
    writeFileSync(join(dir, "mesh.yaml"), `${settingsYaml(engine)}---\n${serviceEntryYaml("svc", [{ port: up.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - route: [{destination: {host: svc}}]
    mirror: {host: svc}
`);
    proxy = await startChildProxy(dir);
  });

  afterAll(async () => {
    await proxy.stop();
    await up.close();
  });

  async function stillServing(): Promise<void> {
    expect(proxy.child.exitCode, proxy.stderr()).toBeNull();
    const r = await get(`http://127.0.0.1:${proxy.outboundPort}`, "svc", "/api/ok");
    expect(r.status).toBe(200);
  }

  it("survives bodies cut off at every byte, with retries and a mirror keeping the body", async () => {
    for (const request of [POST, CHUNKED_POST]) {
      for (let cut = 1; cut < request.length; cut++) await sendAndAbort(proxy.outboundPort, request.slice(0, cut));
    }
    await stillServing();
  });

  it("survives broken chunked framing and bogus transfer-encodings", async () => {
    const bad = [
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nContent-Length: -1\r\n\r\n",
      "POST /api HTTP/1.1\r\nHost: svc\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ];
    for (const raw of bad) {
      const reply = await rawExchange(proxy.outboundPort, raw, 500);
      // Answered 4xx/5xx, never 2xx; uWS 20.30's lax chunk parser takes some of these as valid (README: its limits), so there only survival counts.
      if (engine !== "uws") for (const s of statuses(reply)) expect(s, `${engine}: ${JSON.stringify(raw)} -> ${reply.slice(0, 60)}`).toBeGreaterThanOrEqual(400);
    }
    await stillServing();
  });

  it("survives a fuzz of random and mutated requests, each cut at a random byte", async () => {
    const seeds = [POST, CHUNKED_POST, "GET /api HTTP/1.1\r\nHost: svc\r\n\r\n", "GET http://svc/api HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"];
    const mutated = fc
      .record({
        seed: fc.constantFrom(...seeds),
        edits: fc.array(fc.record({ at: fc.nat(), kind: fc.constantFrom("insert", "delete", "replace"), text: fc.constantFrom("\r", "\n", "\r\n", "\0", " ", ":", "\t", "chunked", "Content-Length: 7\r\n", "Transfer-Encoding: chunked\r\n", "Host: a\r\n", "\r\n\r\n", "ffffffff", "\xff", "é") }), { maxLength: 4 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
      })
      .map(({ seed, edits, cut }) => {
        let s = seed;
        for (const e of edits) {
          const at = e.at % (s.length + 1);
          s = e.kind === "insert" ? s.slice(0, at) + e.text + s.slice(at) : e.kind === "delete" ? s.slice(0, at) + s.slice(at + e.text.length) : s.slice(0, at) + e.text + s.slice(at + e.text.length);
        }
        return { bytes: Buffer.from(s, "latin1"), cut };
      });
    const random = fc.record({ bytes: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), cut: fc.option(fc.nat(), { nil: undefined }) });
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated, random), async ({ bytes, cut }) => {
        if (cut === undefined) await rawExchange(proxy.outboundPort, bytes, 200);
        else await sendAndAbort(proxy.outboundPort, bytes.subarray(0, cut % (bytes.length + 1)));
        expect(proxy.child.exitCode, proxy.stderr()).toBeNull();
      }),
      { numRuns: 150 },
    );
    await stillServing();
  });
});
