// Envoy's stream_idle_timeout: a request that sends and receives no bytes for
// this long ends (408 before its request is complete, 504 after, "stream
// timeout", flag SI; a reset once the response has started). One sweep over
// the requests in flight reads their byte counts, instead of a timer per
// request refreshed at every chunk. The requests in flight are an intrusive
// list (links in the request itself): joining and leaving it allocate nothing.

/** What the sweep needs of a request in flight (the pipeline's Exchange). */
export interface IdleWatched {
  /** Bytes moved so far, both ways: a change means the stream is not idle. */
  activity(): number;
  /** The stream was idle for the whole timeout. */
  onStreamIdleTimeout(): void;
  idleSeen: number;
  idleSince: number;
  idlePrev: IdleWatched | undefined;
  idleNext: IdleWatched | undefined;
}

export class StreamIdleTimeout {
  private head: IdleWatched | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  /** The time of the last sweep: new requests are stamped with it rather than reading the clock each. */
  private clock = performance.now();

  constructor(readonly timeoutMs: number) {
    // A tenth of the timeout between sweeps (at most a second): it fires within 10% of its time.
    if (timeoutMs > 0) this.timer = setInterval(sweep, Math.max(5, Math.min(1000, Math.floor(timeoutMs / 10))), this).unref();
  }

  add(w: IdleWatched): void {
    if (this.timer === undefined) return;
    w.idleSince = this.clock;
    w.idleSeen = 0;
    w.idlePrev = undefined;
    w.idleNext = this.head;
    if (this.head) this.head.idlePrev = w;
    this.head = w;
  }

  delete(w: IdleWatched): void {
    if (w.idlePrev === undefined && this.head !== w) return; // not in the list
    if (w.idlePrev) w.idlePrev.idleNext = w.idleNext;
    else this.head = w.idleNext;
    if (w.idleNext) w.idleNext.idlePrev = w.idlePrev;
    w.idlePrev = w.idleNext = undefined;
  }

  sweep(): void {
    const now = (this.clock = performance.now());
    for (let w = this.head; w !== undefined; ) {
      const next = w.idleNext;
      const seen = w.activity();
      if (seen !== w.idleSeen) {
        w.idleSeen = seen;
        w.idleSince = now;
      } else if (now - w.idleSince >= this.timeoutMs) {
        this.delete(w);
        w.onStreamIdleTimeout();
      }
      w = next;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function sweep(t: StreamIdleTimeout): void {
  t.sweep();
}
