// The Wasm boundary is locked: the module imports nothing and exports exactly
// the ABI the host calls (integers only), links no AssemblyScript runtime or
// allocator, and assembly/layout.ts is consistent (every record's fields are
// distinct, aligned and inside the record).

import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as L from "../../assembly/layout.js";

const wasm = readFileSync(new URL("../../build/route-core.wasm", import.meta.url));
const wat = readFileSync(new URL("../../build/route-core.wat", import.meta.url), "utf8");

describe("the route core's boundary", () => {
  it("imports nothing and exports exactly the ABI", () => {
    const module = new WebAssembly.Module(wasm);
    expect(WebAssembly.Module.imports(module)).toEqual([]);
    expect(WebAssembly.Module.exports(module).map((e) => `${e.kind} ${e.name}`).sort()).toEqual(
      ["function hash64", "function heapBase", "function init", "function pickEndpoint", "function regex", "function route", "memory memory"].sort(),
    );
  });

  it("links no AssemblyScript runtime: no allocator, no garbage collector, no abort", () => {
    const functions = [...wat.matchAll(/\(func \$([^\s)]+)/g)].map((m) => m[1]!);
    expect(functions.length).toBeGreaterThan(5);
    expect(functions.filter((f) => f.startsWith("~lib/rt") || /__(new|alloc|renew|collect|pin|unpin)\b/.test(f) || f.includes("abort"))).toEqual([]);
    expect(wat).not.toContain("~lib/rt");
    // Every function is the project's own code or a small std helper inlined at compile time.
    expect(functions.filter((f) => !f.startsWith("assembly/") && !f.startsWith("~lib/"))).toEqual([]);
  });
});

describe("the route core's Proxy-Wasm filter build (build/route-filter.wasm)", () => {
  const filter = new WebAssembly.Module(readFileSync(new URL("../../build/route-filter.wasm", import.meta.url)));
  const filterWat = readFileSync(new URL("../../build/route-filter.wat", import.meta.url), "utf8");

  it("imports only Proxy-Wasm host functions and exports the ABI (with the core's, for laying tables out)", () => {
    expect(WebAssembly.Module.imports(filter).every((i) => i.module === "env" && i.name.startsWith("proxy_"))).toBe(true);
    expect(WebAssembly.Module.exports(filter).map((e) => `${e.kind} ${e.name}`).sort()).toEqual(
      [
        "function proxy_abi_version_0_2_1", "function malloc", "function proxy_on_context_create", "function proxy_on_vm_start", "function proxy_on_configure",
        "function proxy_on_request_headers", "function proxy_on_done", "function proxy_on_log", "function proxy_on_delete",
        "function hash64", "function heapBase", "function init", "function pickEndpoint", "function regex", "function route", "memory memory",
      ].sort(),
    );
  });

  it("links no AssemblyScript runtime either: its memory is the table, the request area and the host's scratch", () => {
    expect(filterWat).not.toContain("~lib/rt");
    expect([...filterWat.matchAll(/\(func \$([^\s)]+)/g)].map((m) => m[1]!).filter((f) => /__(new|alloc|renew|collect|pin|unpin)\b/.test(f) || f.includes("abort"))).toEqual([]);
  });
});

describe("the route core's source (assembly/)", () => {
  // A lint of what the hot path must not do, on the AssemblyScript sources (their decorators keep
  // typescript-eslint from parsing them): allocate, throw, close over variables, use managed strings
  // or collections. Comments are left out.
  const dir = new URL("../../assembly/", import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  const code = (f: string): string[] =>
    readFileSync(new URL(f, dir), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, "")) // keeps the line numbers
      .split("\n")
      .map((l) => l.replace(/\/\/.*$/, ""));
  it.each([
    ["allocates with new", /\bnew\s/],
    ["throws", /\bthrow\b/],
    ["creates a closure", /=>/],
    ["uses a managed string", /:\s*string\b|`/],
    ["uses a managed collection", /\b(Array|Map|Set|StaticArray)\s*</],
  ])("never %s", (_what, pattern) => {
    expect(files.length).toBeGreaterThan(3);
    const hits = files.flatMap((f) => code(f).flatMap((line, i) => (pattern.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [])));
    expect(hits).toEqual([]);
  });
});

describe("assembly/layout.ts", () => {
  const consts = Object.entries(L as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === "number");
  // Records: every PREFIX_SIZE constant and the byte offsets of its fields (PREFIX_*).
  const records = consts.filter(([name]) => name.endsWith("_SIZE") && !["SLOT_SIZE"].includes(name)).map(([name, size]) => ({ prefix: name.slice(0, -"SIZE".length), size }));

  it("gives every record distinct, aligned fields inside it", () => {
    expect(records.map((r) => r.prefix).sort()).toEqual(["CL_", "C_", "DS_", "D_", "E_", "H_", "OUT_", "PS_", "RING_", "RXI_", "RXP_", "RXS_", "R_", "VH_", "WC_"].sort());
    for (const { prefix, size } of records) {
      const fields = consts.filter(([name]) => name.startsWith(prefix) && name !== `${prefix}SIZE` && !records.some((r) => r.prefix !== prefix && r.prefix.startsWith(prefix) && name.startsWith(r.prefix)));
      expect(fields.length, prefix).toBeGreaterThan(0);
      expect(size % 4, `${prefix}SIZE`).toBe(0);
      const offsets = fields.map(([, v]) => v);
      expect(new Set(offsets).size, `${prefix} offsets are distinct`).toBe(offsets.length);
      for (const [name, offset] of fields) {
        expect(offset % 4, name).toBe(0);
        expect(offset + 4, `${name} fits in ${prefix}SIZE`).toBeLessThanOrEqual(size);
      }
    }
  });

  it("keeps the request area's slots within their table", () => {
    const slots = consts.filter(([name]) => name.startsWith("SLOT_") && !["SLOT_SIZE", "SLOT_COUNT_MAX", "SLOT_FIRST_HEADER"].includes(name)).map(([, v]) => v);
    expect(new Set(slots).size).toBe(slots.length);
    for (const s of slots) expect(s).toBeLessThan(L.SLOT_FIRST_HEADER);
    expect(L.SLOT_FIRST_HEADER).toBeLessThan(L.SLOT_COUNT_MAX);
  });
});
