// Envoy's stream_idle_timeout: a request that sends and receives no bytes for
// this long ends (408 before its request is complete, 504 after, "stream
// timeout", flag SI; a reset once the response has started). One sweep over
// the requests in flight reads their byte counts, instead of a timer per
// request refreshed at every chunk.

/** What the sweep needs of a request in flight (the pipeline's Exchange). */
export interface IdleWatched {
  /** Bytes moved so far, both ways: a change means the stream is not idle. */
  activity(): number;
  /** The stream was idle for the whole timeout. */
  onStreamIdleTimeout(): void;
  idleSeen: number;
  idleSince: number;
}

export class StreamIdleTimeout {
  private readonly watched = new Set<IdleWatched>();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(readonly timeoutMs: number) {
    // A tenth of the timeout between sweeps (at most a second): it fires within 10% of its time.
    if (timeoutMs > 0) this.timer = setInterval(sweep, Math.max(5, Math.min(1000, Math.floor(timeoutMs / 10))), this).unref();
  }

  /** The time of the last sweep: new requests are stamped with it rather than reading the clock each. */
  private clock = performance.now();

  add(w: IdleWatched): void {
    if (this.timer === undefined) return;
    w.idleSince = this.clock;
    w.idleSeen = 0;
    this.watched.add(w);
  }

  delete(w: IdleWatched): void {
    this.watched.delete(w);
  }

  sweep(): void {
    const now = (this.clock = performance.now());
    for (const w of this.watched) {
      const seen = w.activity();
      if (seen !== w.idleSeen) {
        w.idleSeen = seen;
        w.idleSince = now;
      } else if (now - w.idleSince >= this.timeoutMs) {
        this.watched.delete(w);
        w.onStreamIdleTimeout();
      }
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function sweep(t: StreamIdleTimeout): void {
  t.sweep();
}
