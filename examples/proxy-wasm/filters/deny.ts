// deny.ts: answers 403 itself (a local reply) when the request carries x-deny.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues, makeHeaderPair, send_local_response } from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { hasRequestHeader } from "./has-header";

class DenyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new DenyFilter(context_id, this);
  }
}

class DenyFilter extends Context {
  constructor(context_id: u32, root_context: DenyRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (hasRequestHeader("x-deny")) {
      send_local_response(403, "denied_by_wasm", String.UTF8.encode("denied by wasm"), [makeHeaderPair("x-denied-by", "wasm")], GrpcStatusValues.InvalidCode);
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new DenyRoot(context_id);
}, "deny");
