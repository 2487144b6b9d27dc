// 1 GiB through the proxy in each direction, streamed with backpressure: the
// proxy process's peak memory must stay far below the body size.

import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceEntryYaml, settingsYaml, HTTP1_ENGINES } from "../support/proxy.js";
import { startChildProxy, type ChildProxy } from "../support/child-proxy.js";
import { patternSha256, startUpstream, type Upstream } from "../support/upstream.js";

const GiB = 1024 * 1024 * 1024;
/** The proxy may hold buffers and pools, never a body: far below 1 GiB. */
const MAX_PEAK_RSS = 200 * 1024 * 1024;

async function* pattern(total: number, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  const chunk = Buffer.alloc(256 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
  for (let sent = 0; sent < total; sent += chunk.length) {
    const c = total - sent >= chunk.length ? chunk : chunk.subarray(0, total - sent);
    hash.update(c);
    yield c;
  }
}

describe.each(HTTP1_ENGINES)("streaming bodies on the %s listener", (engine) => {
  let up: Upstream;
  let proxy: ChildProxy;
  let url: string;

  beforeAll(async () => {
    up = await startUpstream("big");
    const dir = mkdtempSync(join(tmpdir(), "instio-stream-"));
    writeFileSync(join(dir, "mesh.yaml"), `${settingsYaml(engine)}---\n${serviceEntryYaml("big", [{ port: up.port }])}`);
    proxy = await startChildProxy(dir);
    url = `http://127.0.0.1:${proxy.outboundPort}`;
  });
  afterAll(async () => {
    await proxy.stop();
    await up.close();
  });

  it("uploads 1 GiB (chunked) intact with bounded proxy memory", async () => {
    const hash = createHash("sha256");
    const res = await request(`${url}/upload`, { method: "POST", headers: { host: "big" }, body: Readable.from(pattern(GiB, hash)) });
    const got = (await res.body.json()) as { bodyBytes: number; bodySha256: string };
    expect(res.statusCode).toBe(200);
    expect(got.bodyBytes).toBe(GiB);
    expect(got.bodySha256).toBe(hash.digest("hex"));
    console.log(`${engine}: proxy peak RSS after a 1 GiB upload: ${(proxy.peakRss() / 2 ** 20).toFixed(0)} MiB`);
    expect(proxy.peakRss()).toBeLessThan(MAX_PEAK_RSS);
  }, 120_000);

  // A failure names how far the download got and what the proxy logged. (On uWS this was cut about once
  // in ten full runs: uWS's 10 s HTTP timeout, now kept off while a response waits for a slow reader;
  // see the test of a reader that stops reading, below.)
  it("downloads 1 GiB with content-length, and 64 MiB chunked, with bounded proxy memory", { timeout: 120_000 }, async () => {
    for (const [path, size, length] of [[`/download/${GiB}`, GiB, true], [`/chunked/${64 * 1024 * 1024}`, 64 * 1024 * 1024, false]] as const) {
      const res = await request(`${url}${path}`, { headers: { host: "big" } });
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-length"]).toBe(length ? String(size) : undefined);
      let bytes = 0;
      try {
        for await (const c of res.body) bytes += (c as Buffer).length;
      } catch (err) {
        throw new Error(`${path}: ${(err as Error).message} after ${bytes} bytes; proxy log:\n${proxy.stderr()}`);
      }
      expect(bytes).toBe(size);
    }
    console.log(`${engine}: proxy peak RSS after the downloads: ${(proxy.peakRss() / 2 ** 20).toFixed(0)} MiB`);
    expect(proxy.peakRss()).toBeLessThan(MAX_PEAK_RSS);
  });

  it("delivers every byte to slow readers, in order, whether the length is known or not", async () => {
    const size = 16 * 1024 * 1024 + 123;
    // Concurrently: while one response is held back, the others' reads go on (into h1-upstream's shared buffer).
    const paths = [`/download/${size}`, `/chunked/${size}`, `/download/${size - 7}`, "/download/0"];
    await Promise.all(
      paths.map(async (path) => {
        const expected = Number(path.split("/")[2]);
        const res = await request(`${url}${path}`, { headers: { host: "big" } });
        const hash = createHash("sha256");
        let bytes = 0;
        let n = 0;
        for await (const c of res.body) {
          hash.update(c as Buffer);
          bytes += (c as Buffer).length;
          // Stall now and then, so the proxy meets backpressure and must hold chunks back.
          if (++n % 16 === 0) await new Promise((r) => setTimeout(r, 2));
        }
        expect(bytes).toBe(expected);
        expect(hash.digest("hex")).toBe(patternSha256(expected));
      }),
    );
  }, 60_000);
});

describe("a reader that stops reading for longer than uWS's 10 s HTTP timeout", () => {
  it("still gets every byte, on every listener (as from Envoy: only stream_idle_timeout, 5 min, ends it)", { timeout: 60_000 }, async () => {
    const up = await startUpstream("big");
    const size = 64 * 1024 * 1024;
    try {
      await Promise.all(
        HTTP1_ENGINES.map(async (engine) => {
          const dir = mkdtempSync(join(tmpdir(), "instio-pause-"));
          writeFileSync(join(dir, "mesh.yaml"), `${settingsYaml(engine)}---\n${serviceEntryYaml("big", [{ port: up.port }])}`);
          const proxy = await startChildProxy(dir);
          try {
            // A sized response (uWS: tryEnd) and a chunked one (uWS: write) wait differently for the socket.
            await Promise.all(
              [`/download/${size}`, `/chunked/${size}`].map(async (path) => {
                const res = await request(`http://127.0.0.1:${proxy.outboundPort}${path}`, { headers: { host: "big" } });
                const hash = createHash("sha256");
                let bytes = 0;
                let paused = false;
                for await (const c of res.body) {
                  hash.update(c as Buffer);
                  bytes += (c as Buffer).length;
                  if (!paused && bytes > 4 * 1024 * 1024) {
                    paused = true;
                    await new Promise((r) => setTimeout(r, 12_000)); // the socket buffers fill; the proxy holds the upstream back
                  }
                }
                expect([engine, path, bytes, hash.digest("hex")]).toEqual([engine, path, size, patternSha256(size)]);
              }),
            );
          } finally {
            await proxy.stop();
          }
        }),
      );
    } finally {
      await up.close();
    }
  });
});
