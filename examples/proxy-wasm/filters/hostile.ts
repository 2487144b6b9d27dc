// hostile.ts: a filter that misbehaves on request, to show that the proxy contains it.
//   x-trap: traps (unreachable); x-loop: never returns; x-grow: allocates until its memory runs out.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues } from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { hasRequestHeader } from "./has-header";

let spins: u64 = 0;
const kept = new Array<ArrayBuffer>();

class HostileRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new HostileFilter(context_id, this);
  }
}

class HostileFilter extends Context {
  constructor(context_id: u32, root_context: HostileRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (hasRequestHeader("x-trap")) unreachable();
    if (hasRequestHeader("x-loop")) {
      while (spins != u64.MAX_VALUE) spins++;
    }
    if (hasRequestHeader("x-grow")) {
      for (;;) kept.push(new ArrayBuffer(1 << 20));
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new HostileRoot(context_id);
}, "hostile");
