// Hostile bootstrap files. Whatever an Envoy bootstrap holds — a field deleted,
// renamed, set to a value of another type, or the file cut short — reading it
// either gives a bootstrap whose static resources serve, or errors that each
// name file:line:column; never another exception.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { defaultSettings } from "../../host/config/settings.js";
import { BootstrapError, readBootstrap } from "../../host/envoy/bootstrap.js";
import { staticBootstrapConfig } from "../../host/xds/starting-config.js";
import "../support/fast-check-seed.js";

const BOOTSTRAP = {
  admin: { address: { socket_address: { address: "127.0.0.1", port_value: 9901 } } },
  static_resources: {
    listeners: [{
      name: "ingress",
      address: { socket_address: { address: "127.0.0.1", port_value: 10000 } },
      filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix: "ingress",
        route_config: { name: "local", virtual_hosts: [{ name: "all", domains: ["*"], routes: [
          { match: { prefix: "/api" }, route: { cluster: "api", timeout: "5s", retry_policy: { retry_on: "5xx", num_retries: 2 } } },
          { match: { safe_regex: { regex: "/r/[0-9]+" } }, route: { weighted_clusters: { clusters: [{ name: "api", weight: 70 }, { name: "web", weight: 30 }] } } },
          { match: { prefix: "/" }, direct_response: { status: 404 } },
        ] }] },
        http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
      } }] }],
    }],
    clusters: ["api", "web"].map((name, i) => ({
      name,
      type: "STATIC",
      connect_timeout: "1s",
      lb_policy: "ROUND_ROBIN",
      load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 8000 + i } } } }] }] },
    })),
  },
};

function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== "object") return [at];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value as Record<string, unknown>);
  return [...(at.length > 0 ? [at] : []), ...entries.flatMap(([k, v]) => paths(v, [...at, k]))];
}

const STRANGE: unknown[] = [0, -1, 2.5, "", "x", "1.5", "5s", "-3s", true, null, {}, [], { value: 1 }, "type.googleapis.com/nothing", 70000];

type Mutation = { kind: "delete" } | { kind: "rename" } | { kind: "set"; value: unknown };

function mutate(path: (string | number)[], m: Mutation): unknown {
  const copy = structuredClone(BOOTSTRAP) as Record<string | number, unknown>;
  let parent = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (m.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (m.kind === "rename" && !Array.isArray(parent)) {
    parent[`${String(last)}_x`] = parent[last];
    delete parent[last];
  } else if (m.kind === "set") parent[last] = m.value;
  return copy;
}

const dir = mkdtempSync(join(tmpdir(), "instio-bootstrap-fuzz-"));
const file = join(dir, "envoy.yaml");

/** Reads the file; "served" or "rejected" (every error placed at a line), or throws what should never be thrown. */
function readOrReject(text: string): "served" | "rejected" {
  writeFileSync(file, text);
  try {
    staticBootstrapConfig(readBootstrap(file), defaultSettings());
    return "served";
  } catch (err) {
    if (!(err instanceof BootstrapError)) throw err;
    expect(err.diagnostics.length).toBeGreaterThan(0);
    for (const d of err.diagnostics) {
      expect(d.file).toBe(file);
      expect(d.line).toBeGreaterThanOrEqual(1);
      expect(d.message.length).toBeGreaterThan(0);
    }
    return "rejected";
  }
}

describe("an Envoy bootstrap file", () => {
  it("as written serves", () => {
    expect(readOrReject(stringify(BOOTSTRAP))).toBe("served");
  });

  it("with a field deleted, renamed or set to a strange value is served or rejected at a line, never an error of another kind", () => {
    const seen = { served: 0, rejected: 0 };
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(fc.constant<Mutation>({ kind: "delete" }), fc.constant<Mutation>({ kind: "rename" }), fc.constantFrom(...STRANGE).map((value): Mutation => ({ kind: "set", value })));
    fc.assert(
      fc.property(fc.constantFrom(...paths(BOOTSTRAP)), mutation, (path, m) => {
        seen[readOrReject(stringify(mutate(path, m)))]++;
      }),
      { numRuns: 400 },
    );
    expect(seen.served).toBeGreaterThan(20);
    expect(seen.rejected).toBeGreaterThan(20);
  });

  it("cut short anywhere is served or rejected at a line", () => {
    const text = stringify(BOOTSTRAP);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: text.length }), (n) => {
        readOrReject(text.slice(0, n));
      }),
      { numRuns: 200 },
    );
  });
});
