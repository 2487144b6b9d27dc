// Circuit-breaker counts shared by every serving thread (`concurrency` above
// 1). Envoy counts a cluster's limits across all its workers, so a
// DestinationRule's `maxConnections: 100` is 100 for the proxy, not per thread.
// Each thread finds a cluster's counters by its name in one table of shared
// memory (open addressing on a digest of the name, slots claimed with
// compare-and-exchange), so no message has to assign them. Slots are never
// freed: a cluster that goes and comes back finds its counters again, and they
// are counts of requests in flight, back at 0 when those finish.

import { createHash } from "node:crypto";

/** Clusters the table can hold; past it a cluster counts per thread (and says so once). */
export const SHARED_BREAKER_SLOTS = 16_384;
/** Per slot: the name digest's two words, then the breaker's counters (breaker.ts COUNTERS). */
const KEY_CELLS = 2;
export const BREAKER_COUNTERS = 3;
const SLOT_CELLS = KEY_CELLS + BREAKER_COUNTERS;

export class SharedBreakerTable {
  private readonly cells: Int32Array;

  constructor(readonly block: SharedArrayBuffer = new SharedArrayBuffer(SHARED_BREAKER_SLOTS * SLOT_CELLS * 4)) {
    this.cells = new Int32Array(block);
  }

  /** The counters of cluster `name`, shared with every thread that asks for the same name; undefined when the table is full. */
  countersFor(name: string): Int32Array | undefined {
    const d = createHash("sha256").update(name).digest();
    // 0 marks a free slot (first word) and a key still being written (second word).
    const hi = d.readInt32LE(0) || 1;
    const lo = d.readInt32LE(4) || 1;
    const cells = this.cells;
    for (let probe = 0, i = d.readUInt32LE(8) % SHARED_BREAKER_SLOTS; probe < SHARED_BREAKER_SLOTS; probe++, i = (i + 1) % SHARED_BREAKER_SLOTS) {
      const at = i * SLOT_CELLS;
      const owner = Atomics.compareExchange(cells, at, 0, hi);
      if (owner === 0) {
        Atomics.store(cells, at + 1, lo);
        return new Int32Array(this.block, (at + KEY_CELLS) * 4, BREAKER_COUNTERS);
      }
      if (owner !== hi) continue;
      // Claimed by this name's first word: wait out the claimer's second store (a few instructions) and compare.
      let second = Atomics.load(cells, at + 1);
      while (second === 0) second = Atomics.load(cells, at + 1);
      if (second === lo) return new Int32Array(this.block, (at + KEY_CELLS) * 4, BREAKER_COUNTERS);
    }
    return undefined;
  }
}
