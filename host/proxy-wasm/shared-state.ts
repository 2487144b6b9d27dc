// What Proxy-Wasm plugins share across VMs, as Envoy keeps it per process:
// shared data (a key-value store with compare-and-swap) and shared queues
// (named per VM id; the registering root context is told when items arrive).

import { Status } from "./abi.js";

/** A root context a queue notifies: `proxy_on_queue_ready(root, queue)` once items are waiting. */
export interface QueueOwner {
  queueReady(queueId: number): void;
}

interface Queue {
  readonly id: number;
  readonly items: Buffer[];
  owner: QueueOwner;
  notifyScheduled: boolean;
}

/** Bounds so that a plugin cannot grow the proxy without limit through them. */
const MAX_SHARED_BYTES = 64 << 20;
const MAX_QUEUE_ITEMS = 10_000;

export class SharedState {
  private readonly data = new Map<string, { value: Buffer; cas: number }>();
  private dataBytes = 0;
  private nextCas = 1;
  private readonly queuesByName = new Map<string, Queue>();
  private readonly queues = new Map<number, Queue>();
  private nextQueueId = 1;

  getData(key: string): { value: Buffer; cas: number } | undefined {
    return this.data.get(key);
  }

  /** `cas` 0 sets unconditionally; otherwise it must be the value's current cas (CAS_MISMATCH). */
  setData(key: string, value: Buffer, cas: number): Status {
    const old = this.data.get(key);
    if (cas !== 0 && old !== undefined && old.cas !== cas) return Status.CAS_MISMATCH;
    const grown = this.dataBytes + key.length + value.length - (old ? key.length + old.value.length : 0);
    if (grown > MAX_SHARED_BYTES) return Status.INTERNAL_FAILURE;
    this.dataBytes = grown;
    this.data.set(key, { value, cas: this.nextCas++ });
    return Status.OK;
  }

  /** Opens the queue VM_ID/NAME (creating it); the caller's root context becomes the one told of new items. */
  registerQueue(vmId: string, name: string, owner: QueueOwner): number {
    const key = `${vmId}\0${name}`;
    let q = this.queuesByName.get(key);
    if (!q) {
      q = { id: this.nextQueueId++, items: [], owner, notifyScheduled: false };
      this.queuesByName.set(key, q);
      this.queues.set(q.id, q);
    }
    q.owner = owner;
    return q.id;
  }

  resolveQueue(vmId: string, name: string): number | undefined {
    return this.queuesByName.get(`${vmId}\0${name}`)?.id;
  }

  enqueue(id: number, value: Buffer): Status {
    const q = this.queues.get(id);
    if (!q) return Status.NOT_FOUND;
    if (q.items.length >= MAX_QUEUE_ITEMS) return Status.INTERNAL_FAILURE;
    q.items.push(value);
    if (!q.notifyScheduled) {
      q.notifyScheduled = true;
      // Envoy posts the notification to the owner's thread: never re-entrantly from inside the enqueuer's call.
      setImmediate(notify, q);
    }
    return Status.OK;
  }

  dequeue(id: number): Buffer | Status.NOT_FOUND | Status.EMPTY {
    const q = this.queues.get(id);
    if (!q) return Status.NOT_FOUND;
    return q.items.shift() ?? Status.EMPTY;
  }
}

function notify(q: Queue): void {
  q.notifyScheduled = false;
  if (q.items.length > 0) q.owner.queueReady(q.id);
}
