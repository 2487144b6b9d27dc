// instio's own HTTP/1.1 listener (engine h1, the default) answers as Envoy's
// HTTP/1 codec does: pipelining in order, Envoy's header limits, 400/426/431/501
// for what it refuses with nothing sent upstream, absolute-form targets routed,
// and the request-headers and idle timeouts.

import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { rawExchange, statuses } from "../support/raw-http.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

describe("the h1 listener's codec", () => {
  let up: Upstream;
  let p: TestProxy;

  beforeAll(async () => {
    up = await startUpstream("svc");
    p = await startTestProxy(`${settingsYaml("h1", "  http: {maxHeadersCount: 100, requestHeadersTimeout: 300ms, idleTimeout: 400ms}")}---\n${serviceEntryYaml("svc", [{ port: up.port }])}`);
  });
  afterAll(async () => {
    await p.close();
    await up.close();
  });

  const port = (): number => p.proxy.outbound.port;

  /** Sends `raw` and expects `status` with nothing reaching the upstream. */
  async function refused(raw: string, status: number): Promise<string> {
    const before = up.arrived();
    const reply = await rawExchange(port(), raw);
    expect(statuses(reply), JSON.stringify(raw)).toEqual([status]);
    expect(reply).toMatch(/\r\nconnection: close\r\n/);
    expect(up.arrived()).toBe(before);
    return reply;
  }

  it("answers pipelined requests in order, each one forwarded once", async () => {
    const before = up.arrived();
    const reply = await rawExchange(port(), "GET /one HTTP/1.1\r\nHost: svc\r\n\r\nGET /two HTTP/1.1\r\nHost: svc\r\n\r\nPOST /three HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabcGET /four HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n");
    expect(statuses(reply)).toEqual([200, 200, 200, 200]);
    const urls = [...reply.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual(["/one", "/two", "/three", "/four"]);
    expect(up.arrived() - before).toBe(4);
  });

  it("forwards up to 100 headers and answers 431 beyond, as Envoy's max_headers_count", async () => {
    const headers = (n: number): string => Array.from({ length: n }, (_, i) => `x-h${i}: ${i}\r\n`).join("");
    const ok = await rawExchange(port(), `GET /many HTTP/1.1\r\nHost: svc\r\n${headers(98)}Connection: close\r\n\r\n`);
    expect(statuses(ok)).toEqual([200]);
    expect(up.received.at(-1)!.headers["x-h97"]).toBe("97");
    await refused(`GET /many HTTP/1.1\r\nHost: svc\r\n${headers(99)}Connection: close\r\n\r\n`, 431);
  });

  it("answers 431 for headers beyond 60 KiB, in one segment or trickled", async () => {
    await refused(`GET / HTTP/1.1\r\nHost: svc\r\nx-big: ${"a".repeat(61 * 1024)}\r\n\r\n`, 431);
    const before = up.arrived();
    const reply = await rawExchange(port(), ["GET / HTTP/1.1\r\nHost: svc\r\n", ...Array.from({ length: 70 }, () => `x-a: ${"b".repeat(1000)}\r\n`)]);
    expect(statuses(reply)).toEqual([431]);
    expect(up.arrived()).toBe(before);
  });

  it("answers 400 for malformed heads and ambiguous framing (RFC 9112 §6.3), with nothing sent upstream", async () => {
    for (const raw of [
      "GARBAGE\r\n\r\n",
      "GET /\r\nHost: svc\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nbad header\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nx-a : b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nx-a: b\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\nHost: svc\n\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nx-a: b\rc\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nx-a: b\0c\r\n\r\n",
      "GET /a b HTTP/1.1\r\nHost: svc\r\n\r\n",
      "GET nopath HTTP/1.1\r\nHost: svc\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: svc\r\nHost: other\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3, 3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ]) {
      await refused(raw, 400);
    }
  });

  it("answers 501 for a transfer coding it does not implement, and 426 for HTTP/1.0 (Envoy without accept_http_10)", async () => {
    await refused("POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
    const reply = await refused("GET / HTTP/1.0\r\nHost: svc\r\n\r\n", 426);
    expect(reply).toMatch(/Upgrade Required$/);
  });

  it("answers a request without Host 400 with an empty body, as Envoy's HCM", async () => {
    const reply = await refused("GET / HTTP/1.1\r\n\r\n", 400);
    expect(reply).toMatch(/content-length: 0\r\n/);
  });

  it("routes absolute-form targets by their authority, which replaces Host", async () => {
    const reply = await rawExchange(port(), "GET http://svc.default:80/abs?q=1 HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n");
    expect(statuses(reply)).toEqual([200]);
    const got = up.received.at(-1)!;
    expect(got.url).toBe("/abs?q=1");
    expect(got.headers.host).toBe("svc.default:80");
  });

  it("400 for broken chunked framing after the head went upstream, and the connection closes", async () => {
    const reply = await rawExchange(port(), "POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n");
    expect(statuses(reply)).toEqual([400]);
  });

  it("reads chunked bodies split at every byte, with trailers and extensions", async () => {
    const raw = "POST /split HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\nGET /after HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n";
    const reply = await rawExchange(port(), [...raw].map((c) => c));
    expect(statuses(reply)).toEqual([200, 200]);
    const bodies = [...reply.matchAll(/"bodyBytes":(\d+)/g)].map((m) => Number(m[1]));
    expect(bodies).toEqual([5, 0]);
  });

  it("closes a connection whose headers do not arrive within requestHeadersTimeout with 408", async () => {
    const before = up.arrived();
    const reply = await rawExchange(port(), "GET / HTTP/1.1\r\nHost: svc\r\n", 3000);
    expect(statuses(reply)).toEqual([408]);
    expect(reply).toMatch(/request header timeout$/);
    expect(up.arrived()).toBe(before);
  });

  it("closes idle keep-alive connections after idleTimeout", async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const s = connect(port(), "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: svc\r\n\r\n"));
      s.on("data", () => {});
      s.on("close", () => resolve(true));
      setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 3000);
    });
    expect(closed).toBe(true);
  });

  it("sends a response's head and a small body in one segment", async () => {
    const segments = await new Promise<number>((resolve) => {
      let n = 0;
      const s = connect(port(), "127.0.0.1", () => s.write("GET /one-write HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"));
      s.on("data", () => n++);
      s.on("close", () => resolve(n));
    });
    expect(segments).toBe(1);
  });
});
