// The Proxy-Wasm host's parts on their own: the map encoding (spec example and
// properties over random input), WasmPlugin validation and ordering, the
// memory cap, and the VM against hand-written modules of ABI 0.2.0 and 0.1.0
// (no SDK: the call sequence as the ABI documents it).

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import binaryen from "binaryen";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodePairs, encodePairs } from "../../host/proxy-wasm/abi.js";
import { instrument, limitMemory } from "../../host/proxy-wasm/instrument.js";
import { SharedState } from "../../host/proxy-wasm/shared-state.js";
import { PluginVm } from "../../host/proxy-wasm/vm.js";
import { TestStream, testEnvironment } from "../support/proxy-wasm-host.js";
import { loadConfigText } from "../../host/config/load.js";
import { formatDiagnostic } from "../../host/config/diagnostics.js";
import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import type { Logger } from "../../host/log.js";
import { WasmPlugin } from "../../host/proxy-wasm/plugin.js";
import { PluginMetrics } from "../../host/proxy-wasm/plugin-metrics.js";
import { WasmStage, type WasmExchange } from "../../host/pipeline/wasm-stage.js";

describe("the ABI's map encoding", () => {
  it("encodes the spec's example byte for byte", () => {
    const bytes = encodePairs(["a", "1", "b", "22"]);
    expect(bytes.toString("hex")).toBe("02000000" + "01000000" + "01000000" + "01000000" + "02000000" + "6100" + "3100" + "6200" + "323200");
    expect(decodePairs(bytes)).toEqual(["a", "1", "b", "22"]);
  });

  it("decodes the empty forms: size 0, one NUL, a count of 0", () => {
    expect(decodePairs(new Uint8Array(0))).toEqual([]);
    expect(decodePairs(Uint8Array.of(0))).toEqual([]);
    expect(decodePairs(new Uint8Array(4))).toEqual([]);
  });

  it("round-trips any header list", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 40 }), (pairs) => {
        const flat = pairs.flat().map((s) => s.replace(/\0/g, ""));
        expect(decodePairs(encodePairs(flat))).toEqual(flat);
      }),
    );
  });

  it("rejects malformed input without throwing: truncated, missing NULs, trailing bytes, lying counts", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const out = decodePairs(bytes);
        if (out !== undefined) expect(out.length % 2).toBe(0);
      }),
    );
    const good = encodePairs(["k", "v"]);
    expect(decodePairs(good.subarray(0, good.length - 1))).toBeUndefined();
    expect(decodePairs(Buffer.concat([good, Buffer.of(0)]))).toBeUndefined();
    const noNul = Buffer.from(good);
    noNul[noNul.length - 1] = 0x41;
    expect(decodePairs(noNul)).toBeUndefined();
    const lying = Buffer.from(good);
    lying.writeUInt32LE(1000, 0);
    expect(decodePairs(lying)).toBeUndefined();
  });
});

describe("WasmPlugin validation", () => {
  const dir = mkdtempSync(join(tmpdir(), "instio-wasm-"));
  const module = join(dir, "m.wasm");
  const bytes = binaryen.parseText(`(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result i32) (i32.const 1024)))`).emitBinary();
  writeFileSync(module, bytes);
  const sha = createHash("sha256").update(bytes).digest("hex");
  const plugin = (name: string, spec: string): string => `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: default}
spec:
${spec}`;
  const errors = (yaml: string): string[] => loadConfigText("mesh.yaml", yaml).diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic);

  it("refuses what cannot run here, each at its line: registries, a wrong digest, a file that is not Wasm, NETWORK plugins", () => {
    expect(errors(plugin("a", "  url: oci://ghcr.io/x/y:1\n"))[0]).toMatch(/^mesh\.yaml:5:.*oci:\/\/ modules are not supported/);
    expect(errors(plugin("a", "  url: ghcr.io/x/y:1\n"))[0]).toMatch(/oci:\/\/ \(the default\) modules are not supported/);
    expect(errors(plugin("a", `  url: file://${module}\n  sha256: "${"0".repeat(63)}1"\n`))[0]).toMatch(/^mesh\.yaml:6:.*has sha256 [0-9a-f]{64}, not 0{63}1/);
    const notWasm = join(dir, "x.wasm");
    writeFileSync(notWasm, "not wasm");
    expect(errors(plugin("a", `  url: file://${notWasm}\n`))[0]).toMatch(/is not a valid WebAssembly module/);
    expect(errors(plugin("a", `  url: file://${dir}/missing.wasm\n`))[0]).toMatch(/cannot load the module: .*ENOENT/);
    expect(errors(plugin("a", `  url: file://${module}\n  type: NETWORK\n`))[0]).toMatch(/not supported yet: NETWORK/);
    expect(errors(plugin("a", `  url: file://${module}\n  sha256: ${sha}\n  phase: AUTHN\n`))).toEqual([]);
  });

  it("orders plugins as istiod: phase, then priority descending, an unset priority after every set one (even negative)", () => {
    const yaml = [
      plugin("unspecified", `  url: file://${module}\n  priority: 100\n`),
      plugin("stats", `  url: file://${module}\n  phase: STATS\n`),
      plugin("authz-unset", `  url: file://${module}\n  phase: AUTHZ\n`),
      plugin("authz-negative", `  url: file://${module}\n  phase: AUTHZ\n  priority: -5\n`),
      plugin("authz-high", `  url: file://${module}\n  phase: AUTHZ\n  priority: 10\n`),
      plugin("authn", `  url: file://${module}\n  phase: AUTHN\n`),
      plugin("other-namespace", `  url: file://${module}\n`).replace("namespace: default", "namespace: elsewhere"),
      plugin("not-me", `  url: file://${module}\n  selector: {matchLabels: {app: other}}\n`),
    ].join("---\n");
    const result = loadConfigText("mesh.yaml", yaml);
    expect(result.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(result.config!.wasmPlugins.map((p) => p.name)).toEqual(["default.authn", "default.authz-high", "default.authz-negative", "default.authz-unset", "default.stats", "default.unspecified"]);
  });
});

describe("module budgets", () => {
  const wat = (memory: string): Uint8Array => binaryen.parseText(`(module (memory (export "memory") ${memory}) (data (i32.const 16) "kept") (func (export "f") (result i32) (i32.load8_u (i32.const 16))))`).emitBinary();

  it("caps the memory's maximum, keeping the data segments", () => {
    for (const memory of ["1", "1 100000"]) {
      const capped = limitMemory(wat(memory), 4);
      const instance = new WebAssembly.Instance(new WebAssembly.Module(capped as Uint8Array<ArrayBuffer>));
      expect((instance.exports.f as () => number)()).toBe("k".charCodeAt(0));
      const mem = instance.exports.memory as WebAssembly.Memory;
      expect(mem.grow(3)).toBe(1);
      expect(() => mem.grow(1)).toThrow();
    }
    expect(() => limitMemory(wat("10"), 4)).toThrow(/initial memory \(640 KiB\) is over the memory limit \(256 KiB\)/);
  });

  it("instruments loops so that the host can stop one", async () => {
    const loop = binaryen.parseText(`(module (memory (export "memory") 1) (func (export "spin") (loop $l (br $l))))`).emitBinary();
    const bytes = await instrument(loop, 1 << 20);
    let refuels = 0;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {
      instio: {
        refuel: () => {
          if (++refuels === 3) throw new Error("out of budget");
          (instance.exports.instio_fuel as WebAssembly.Global).value = 1000;
        },
      },
    });
    expect(() => (instance.exports.spin as () => void)()).toThrow("out of budget");
    expect(refuels).toBe(3);
  });
});

/** The request the hand-written modules read: x-in is what they copy. */
function recordingStream(): TestStream {
  return new TestStream([":authority", "svc", ":path", "/p", "x-in", "1"], { properties: { "request.path": "/p" } });
}

/**
 * A filter written against the ABI alone (WAT): on request headers it reads
 * x-in, adds x-out with its value, logs, and answers 418 when x-in is "teapot".
 * `version` picks the marker and the callback's arity.
 */
function handWritten(version: "0_2_0" | "0_1_0"): WebAssembly.Module {
  const eos = version === "0_1_0" ? "" : "(param $eos i32)";
  const text = `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-in")
  (data (i32.const 8) "x-out")
  (data (i32.const 16) "hello from wat")
  (data (i32.const 32) "teapot")
  (data (i32.const 48) "short_and_stout")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_${version}"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) ${eos} (result i32)
    (if (i32.ne (call $get (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 200) (i32.const 204)) (i32.const 0))
      (then (return (i32.const 0))))
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 14)))
    (drop (call $add (i32.const 0) (i32.const 8) (i32.const 5) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
    (if (i32.eq (i32.load (i32.const 204)) (i32.const 6))
      (then
        (drop (call $reply (i32.const 418) (i32.const 48) (i32.const 15) (i32.const 32) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))
)`;
  return new WebAssembly.Module(binaryen.parseText(text).emitBinary() as Uint8Array<ArrayBuffer>);
}

describe("the VM, against modules written to the ABI", () => {
  for (const version of ["0_2_0", "0_1_0"] as const) {
    it(`runs the documented call sequence of ABI ${version}`, () => {
      const env = testEnvironment();
      const vm = new PluginVm(handWritten(version), env);
      expect(vm.abi).toBe(version);
      expect(vm.start()).toBe(true);
      const stream = recordingStream();
      const id = vm.createStream(stream);
      const args = version === "0_1_0" ? [3] : [3, 1];
      expect(vm.callback("proxy_on_request_headers", id, ...args)).toBe(0);
      expect(stream.request.slice(-2)).toEqual(["x-out", "1"]);
      expect(stream.edits).toBe(1);
      expect(env.logs).toEqual(["2:hello from wat"]);
      stream.request[5] = "teapot";
      expect(vm.callback("proxy_on_request_headers", id, ...args)).toBe(1);
      expect(stream.replies).toEqual([{ status: 418, details: "short_and_stout", body: "teapot", headers: [] }]);
      vm.finishStream(id);
      expect(vm.failure).toBeUndefined();
    });
  }

  it("refuses modules Envoy refuses, with Envoy's words: no ABI marker, a missing import, no allocator", () => {
    const build = (text: string): WebAssembly.Module => new WebAssembly.Module(binaryen.parseText(text).emitBinary() as Uint8Array<ArrayBuffer>);
    expect(() => new PluginVm(build(`(module (memory (export "memory") 1))`), testEnvironment())).toThrow("Missing or unknown Proxy-Wasm ABI version");
    expect(() => new PluginVm(build(`(module (import "env" "abort" (func (param i32 i32 i32 i32))) (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))`), testEnvironment())).toThrow(
      "Failed to load Wasm module due to a missing import: env.abort",
    );
    expect(() => new PluginVm(build(`(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))`), testEnvironment())).toThrow("missing malloc");
  });

  it("fails the VM, never the host, when a module hands the host pointers outside its memory", () => {
    const text = `(module
      (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 8))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
        (i32.const 0)))`;
    const vm = new PluginVm(new WebAssembly.Module(binaryen.parseText(text).emitBinary() as Uint8Array<ArrayBuffer>), testEnvironment());
    expect(vm.start()).toBe(true);
    const id = vm.createStream(recordingStream());
    expect(vm.callback("proxy_on_request_headers", id, 0, 1)).toBe(0);
    expect(vm.failure).toMatch(/outside the module's memory/);
  });
});

describe("the pipeline's plugin stage, against modules written to the ABI", () => {
  const services = (logs: string[]) => ({
    logger: { log: (_l: string, m: string) => logs.push(m), error: (m: string) => logs.push(m), info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) } as unknown as Logger,
    shared: new SharedState(),
    metrics: new PluginMetrics(new Registry()),
    node: { id: "sidecar~10.0.0.1~p.default~default.svc.cluster.local", metadata: { NAMESPACE: "default" } },
    httpCall: () => false,
    failed: () => undefined,
  });
  const plugin = (text: string, logs: string[]): WasmPlugin => {
    const bytes = binaryen.parseText(text).emitBinary();
    const config = { name: "default.test", source: { file: "mesh.yaml", line: 1, column: 1 }, rootId: "", file: "", code: bytes, sha256: "", configuration: "", phase: "UNSPECIFIED_PHASE" as const, failStrategy: "FAIL_CLOSE" as const, match: [], env: [] };
    return new WasmPlugin(config, new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), services(logs));
  };
  const exchange = () => {
    const ds = { method: "GET", authority: "svc", path: "/p", query: undefined, scheme: "http", headers: ["host", "svc"], hasBody: false, remoteAddress: "10.0.0.9", localAddress: "10.0.0.1:15001", peer: undefined, originalDestination: undefined, bodyBytes: 0, header: () => undefined };
    return { ds, over: false, status: 200, details: "", requestId: "", clusterName: "", routeName: "", upstreamHost: "", startTime: Date.now(), startedAt: performance.now(), bytesSent: 0, headerBytesSent: 0, grpcStatus: "", localReply: () => undefined, resetDownstream: () => undefined, abandonUpstream: () => undefined, sendPluginHead: () => undefined, sendPluginData: () => undefined, sendPluginEnd: () => undefined } as unknown as WasmExchange;
  };
  const common = `
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap)) (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))`;

  it("runs on_response_trailers, in reverse order, and sends the trailers as the plugin left them", () => {
    const logs: string[] = [];
    const p = plugin(`(module
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (data (i32.const 0) "grpc-message")
  (data (i32.const 16) "rewritten")
  ${common}
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (drop (call $replace (i32.const 3) (i32.const 0) (i32.const 12) (i32.const 16) (i32.const 9)))
    (i32.const 0)))`, logs);
    const stage = new WasmStage(exchange());
    let continued = false;
    stage.runRequest([p], () => (continued = true));
    expect(continued).toBe(true);
    expect(stage.filtersResponse).toBe(true);
    expect(stage.responseTrailers({ "grpc-status": "0", "grpc-message": "ok" })).toEqual({ "grpc-status": "0", "grpc-message": "rewritten" });
    expect(stage.responseTrailers(undefined)).toBeUndefined();
    stage.finish();
  });

  it("delivers shared-queue items to the root context that registered the queue, after the enqueuing call returned", async () => {
    const logs: string[] = [];
    const p = plugin(`(module
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (data (i32.const 0) "jobs")
  (data (i32.const 16) "a job")
  ${common}
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $register (i32.const 0) (i32.const 4) (i32.const 100)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $enqueue (i32.load (i32.const 100)) (i32.const 16) (i32.const 5)))
    (i32.const 0))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (if (i32.eqz (call $dequeue (local.get 1) (i32.const 200) (i32.const 204)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 200)) (i32.load (i32.const 204))))))))`, logs);
    const stage = new WasmStage(exchange());
    stage.runRequest([p], () => undefined);
    expect(logs.filter((l) => l.includes("a job"))).toEqual([]); // not re-entrantly, from inside on_request_headers
    await new Promise((r) => setImmediate(r));
    expect(logs.filter((l) => l.includes("a job"))).toEqual(["wasm log default.test : a job"]);
    stage.finish();
  });

  it("keeps a plugin's VM for the requests in flight when a reload drops the plugin, and disposes of it after them", () => {
    const logs: string[] = [];
    const p = plugin(`(module ${common}
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))`, logs);
    const stage = new WasmStage(exchange());
    stage.runRequest([p], () => undefined);
    const vm = p.acquire()!;
    p.dispose(); // what PluginRegistry.bind does to a plugin no config names any more
    expect(vm.failure).toBeUndefined(); // the request in flight still has its VM
    stage.finish();
    expect(vm.failure).toBe("disposed");
  });


  it("fails a request that waits for a continue when its VM dies of another request's trap (FAIL_CLOSE), instead of leaving it hanging", async () => {
    const logs: string[] = [];
    const p = plugin(`(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (data (i32.const 0) "x-trap")
  ${common}
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 100) (i32.const 104))) (then unreachable))
    (i32.const 1)))`, logs);
    const replies: string[] = [];
    const waiting = exchange();
    (waiting as unknown as { localReply: (r: { details: string }) => void }).localReply = (r) => replies.push(r.details);
    const first = new WasmStage(waiting);
    let continued = false;
    first.runRequest([p], () => (continued = true));
    expect(first.pending).toBe(true); // stopped, waiting for a continue that will not come
    const trapping = exchange();
    (trapping.ds as unknown as { headers: string[] }).headers = ["host", "svc", "x-trap", "1"];
    new WasmStage(trapping).runRequest([p], () => undefined);
    await new Promise((r) => queueMicrotask(() => r(undefined)));
    expect(replies).toEqual(["wasm_fail_stream"]);
    expect(continued).toBe(false);
  });

});
