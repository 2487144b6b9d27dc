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

/** Int32 cells per direction in a serving thread's shared block: requests in flight, draining (0/1). */
const RUNTIME_CELLS = 2;
/** A serving thread's shared block: the outbound pair of cells, then the inbound pair. */
export const RUNTIME_BLOCK_BYTES = 2 * RUNTIME_CELLS * 4;

/**
 * A ListenerRuntime whose counts live in shared memory, so that the main thread's drain lifecycle reads the
 * requests a worker thread has in flight and tells it to drain, without a message either way. The worker's
 * listeners of one direction share one pair of cells (`routePort` may differ); the main thread holds a view of
 * the same cells.
 */
export class SharedListenerRuntime implements ListenerRuntime {
  private readonly cells: Int32Array;

  constructor(
    block: SharedArrayBuffer,
    readonly direction: "outbound" | "inbound",
    readonly routePort?: string,
  ) {
    this.cells = new Int32Array(block, direction === "inbound" ? RUNTIME_CELLS * 4 : 0, RUNTIME_CELLS);
  }

  get inFlight(): number {
    return Atomics.load(this.cells, 0);
  }
  set inFlight(n: number) {
    Atomics.store(this.cells, 0, n);
  }
  get draining(): boolean {
    return Atomics.load(this.cells, 1) !== 0;
  }
  set draining(on: boolean) {
    Atomics.store(this.cells, 1, on ? 1 : 0);
  }
}
