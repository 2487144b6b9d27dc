// callout.ts: asks an auth service (proxy_http_call to the cluster named in the
// plugin configuration) before letting the request on; 401 unless it answers 200.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext,
  Context,
  BaseContext,
  registerRootContext,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  WasmResultValues,
  makeHeaderPair,
  send_local_response,
  continue_request,
  stream_context,
  Headers,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

// The WasmPlugin's pluginConfig arrives as JSON: {"cluster": "outbound|80||auth.default.svc.cluster.local"}.
function clusterFrom(config: string): string {
  const key = "\"cluster\":\"";
  const at = config.indexOf(key);
  if (at < 0) return "auth";
  const start = at + key.length;
  return config.substring(start, config.indexOf("\"", start));
}

function deny(reason: string): void {
  send_local_response(401, "wasm_auth_denied", String.UTF8.encode("unauthorized"),
    [makeHeaderPair("x-auth-failure", reason)], GrpcStatusValues.InvalidCode);
}

// Must be a non-capturing function (AS has no closures); the SDK sets the
// effective context to origin_context before invoking it.
function onAuthResponse(origin: BaseContext, headers: u32, body_size: usize, trailers: u32): void {
  const status = headers == 0 ? "" : stream_context.headers.http_callback.get(":status");
  if (status == "200") {
    stream_context.headers.request.add("x-auth", "ok");
    continue_request(); // proxy_continue_stream(Request)
  } else {
    deny(status == "" ? "no-response" : status);
  }
}

class CalloutRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new CalloutFilter(context_id, this);
  }
}

class CalloutFilter extends Context {
  constructor(context_id: u32, root_context: CalloutRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const cluster = clusterFrom(this.root_context.getConfiguration());
    const hdrs: Headers = [
      makeHeaderPair(":method", "GET"),
      makeHeaderPair(":path", "/check"),
      makeHeaderPair(":authority", "auth"),
    ];
    const r = this.root_context.httpCall(cluster, hdrs, new ArrayBuffer(0), [], 5000, this, onAuthResponse);
    if (r != WasmResultValues.Ok) {
      deny("dispatch-" + r.toString());
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.StopIteration; // resumed in onAuthResponse
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new CalloutRoot(context_id);
}, "callout");
