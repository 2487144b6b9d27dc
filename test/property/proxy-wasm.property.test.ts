// Hostile input to the Proxy-Wasm host, from both sides:
//   - a module is hostile: it calls any host function with any arguments
//     (pointers anywhere, lengths past its memory, unknown types and ids). The
//     host answers with a status or fails that VM; it never throws into the
//     proxy, and a VM that did not fail keeps working.
//   - a config is hostile: WasmPlugin specs with any field replaced by any
//     value. Loading never throws, and every problem is a diagnostic with its
//     file:line.
//   - a plugin configuration is hostile: the route filter given mutated tables
//     refuses them or runs, and whatever it does stays inside its VM.

import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import binaryen from "binaryen";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { instrument } from "../../host/proxy-wasm/instrument.js";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { PluginVm, type PluginEnvironment } from "../../host/proxy-wasm/vm.js";
import { TestStream, testEnvironment } from "../support/proxy-wasm-host.js";
import { compileFilterTable, filterModulePath } from "../../host/route-filter/filter-table.js";

/** Every env.proxy_* function and its parameter count (i32 unless i64: increment/record_metric's second). */
const HOST_FUNCTIONS: [string, number][] = [
  ["proxy_log", 3], ["proxy_get_log_level", 1], ["proxy_get_current_time_nanoseconds", 1], ["proxy_set_tick_period_milliseconds", 1],
  ["proxy_get_buffer_bytes", 5], ["proxy_set_buffer_bytes", 5], ["proxy_get_buffer_status", 3], ["proxy_get_header_map_size", 2],
  ["proxy_get_header_map_pairs", 3], ["proxy_set_header_map_pairs", 3], ["proxy_get_header_map_value", 5], ["proxy_add_header_map_value", 5],
  ["proxy_replace_header_map_value", 5], ["proxy_remove_header_map_value", 3], ["proxy_get_property", 4], ["proxy_set_property", 4],
  ["proxy_continue_stream", 1], ["proxy_close_stream", 1], ["proxy_send_local_response", 8], ["proxy_http_call", 10], ["proxy_get_status", 3],
  ["proxy_get_shared_data", 5], ["proxy_set_shared_data", 5], ["proxy_register_shared_queue", 3], ["proxy_resolve_shared_queue", 5],
  ["proxy_enqueue_shared_queue", 3], ["proxy_dequeue_shared_queue", 3], ["proxy_define_metric", 4], ["proxy_get_metric", 2],
  ["proxy_set_effective_context", 1], ["proxy_done", 0], ["proxy_call_foreign_function", 6],
];

/** A stream with a request, a response head and a request body for the module to reach. */
function stream(): TestStream {
  return new TestStream([":authority", "svc", ":path", "/", "x-a", "1"], { response: [":status", "200"], body: Buffer.from("body") });
}

function environment(): PluginEnvironment {
  return testEnvironment({
    name: "fuzz",
    rootId: "",
    env: [["A", "b"]],
    timeBudgetMs: 1000,
    log: () => undefined,
    httpCall: (_c, _h, _b, _t, done) => (queueMicrotask(() => done(undefined)), true),
    metricValue: () => 0,
  });
}

/** A module whose on_request_headers calls `fn` with `args`, then returns 0. */
function caller(fn: string, args: number[]): WebAssembly.Module {
  const arity = args.length;
  const params = Array.from({ length: arity }, (_, i) => (fn.endsWith("_metric") && i === 1 && fn !== "proxy_get_metric" && fn !== "proxy_define_metric" ? "i64" : "i32"));
  const consts = args.map((a, i) => `(${params[i]}.const ${a})`).join(" ");
  const text = `(module
  (import "env" "${fn}" (func $f ${arity ? `(param ${params.join(" ")})` : ""} (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap)) (global.set $heap (i32.add (global.get $heap) (i32.and (local.get $n) (i32.const 0xffff)))) (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $f ${consts}))
    (i32.const 0)))`;
  return new WebAssembly.Module(binaryen.parseText(text).emitBinary() as Uint8Array<ArrayBuffer>);
}

/** The reasons a host call fails a VM (vm.ts VmFailure): the module's doing, each said in the host's words. */
const HOST_CALL_MISUSE = /outside the module's memory|the module's allocator (failed|returned a block outside its memory)/;

// Pointers and lengths where bugs live: 0, small, near the end of one page, past it, huge, negative.
const value = fc.oneof(fc.constantFrom(0, 1, 4, 8, 16, 100, 65532, 65535, 65536, 0x7fffffff, -1, -8), fc.integer({ min: -1000, max: 70000 }));

describe("the Proxy-Wasm host against hostile modules", () => {
  it("answers any host call with any arguments with a status, or fails that VM: never a throw into the proxy", () => {
    fc.assert(
      fc.property(fc.constantFrom(...HOST_FUNCTIONS), fc.array(value, { minLength: 10, maxLength: 10 }), ([fn, arity], values) => {
        const vm = new PluginVm(caller(fn, values.slice(0, arity)), environment());
        expect(vm.start()).toBe(true);
        const id = vm.createStream(stream());
        expect(() => vm.callback("proxy_on_request_headers", id, 3, 1)).not.toThrow();
        expect(() => vm.finishStream(id)).not.toThrow();
        // A VM fails for what the module did (a pointer outside its memory, its allocator), never for a host bug.
        if (vm.failure !== undefined) expect(vm.failure).toMatch(HOST_CALL_MISUSE);
        vm.dispose();
      }),
      { numRuns: 300 },
    );
  });
});

describe("WasmPlugin against hostile config", () => {
  const dir = mkdtempSync(join(tmpdir(), "instio-wasm-fuzz-"));
  const module = join(dir, "m.wasm");
  writeFileSync(module, binaryen.parseText(`(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")) (func (export "malloc") (param i32) (result i32) (i32.const 1024)))`).emitBinary());
  const fields = ["selector", "url", "sha256", "imagePullPolicy", "pluginConfig", "pluginName", "phase", "priority", "vmConfig", "match", "failStrategy", "type", "targetRefs", "bogus"];
  const anyValue = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.oneof(fc.string(), fc.integer(), fc.object())), fc.object());

  it("loads any spec without throwing; every problem is a diagnostic at a line", () => {
    fc.assert(
      fc.property(fc.constantFrom(...fields), anyValue, (field, v) => {
        const spec: Record<string, unknown> = { url: `file://${module}`, match: [{ mode: "CLIENT", ports: [{ number: 80 }] }], [field]: v };
        const yaml = `apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p, namespace: default}\nspec: ${JSON.stringify(spec)}\n`;
        const result = loadConfigText("fuzz.yaml", yaml);
        for (const d of result.diagnostics) {
          expect(d.file).toBe("fuzz.yaml");
          expect(d.line).toBeGreaterThan(0);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("the route filter against hostile tables", () => {
  // Instrumented, as instio runs every plugin: a table that sent the core into a loop would fail the VM, not hang the test.
  let filter: WebAssembly.Module;
  beforeAll(async () => {
    filter = new WebAssembly.Module((await instrument(readFileSync(filterModulePath()), 1 << 30)) as Uint8Array<ArrayBuffer>);
  });
  const config = requireConfig(loadConfigText("routes.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a.example], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.0.0.1}, {address: 10.0.0.2}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec: {hosts: [a.example], http: [{match: [{headers: {x-v: {exact: "2"}}}], route: [{destination: {host: a.example}}]}, {route: [{destination: {host: a.example}}]}]}
`));
  it("refuses a mutated or cut table (its checksum), or runs with it, and either way what happens stays in its VM", () => {
    const table = compileFilterTable(config, filter).bytes;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: table.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.option(fc.nat({ max: table.length })), (edits, cut) => {
        const mutated = Buffer.from(table.subarray(0, cut ?? table.length));
        for (const [at, byte] of edits) if (at < mutated.length) mutated[at] = byte;
        const vm = new PluginVm(filter, { ...environment(), pluginConfiguration: mutated });
        let started = false;
        expect(() => (started = vm.start())).not.toThrow();
        if (started) {
          const id = vm.createStream(stream());
          expect(() => vm.callback("proxy_on_request_headers", id, 3, 1)).not.toThrow();
        }
        vm.dispose();
      }),
      { numRuns: 200 },
    );
  });
});
