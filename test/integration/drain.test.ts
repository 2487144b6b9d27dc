// SIGTERM under continuous load: readiness fails at once, no request in flight
// fails, outbound keeps serving for the drain duration, then the process exits
// once nothing is in flight.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { describe, expect, it } from "vitest";
import { startChildProxy } from "../support/child-proxy.js";
import { serviceEntryYaml, settingsYaml, HTTP1_ENGINES } from "../support/proxy.js";
import { startUpstream } from "../support/upstream.js";

const DRAIN_MS = 1000;

/** How long before the end of the drain a request may start and still race the listener's close (see below). */
const ACCEPT_RACE_MS = 250;

interface Outcome {
  startedAt: number;
  ok: boolean;
  error?: string;
}

describe.each(HTTP1_ENGINES)("graceful drain on the %s listener", (engine) => {
  it("finishes every request in flight at SIGTERM and exits 0 after the drain duration", async () => {
    const up = await startUpstream("slow");
    const app = await startUpstream("app");
    const dir = mkdtempSync(join(tmpdir(), "instio-drain-"));
    writeFileSync(join(dir, "mesh.yaml"), `${settingsYaml(engine, `  drain: {duration: ${DRAIN_MS}ms}
  accessLog: {path: /dev/stdout, format: TEXT}
  listeners:
    outbound: {address: 127.0.0.1, port: 0, engine: ${engine}}
    inbound: {address: 127.0.0.1, port: 0, engine: ${engine}, appPort: ${app.port}}`).replace(/  listeners:\n    outbound: \{address: 127.0.0.1, port: 0, engine: \w+\}\n/, "")}---
${serviceEntryYaml("slow", [{ port: up.port }])}`);
    const proxy = await startChildProxy(dir);
    let stdout = "";
    proxy.child.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => proxy.child.once("exit", (code) => resolve({ code, at: Date.now() })));
    const url = `http://127.0.0.1:${proxy.outboundPort}`;
    const agent = new Agent({ connections: 8 });
    const outcomes: Outcome[] = [];
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        const startedAt = Date.now();
        try {
          const res = await request(`${url}/delay/150`, { headers: { host: "slow" }, dispatcher: agent });
          await res.body.text();
          outcomes.push({ startedAt, ok: res.statusCode === 200, error: res.statusCode === 200 ? undefined : String(res.statusCode) });
        } catch (err) {
          outcomes.push({ startedAt, ok: false, error: (err as Error).message });
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await new Promise((r) => setTimeout(r, 600));

    const sigtermAt = Date.now();
    proxy.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 50));
    const ready = await request(`http://127.0.0.1:${proxy.adminPort}/ready`);
    expect(ready.statusCode).toBe(503);
    expect(await ready.body.text()).toBe("DRAINING\n");

    const { code, at } = await exited;
    running = false;
    await Promise.all(workers);
    await agent.close();
    await up.close();
    await app.close();

    expect(code).toBe(0);
    expect(at - sigtermAt).toBeGreaterThanOrEqual(DRAIN_MS);
    // It exited because nothing was left in flight, not because the second drain duration cut requests off; a
    // proxy that hung instead fails on the test's timeout. No wall-clock upper bound: order, not speed.
    expect(proxy.stderr()).toMatch(/shutdown: no requests in flight, exiting/);
    expect(proxy.stderr()).not.toMatch(/still in flight after the drain/);
    // Everything sent before the listeners stop accepting must succeed, including requests in flight then. A request
    // started in the last moments may still be opening its connection (the one before it ended with Connection:
    // close, as responses during the drain do) when the listener closes: that one is refused, rightly, so the
    // window ends a little before.
    const beforeOrDuringDrain = outcomes.filter((o) => o.startedAt < sigtermAt + DRAIN_MS - ACCEPT_RACE_MS);
    expect(beforeOrDuringDrain.filter((o) => o.startedAt < sigtermAt).length).toBeGreaterThan(10);
    expect(beforeOrDuringDrain.filter((o) => !o.ok)).toEqual([]);
    // Istio's default text access log, one line per request.
    expect(stdout.split("\n")[0]).toMatch(/^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "GET \/delay\/150 HTTP\/1\.1" 200 - via_upstream - "-" 0 \d+ \d+ \d+ "127\.0\.0\.1" "-" "[0-9a-f-]{36}" "slow" "127\.0\.0\.1:\d+" outbound\|80\|\|slow\.default\.svc\.cluster\.local - 127\.0\.0\.1:\d+ 127\.0\.0\.1 - default$/);
  }, 30_000);
});
