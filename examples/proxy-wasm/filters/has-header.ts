// Whether the request carries a header: the SDK's headers.request.get() answers
// "" both for an absent header and an empty one, so this asks the host directly
// (proxy_get_header_map_value answers NOT_FOUND for an absent one).
import { proxy_get_header_map_value } from "@gcoredev/proxy-wasm-sdk-as/assembly/imports";
import { globalArrayBufferReference, HeaderMapTypeValues, WasmResultValues } from "@gcoredev/proxy-wasm-sdk-as/assembly/runtime";

export function hasRequestHeader(name: string): bool {
  const key = String.UTF8.encode(name);
  const r = proxy_get_header_map_value(HeaderMapTypeValues.RequestHeaders, changetype<usize>(key), key.byteLength, globalArrayBufferReference.bufferPtr(), globalArrayBufferReference.sizePtr());
  if (r != WasmResultValues.Ok) return false;
  globalArrayBufferReference.toArrayBuffer(); // takes (and frees) the value the host allocated
  return true;
}
