// The shutdown sequence's two modes, with listeners that record what was done to them.

import { describe, expect, it } from "vitest";
import { defaultSettings } from "../../host/config/settings.js";
import { Logger } from "../../host/log.js";
import { Lifecycle } from "../../host/proxy/lifecycle.js";
import type { ListenerRuntime } from "../../host/listeners/listener-runtime.js";

function setup(exitOnZeroActiveConnections: boolean) {
  const runtime: ListenerRuntime = { direction: "outbound", inFlight: 2, draining: false };
  const inbound: ListenerRuntime = { direction: "inbound", inFlight: 0, draining: false };
  const stopped: string[] = [];
  const listener = (name: string) => ({ engine: "node" as const, address: "127.0.0.1", port: 1, stopAccepting: () => stopped.push(name), close: async () => {} });
  let exitCode: number | undefined;
  const settings = { ...defaultSettings(), drain: { durationMs: 50, exitOnZeroActiveConnections } };
  const lc = new Lifecycle([{ runtime, listener: listener("outbound") }, { runtime: inbound, listener: listener("inbound") }], settings, new Logger("off"), async (code) => {
    exitCode = code;
  });
  lc.markLive();
  return { runtime, inbound, stopped, lc, exitCode: () => exitCode };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Lifecycle state", () => {
  it("is PRE_INITIALIZING, and not ready, until every listener is up", () => {
    const lc = new Lifecycle([], defaultSettings(), new Logger("off"), async () => {});
    expect(lc.state).toBe("PRE_INITIALIZING");
    expect(lc.ready).toBe(false);
    lc.markLive();
    expect(lc.state).toBe("LIVE");
    expect(lc.ready).toBe(true);
    lc.failHealthCheck(true);
    expect(lc.state).toBe("DRAINING");
  });
});

describe("Lifecycle.terminate", () => {
  it("drains inbound at once, stops accepting after the drain duration, exits when nothing is in flight", async () => {
    const t = setup(false);
    const done = t.lc.terminate();
    expect(t.lc.ready).toBe(false);
    expect(t.inbound.draining).toBe(true);
    expect(t.runtime.draining).toBe(false); // outbound keeps serving normally
    await sleep(70);
    expect(t.stopped.sort()).toEqual(["inbound", "outbound"]);
    expect(t.exitCode()).toBeUndefined(); // two requests still in flight
    t.runtime.inFlight = 0;
    await done;
    expect(t.exitCode()).toBe(0);
  });

  it("exits one more drain duration after the listeners stopped, even with requests still in flight (a hung upstream)", async () => {
    const t = setup(false);
    await t.lc.terminate(); // resolves: the wait is bounded
    expect(t.runtime.inFlight).toBe(2);
    expect(t.exitCode()).toBe(0);
  });

  it("with exitOnZeroActiveConnections keeps accepting after the drain duration until nothing is in flight", async () => {
    const t = setup(true);
    const done = t.lc.terminate();
    await sleep(100);
    expect(t.stopped).toEqual([]);
    expect(t.exitCode()).toBeUndefined();
    t.runtime.inFlight = 0;
    await done;
    expect(t.exitCode()).toBe(0);
  });

  it("exits at once on a second signal", async () => {
    const t = setup(false);
    void t.lc.terminate();
    await t.lc.terminate();
    expect(t.exitCode()).toBe(0);
  });
});
