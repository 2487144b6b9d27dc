// Per listener: requests in flight and whether it is draining (responses then
// carry Connection: close). Shared by the pipeline, the drain lifecycle and the gauges.

export interface ListenerRuntime {
  readonly direction: "outbound" | "inbound";
  inFlight: number;
  draining: boolean;
}
