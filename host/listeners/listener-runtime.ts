// Per listener: requests in flight and whether it is draining (responses then
// carry Connection: close). Shared by the pipeline, the drain lifecycle and the gauges.

export interface ListenerRuntime {
  readonly direction: "outbound" | "inbound";
  inFlight: number;
  draining: boolean;
  /**
   * ":PORT" for a listener whose routes are its own, as an Envoy listener's (one bound from LDS or
   * a bootstrap): requests route as "host:PORT" whatever port their authority names, matching the
   * route table's port-qualified domains for that listener.
   */
  readonly routePort?: string;
}
