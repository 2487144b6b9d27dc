// The HTTP/1.1 upstream client against raw TCP servers that write responses in
// awkward ways: split at every byte, chunked with trailers, read-until-close,
// malformed heads, early answers, and the upstream's keep-alive hint.

import { afterEach, describe, expect, it } from "vitest";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { H1Upstream } from "../../host/upstream/h1-upstream.js";

interface Outcome {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  trailers: Record<string, string | string[] | undefined>;
  error: (Error & { code?: string }) | undefined;
}

/** Sends one request and collects what the handler callbacks report. */
function send(client: H1Upstream, port: number, opts: Partial<Dispatcher.DispatchOptions> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, headers: {}, body: "", trailers: {}, error: undefined };
    client.dispatch(
      { origin: `http://127.0.0.1:${port}`, method: "GET", path: "/", headers: ["host", "test"], ...opts },
      {
        onResponseStart(_c, status, headers) {
          out.status = status;
          out.headers = headers;
        },
        onResponseData(_c, chunk) {
          out.body += chunk.toString();
        },
        onResponseEnd(_c, trailers) {
          out.trailers = trailers;
          resolve(out);
        },
        onResponseError(_c, err) {
          out.error = err;
          resolve(out);
        },
      },
    );
  });
}

const servers: Server[] = [];
const clients: H1Upstream[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A raw server: `answer` gets each request head as text and the socket to write to. */
async function rawServer(answer: (head: string, socket: Socket, count: number) => void): Promise<{ port: number; connections: () => number; heads: string[] }> {
  let connections = 0;
  const heads: string[] = [];
  const server = createServer((socket) => {
    connections++;
    let buf = "";
    socket.on("data", (d) => {
      buf += d.toString("latin1");
      let end: number;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        answer(head, socket, heads.length);
      }
    });
    socket.on("error", () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, connections: () => connections, heads };
}

function client(overrides: Partial<ConstructorParameters<typeof H1Upstream>[0]> = {}): H1Upstream {
  const c = new H1Upstream({ connectTimeoutMs: 1000, maxConnections: Infinity, maxRequestsPerConnection: 0, maxConnectionDurationMs: 0, idleTimeoutMs: 60_000, ...overrides });
  clients.push(c);
  return c;
}

/** Writes `text` one byte per write with a pause between, so that every boundary is split. */
async function dribble(socket: Socket, text: string): Promise<void> {
  for (const ch of text) {
    socket.write(ch, "latin1");
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe("HTTP/1.1 upstream client", () => {
  it("parses a chunked response with trailers split at every byte, then reuses the connection", async () => {
    const response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nGrpc-Status: 0\r\nx-t: y\r\n\r\n";
    const srv = await rawServer((_h, s, n) => void (n === 1 ? dribble(s, response) : s.write("HTTP/1.1 204 No Content\r\n\r\n")));
    const c = client();
    const r = await send(c, srv.port);
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body).toBe("hello, world");
    expect(r.headers["content-type"]).toBe("text/plain");
    expect(r.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(r.trailers).toEqual({ "grpc-status": "0", "x-t": "y" });
    const again = await send(c, srv.port);
    expect(again.status).toBe(204);
    expect(srv.connections()).toBe(1);
  });

  it("reads a body without length until the upstream closes, and does not reuse that connection", async () => {
    const srv = await rawServer((_h, s) => s.end("HTTP/1.1 200 OK\r\n\r\nall of it"));
    const c = client();
    expect((await send(c, srv.port)).body).toBe("all of it");
    expect((await send(c, srv.port)).body).toBe("all of it");
    expect(srv.connections()).toBe(2);
  });

  it("skips interim 1xx responses and knows HEAD responses have no body", async () => {
    const srv = await rawServer((h, s) => s.write(h.startsWith("HEAD") ? "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n" : "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"));
    const c = client();
    const get = await send(c, srv.port);
    expect([get.status, get.body]).toEqual([201, "ok"]);
    const head = await send(c, srv.port, { method: "HEAD" });
    expect([head.status, head.body, head.headers["content-length"]]).toEqual([200, "", "42"]);
    expect(srv.connections()).toBe(1);
  });

  it("fails a response whose head smuggles a bare LF, and one that ends before its content-length", async () => {
    const srv = await rawServer((h, s) => (h.includes("/short") ? s.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") : s.write("HTTP/1.1 200 OK\r\nx: a\nInjected: yes\r\nContent-Length: 0\r\n\r\n")));
    const c = client();
    const bad = await send(c, srv.port);
    expect(bad.error?.code).toBe("HPE_INVALID_CONSTANT");
    const short = await send(c, srv.port, { path: "/short" });
    expect(short.error?.code).toBe("UND_ERR_SOCKET");
  });

  it("refuses a response framed both by content-length and chunked, and trailers with a bare LF", async () => {
    const srv = await rawServer((h, s) =>
      s.write(
        h.includes("/both")
          ? "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
          : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx: 1\nInjected: yes\r\n\r\n",
      ),
    );
    const c = client();
    expect((await send(c, srv.port, { path: "/both" })).error?.code).toBe("HPE_UNEXPECTED_CONTENT_LENGTH");
    expect((await send(c, srv.port, { path: "/trailers" })).error?.code).toBe("HPE_INVALID_CONSTANT");
  });

  it("sends a streamed body chunked, and announces an empty POST with content-length: 0", async () => {
    const wire: Buffer[] = [];
    const server = createServer((s) => {
      s.on("data", (d: Buffer) => {
        wire.push(d);
        if (d.toString().endsWith("\r\n\r\n")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const c = client();
    expect((await send(c, port, { method: "POST", body: Readable.from([Buffer.from("abc"), Buffer.from("de")]) })).status).toBe(200);
    expect((await send(c, port, { method: "POST" })).status).toBe(200);
    expect(Buffer.concat(wire).toString()).toBe(
      "POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" + "POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n",
    );
  });

  it("stops reusing a connection before the upstream's Keep-Alive timeout", async () => {
    const srv = await rawServer((_h, s) => s.write("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 0\r\n\r\n"));
    const c = client();
    await send(c, srv.port);
    await send(c, srv.port); // within the hint's margin (1 s - 1 s): a new connection
    expect(srv.connections()).toBe(2);
  });

  it("reports a refused connection as ECONNREFUSED and a TLS handshake that never answers as a connect timeout", async () => {
    const closed = await rawServer(() => {});
    const port = closed.port;
    await new Promise((r) => servers.pop()!.close(r));
    expect((await send(client(), port)).error?.code).toBe("ECONNREFUSED");
    const silent = await rawServer(() => {});
    const r = await send(client({ connectTimeoutMs: 100, tls: {} }), 0, { origin: `https://127.0.0.1:${silent.port}` });
    expect(r.error?.code).toBe("UND_ERR_CONNECT_TIMEOUT");
  });

  it("queues requests over maxConnections and serves them in order on the same connection", async () => {
    const srv = await rawServer((_h, s, n) => setTimeout(() => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${n}`), 5));
    const c = client({ maxConnections: 1 });
    const bodies = await Promise.all([send(c, srv.port), send(c, srv.port), send(c, srv.port)]);
    expect(bodies.map((b) => b.body)).toEqual(["1", "2", "3"]);
    expect(srv.connections()).toBe(1);
  });

  it("rejects an origin or a path it cannot send", () => {
    const c = client();
    const handler = { onResponseError() {} } as Dispatcher.DispatchHandler;
    expect(() => c.dispatch({ origin: "http://a b:80", method: "GET", path: "/", headers: [] }, handler)).toThrow(/invalid upstream origin/);
    expect(() => c.dispatch({ origin: "http://127.0.0.1:80", method: "GET", path: "/a b", headers: [] }, handler)).toThrow(/invalid request path/);
  });
});
