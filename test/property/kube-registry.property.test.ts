// The Kubernetes registry reader under hostile and random input: valid objects
// with any field replaced by any value never throw, and every problem is a
// diagnostic with file:line and the field's path; random valid Services with
// their EndpointSlices give exactly the ready endpoints, on the slice's port.

import fc from "fast-check";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { DiagnosticSink, parseSource } from "../../host/config/source.js";
import { meshFromDocuments } from "../../host/control-plane/mesh.js";

const SERVICE = { apiVersion: "v1", kind: "Service", metadata: { name: "echo", namespace: "default", labels: { app: "echo" } }, spec: { clusterIP: "10.96.0.10", ports: [{ name: "http", port: 80, targetPort: 8080, appProtocol: "http" }] } };
const SLICE = { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: "echo-abc", namespace: "default", labels: { "kubernetes.io/service-name": "echo" } }, addressType: "IPv4", ports: [{ name: "http", port: 8080 }], endpoints: [{ addresses: ["10.0.0.1"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "echo-1", namespace: "default" } }] };
const POD = { apiVersion: "v1", kind: "Pod", metadata: { name: "echo-1", namespace: "default", labels: { app: "echo", version: "v1" } }, spec: { serviceAccountName: "echo" }, status: { podIP: "10.0.0.1", podIPs: [{ ip: "10.0.0.1" }] } };
const NAMESPACE = { apiVersion: "v1", kind: "Namespace", metadata: { name: "default", labels: { "istio-injection": "enabled" } } };

/** Every path into a JSON value (objects and arrays), the value's own path first. */
function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, Array.isArray(value) ? Number(k) : k]));
  return out;
}

function replaced(value: unknown, path: (string | number)[], by: unknown): unknown {
  if (path.length === 0) return by;
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<string | number, unknown>;
  copy[path[0]!] = replaced(copy[path[0]!], path.slice(1), by);
  return copy;
}

const mutated = (base: object) =>
  fc.tuple(fc.constantFrom(...paths(base).slice(1)), fc.oneof(fc.anything(), fc.constant(null), fc.integer(), fc.string(), fc.array(fc.anything(), { maxLength: 3 })))
    .map(([path, by]) => replaced(base, path, by));

function load(objects: unknown[]) {
  const sink = new DiagnosticSink();
  const docs = parseSource("kube.yaml", objects.map((o) => stringify(o)).join("---\n"), sink);
  return meshFromDocuments(docs, sink);
}

describe("Kubernetes registry reader (property)", () => {
  it("never throws on objects with any field replaced, and locates every problem", () => {
    fc.assert(fc.property(fc.array(fc.oneof(mutated(SERVICE), mutated(SLICE), mutated(POD), mutated(NAMESPACE), fc.constant(SERVICE), fc.constant(SLICE)), { minLength: 1, maxLength: 6 }), (objects) => {
      const result = load(objects);
      for (const d of result.diagnostics) {
        expect(d.file).toBe("kube.yaml");
        expect(d.line).toBeGreaterThanOrEqual(1);
        expect(d.message.length).toBeGreaterThan(0);
      }
      if (result.snapshot) expect(result.diagnostics.every((d) => d.severity === "warning")).toBe(true);
    }), { numRuns: 400 });
  });

  it("registers exactly the ready endpoints of a service's slices, on the slice's port, with their pods' labels", () => {
    const endpoint = fc.record({ ready: fc.option(fc.boolean(), { nil: undefined }), version: fc.constantFrom("v1", "v2") });
    fc.assert(fc.property(fc.array(endpoint, { maxLength: 8 }), fc.integer({ min: 1024, max: 65535 }), (eps, targetPort) => {
      const objects: unknown[] = [SERVICE];
      const slice = { ...SLICE, ports: [{ name: "http", port: targetPort }], endpoints: eps.map((e, i) => ({ addresses: [`10.0.1.${i + 1}`], conditions: e.ready === undefined ? {} : { ready: e.ready }, targetRef: { kind: "Pod", name: `echo-${i}`, namespace: "default" } })) };
      objects.push(slice);
      eps.forEach((e, i) => objects.push({ ...POD, metadata: { ...POD.metadata, name: `echo-${i}`, labels: { app: "echo", version: e.version } }, status: { podIP: `10.0.1.${i + 1}` } }));
      const result = load(objects);
      expect(result.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      const service = result.snapshot!.model.services.find((s) => s.hosts.includes("echo.default.svc.cluster.local"))!;
      // Unset `ready` counts as ready (Kubernetes' reading).
      const expected = eps.flatMap((e, i) => (e.ready === false ? [] : [{ address: `10.0.1.${i + 1}`, version: e.version }]));
      expect(service.endpoints.map((ep) => ({ address: ep.address, version: ep.labels.version }))).toEqual(expected);
      for (const ep of service.endpoints) expect(Object.values(ep.ports)).toEqual([targetPort]);
    }), { numRuns: 200 });
  });
});
