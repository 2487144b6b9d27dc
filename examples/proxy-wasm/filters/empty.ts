// empty.ts: does nothing (Continue everywhere): what a plugin costs by being there.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class EmptyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new EmptyFilter(context_id, this);
  }
}

class EmptyFilter extends Context {
  constructor(context_id: u32, root_context: EmptyRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new EmptyRoot(context_id);
}, "empty");
