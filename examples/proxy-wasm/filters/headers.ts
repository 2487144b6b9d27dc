// headers.ts: adds x-wasm-added (the plugin configuration) and removes
// x-remove-me on requests; adds x-wasm-response: yes on responses.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy"; // proxy_on_* exports, malloc, ABI marker
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class HeadersRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new HeadersFilter(context_id, this);
  }
}

class HeadersFilter extends Context {
  constructor(context_id: u32, root_context: HeadersRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // plugin configuration (raw string) captured by RootContext.onConfigure
    const value = this.root_context.getConfiguration();
    stream_context.headers.request.add("x-wasm-added", value);
    stream_context.headers.request.remove("x-remove-me");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-wasm-response", "yes");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new HeadersRoot(context_id);
}, "headers");
