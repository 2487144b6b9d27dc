// Every config producer's one path: build → validate → swap, or keep serving.

import { describe, expect, it } from "vitest";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { Logger } from "../../host/log.js";
import { ConfigUpdates } from "../../host/proxy/config-updates.js";
import { SnapshotHolder } from "../../host/proxy/snapshot.js";
import { Telemetry } from "../../host/telemetry/telemetry.js";

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
`;

function setup() {
  const config = requireConfig(loadConfigText("mesh.yaml", SE));
  const lines: string[] = [];
  const box: { holder?: SnapshotHolder } = {};
  const telemetry = new Telemetry(config.settings, () => box.holder!.current, []);
  const holder = (box.holder = new SnapshotHolder(config, (config) => telemetry.statsFor(config)));
  const updates = new ConfigUpdates(holder, telemetry, new Logger("info", (l) => lines.push(l)));
  return { config, holder, updates, lines, telemetry };
}

describe("ConfigUpdates", () => {
  it("applies a good build, and counts it", () => {
    const t = setup();
    const s = t.updates.apply("DNS addresses changed", () => t.config);
    expect(s?.version).toBe(2);
    expect(t.holder.current).toBe(s);
    expect(t.updates.stats).toEqual({ applied: 1, rejected: 0 });
    expect(t.lines.at(-1)).toMatch(/^.*config: version 2 applied \(DNS addresses changed: /);
  });

  it("keeps serving when a build throws or has errors, logs where the update came from, and never throws", () => {
    const t = setup();
    const serving = t.holder.current;
    expect(t.updates.apply("DNS addresses changed", () => {
      throw new Error("boom");
    })).toBeUndefined();
    const broken = { ...t.config, diagnostics: [{ file: "mesh.yaml", line: 3, column: 1, path: "spec", message: "bad", severity: "error" as const }] };
    expect(t.updates.apply("file reload", () => broken)).toBeUndefined();
    expect(t.holder.current).toBe(serving);
    expect(t.updates.stats).toEqual({ applied: 0, rejected: 2 });
    const log = t.lines.join("\n");
    expect(log).toMatch(/config \(DNS addresses changed\): rejected, internal error while building it: Error: boom/);
    expect(log).toMatch(/config \(file reload\): mesh\.yaml:3:1: error: spec: bad/);
    expect(log).toMatch(/config \(file reload\): rejected; still serving version 1/);
  });
});
