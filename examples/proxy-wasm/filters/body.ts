// body.ts: upper-cases request and response bodies (ASCII letters), buffering
// each whole; the length may change, so content-length goes (as a filter must).
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  FilterDataStatusValues,
  BufferTypeValues,
  get_buffer_bytes,
  set_buffer_bytes,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class BodyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new BodyFilter(context_id, this);
  }
}

class BodyFilter extends Context {
  constructor(context_id: u32, root_context: BodyRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    return upperCase(BufferTypeValues.HttpRequestBody, body_buffer_length, end_of_stream);
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    return upperCase(BufferTypeValues.HttpResponseBody, body_buffer_length, end_of_stream);
  }
}

function upperCase(buffer: BufferTypeValues, length: usize, end_of_stream: bool): FilterDataStatusValues {
  if (!end_of_stream) {
    return FilterDataStatusValues.StopIterationAndBuffer; // wait for the full body
  }
  const body = get_buffer_bytes(buffer, 0, <u32>length);
  const bytes = Uint8Array.wrap(body);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c >= 0x61 && c <= 0x7a) bytes[i] = c - 0x20; // a-z -> A-Z (UTF-8 safe)
  }
  set_buffer_bytes(buffer, 0, <u32>length, body);
  return FilterDataStatusValues.Continue;
}

registerRootContext((context_id: u32): RootContext => {
  return new BodyRoot(context_id);
}, "body");
