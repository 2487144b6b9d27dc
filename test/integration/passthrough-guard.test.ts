// Passthrough never reaches the proxy's own ports, however the address is
// written, and loopback destinations only when the settings allow it: the
// decision is made on the resolved address, which is where the connection goes.

import fc from "fast-check";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PassthroughGuard, unmapIPv4 } from "../../host/pipeline/passthrough-guard.js";
import { get, settingsYaml, startTestProxy, type TestProxy } from "../support/proxy.js";
import { startUpstream, type Upstream } from "../support/upstream.js";

/** Ways to write 127.0.0.1 (or another loopback or unspecified address) that getaddrinfo accepts. */
const LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]", "localhost", "127.0.0.2"];

describe("the passthrough guard", () => {
  let up: Upstream;
  let open: TestProxy; // passthrough.allowLoopback: true
  let strict: TestProxy; // the default

  beforeAll(async () => {
    up = await startUpstream("local");
    open = await startTestProxy(settingsYaml("h1"));
    strict = await startTestProxy(settingsYaml("h1").replace("  passthrough: {allowLoopback: true}   # the tests' upstreams are on loopback\n", ""));
  });
  afterAll(async () => {
    await open.close();
    await strict.close();
    await up.close();
  });

  it("refuses the proxy's own admin, agent and listener ports in every spelling, and the admin state does not change", async () => {
    const own = [open.proxy.admin.port, open.proxy.outbound.port, ...open.proxy.agentPorts.map((l) => l.port)];
    for (const host of LOOPBACK_SPELLINGS) {
      for (const port of own) {
        const r = await get(open.url, `${host}:${port}`, "/healthcheck/fail", {}, "POST");
        expect(r.status, `${host}:${port}`).toBe(502);
      }
    }
    const ready = await request(`http://127.0.0.1:${open.proxy.admin.port}/ready`);
    expect(await ready.body.text()).toBe("LIVE\n");
  });

  it("forwards to other loopback ports when allowLoopback is set, and connects to the address it checked", async () => {
    for (const host of ["127.0.0.1", "127.1", "2130706433", "localhost"]) {
      const r = await get(open.url, `${host}:${up.port}`, "/x");
      expect(r.status, host).toBe(200);
      expect(r.json().headers.host).toBe(`${host}:${up.port}`);
    }
  });

  it("refuses loopback destinations by default, and answers 503 UF for names that do not resolve", async () => {
    for (const host of ["127.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]", "localhost"]) {
      expect((await get(strict.url, `${host}:${up.port}`, "/x")).status, host).toBe(502);
    }
    const r = await get(strict.url, "no-such-host.invalid:80", "/");
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure, transport failure reason: no-such-host\.invalid: /);
    expect(up.received.length).toBeLessThan(10);
  });

  it("decides the same for every textual form of an address (property)", () => {
    const guard = new PassthroughGuard(new Set([15000]), false);
    fc.assert(
      fc.property(fc.ipV4(), fc.constantFrom(15000, 8080), (ip, port) => {
        const expected = guard.check(ip, port);
        const [a, b, c, d] = ip.split(".").map(Number) as [number, number, number, number];
        const hex = ((a << 8) | b).toString(16) + ":" + ((c << 8) | d).toString(16);
        for (const form of [`::ffff:${ip}`, `::ffff:${hex}`, `0:0:0:0:0:ffff:${ip}`]) {
          expect(unmapIPv4(form)).toBe(ip);
          expect(guard.check(form, port).ok).toBe(expected.ok);
        }
        expect(expected.ok).toBe(!(a === 127 || ip === "0.0.0.0"));
      }),
    );
  });
});
