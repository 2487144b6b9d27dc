// Budgets for third-party Wasm: a filter must not hang the proxy's only thread
// or take its memory. A loop in Wasm cannot be interrupted from JavaScript, so
// the module is instrumented before it is compiled (once per module, off the
// request path): binaryen's log-execution pass puts a call at every function
// entry and loop header, and that call becomes a decrement of a fuel counter
// in the module itself; only when the fuel runs out does it call the host
// (instio.refuel), which checks the callback's time budget and refills or
// traps. The memory's declared maximum is lowered to the budget, so growing
// past it fails inside the module (its allocator aborts: a contained trap).

import { packageFile, seaRoot } from "../package-root.js";

type Binaryen = typeof import("binaryen").default;
let binaryenModule: Promise<Binaryen> | undefined;

/**
 * binaryen is 13 MB of JavaScript: loaded on first use, by configs that have Wasm plugins only. The
 * single binary carries it as an asset (an ES module with top-level await, which its CommonJS bundle
 * cannot hold) and imports it from where it unpacked it.
 */
function loadBinaryen(): Promise<Binaryen> {
  const specifier = seaRoot() ? packageFile("binaryen/index.js").href : "binaryen";
  return (binaryenModule ??= (import(specifier) as Promise<{ default: Binaryen }>).then((m) => m.default));
}

/** The host import the instrumented module calls when its fuel runs out. */
export const REFUEL_MODULE = "instio";
export const REFUEL_NAME = "refuel";
/** The exported global holding the fuel left. */
export const FUEL_GLOBAL = "instio_fuel";
/** The fuel a start function may burn (about a tenth of a second of tight loop); refuel then fails the module. */
const START_FUEL = 100_000_000;
const WASM_PAGE = 65536;
/** The fuel function's size in binaryen's count: what "always inline" must reach for it. */
const LOG_EXECUTION_SIZE = 12;

/** Adds the fuel counter and lowers the memory maximum to `memoryLimitBytes`; throws with binaryen's message on invalid input. */
export async function instrument(bytes: Uint8Array, memoryLimitBytes: number): Promise<Uint8Array> {
  const binaryen = await loadBinaryen();
  const module = binaryen.readBinary(bytes);
  try {
    module.setFeatures(binaryen.Features.All);
    module.runPasses(["log-execution"]);
    // The pass imported env.log_execution(i32); it becomes a function of the module that burns fuel.
    module.removeFunction("log_execution");
    // A module's start function runs inside instantiation, before the host can refill: it gets one large tank.
    module.addGlobal(FUEL_GLOBAL, binaryen.i32, true, module.i32.const(START_FUEL));
    module.addGlobalExport(FUEL_GLOBAL, FUEL_GLOBAL);
    module.addFunctionImport("instio_refuel", REFUEL_MODULE, REFUEL_NAME, binaryen.none, binaryen.none);
    const fuel = (): number => module.global.get(FUEL_GLOBAL, binaryen.i32);
    module.addFunction(
      "log_execution",
      binaryen.createType([binaryen.i32]),
      binaryen.none,
      [],
      module.block(null, [
        module.global.set(FUEL_GLOBAL, module.i32.sub(fuel(), module.i32.const(1))),
        module.if(module.i32.lt_s(fuel(), module.i32.const(0)), module.call("instio_refuel", [], binaryen.none)),
      ]),
    );
    // The counter is a few instructions: inlined at every call site, it costs a fraction of a call.
    const alwaysInline = binaryen.getAlwaysInlineMaxSize();
    binaryen.setAlwaysInlineMaxSize(LOG_EXECUTION_SIZE);
    try {
      module.runPasses(["inlining"]);
    } finally {
      binaryen.setAlwaysInlineMaxSize(alwaysInline);
    }
    if (!module.validate()) throw new Error("the instrumented module does not validate");
    return limitMemory(module.emitBinary(), Math.floor(memoryLimitBytes / WASM_PAGE));
  } finally {
    module.dispose();
  }
}

/**
 * Rewrites the memory section's limits so that the maximum is at most
 * `maxPages` (binaryen's setMemory would drop the data segments). A module
 * whose initial memory is already larger is refused.
 */
export function limitMemory(bytes: Uint8Array, maxPages: number): Uint8Array {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at]!;
    const [size, sizeLen] = readLeb(bytes, at + 1);
    const body = at + 1 + sizeLen;
    if (id === 5) {
      const [count, countLen] = readLeb(bytes, body);
      if (count !== 1) throw new Error(`a module with ${count} memories is not supported`);
      let p = body + countLen;
      const flags = bytes[p]!;
      if (flags !== 0 && flags !== 1) throw new Error("shared or 64-bit memory is not supported");
      const [initial, initialLen] = readLeb(bytes, p + 1);
      p += 1 + initialLen;
      let max = maxPages;
      if (flags === 1) {
        const [declared, maxLen] = readLeb(bytes, p);
        max = Math.min(declared, maxPages);
        p += maxLen;
      }
      if (initial > max) throw new Error(`its initial memory (${initial * 64} KiB) is over the memory limit (${maxPages * 64} KiB)`);
      const section = [1, 1, ...leb(initial), ...leb(max)];
      const out = new Uint8Array(bytes.length - (body + size - at) + 1 + leb(section.length).length + section.length);
      out.set(bytes.subarray(0, at));
      let w = at;
      out[w++] = 5;
      for (const b of leb(section.length)) out[w++] = b;
      for (const b of section) out[w++] = b;
      out.set(bytes.subarray(body + size), w);
      return out;
    }
    at = body + size;
  }
  return bytes; // no memory of its own: an imported one gets its limit from the host
}

function readLeb(bytes: Uint8Array, at: number): [value: number, length: number] {
  let value = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    const b = bytes[i++];
    if (b === undefined || shift > 28) throw new Error("malformed module (a LEB128 runs past its bounds)");
    value |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value >>> 0, i - at];
    shift += 7;
  }
}

function leb(value: number): number[] {
  const out: number[] = [];
  do {
    let b = value & 0x7f;
    value >>>= 7;
    if (value !== 0) b |= 0x80;
    out.push(b);
  } while (value !== 0);
  return out;
}
