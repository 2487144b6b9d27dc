// A fake upstream on a real socket that reports what it received.

import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
}

export interface Upstream {
  name: string;
  port: number;
  received: Received[];
  /** Requests whose head arrived, complete or not (a body that never ends is never "received"). */
  arrived: () => number;
  /** Requests to /hold/KEY waiting for release(KEY). */
  held(key: string): number;
  /** Answers every request held at /hold/KEY (200) and lets later ones through at once. */
  release(key: string): void;
  close(): Promise<void>;
}

/**
 * Answers every request with JSON {name, method, url, headers, bodyBytes, bodySha256},
 * having read the body in a streaming way (never whole). Special paths:
 *   /download/N  streams N bytes of a repeating pattern with content-length
 *   /chunked/N   the same without content-length (chunked)
 *   /status/N    answers with status N
 *   /delay/N     answers after N milliseconds
 *   /metrics     an application's own Prometheus metrics (app_custom_total 7)
 *   /flaky/P     answers 503 with probability P percent, else 200
 *   .../hold/KEY answers when the test calls release(KEY): time under the test's control
 */
export async function startUpstream(name: string): Promise<Upstream> {
  const received: Received[] = [];
  let arrived = 0;
  const holding = new Map<string, (() => void)[]>();
  const released = new Set<string>();
  const server: Server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    arrived++;
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on("end", () => {
      const r: Received = { method: req.method!, url: req.url!, headers: req.headers, bodyBytes: bytes, bodySha256: hash.digest("hex") };
      received.push(r);
      if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end("# HELP app_custom_total An application counter.\n# TYPE app_custom_total counter\napp_custom_total 7\n");
        return;
      }
      const download = /^\/(download|chunked)\/(\d+)/.exec(req.url!);
      if (download) {
        streamPattern(res, Number(download[2]), download[1] === "download");
        return;
      }
      const flaky = /^\/flaky\/(\d+)/.exec(req.url!);
      const status = flaky ? (Math.random() * 100 < Number(flaky[1]) ? ["", "503"] : null) : /^\/status\/(\d+)/.exec(req.url!);
      const delay = /^\/delay\/(\d+)/.exec(req.url!);
      const body = JSON.stringify({ name, ...r }) + "\n";
      const reply = (): void => {
        res.writeHead(status ? Number(status[1]) : 200, { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-upstream": name, connection: "keep-alive", "keep-alive": "timeout=30" });
        res.end(req.method === "HEAD" ? undefined : body);
      };
      const hold = /\/hold\/([^/?]+)/.exec(req.url!);
      if (hold && !released.has(hold[1]!)) {
        const list = holding.get(hold[1]!) ?? [];
        list.push(reply);
        holding.set(hold[1]!, list);
        res.on("close", () => list.splice(list.indexOf(reply) >>> 0, 1)); // the proxy gave up on it
      } else if (delay) setTimeout(reply, Number(delay[1]));
      else reply();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    arrived: () => arrived,
    held: (key) => holding.get(key)?.length ?? 0,
    release: (key) => {
      released.add(key);
      for (const reply of holding.get(key)?.splice(0) ?? []) reply();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const PATTERN = Buffer.alloc(64 * 1024, "0123456789abcdef");

/**
 * Block `i` of the /download and /chunked bodies: the pattern with the block's
 * number in its first four bytes, so that bytes delivered twice, late or from
 * another block (a reused buffer) change the body's hash.
 */
function patternBlock(i: number, length: number): Buffer {
  const block = Buffer.from(PATTERN.subarray(0, length));
  if (length >= 4) block.writeUInt32BE(i, 0);
  return block;
}

/** The SHA-256 of the first `total` bytes the upstream streams at /download/N and /chunked/N. */
export function patternSha256(total: number): string {
  const hash = createHash("sha256");
  for (let i = 0, sent = 0; sent < total; i++, sent += PATTERN.length) hash.update(patternBlock(i, Math.min(PATTERN.length, total - sent)));
  return hash.digest("hex");
}

function streamPattern(res: import("node:http").ServerResponse, total: number, withLength: boolean): void {
  res.writeHead(200, withLength ? { "content-length": total, "content-type": "application/octet-stream" } : { "content-type": "application/octet-stream" });
  let sent = 0;
  let block = 0;
  const pump = (): void => {
    while (sent < total) {
      const n = Math.min(PATTERN.length, total - sent);
      sent += n;
      if (!res.write(patternBlock(block++, n))) {
        res.once("drain", pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

/**
 * A port on loopback where nothing listens. Port 1 (tcpmux) is outside the
 * ephemeral range, so no other test's server can be handed it meanwhile, as a
 * port freed after binding 0 could be, while test files run in parallel.
 */
export async function closedPort(): Promise<number> {
  return 1;
}

/** An upstream that answers every request with `status` (changeable), counting them. */
export async function failingUpstream(initial: number): Promise<{ port: number; hits: () => number; setStatus: (s: number) => void; close: () => Promise<void> }> {
  let hits = 0;
  let status = initial;
  const server: Server = createServer((req, res) => {
    if (req.headers["user-agent"] !== "instio-health-check") hits++;
    req.resume();
    req.on("end", () => res.writeHead(status, { "content-length": "4", "x-upstream": "bad" }).end("fail"));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as { port: number }).port, hits: () => hits, setStatus: (s) => (status = s), close: () => new Promise((r) => server.close(() => r())) };
}

