// A request body that retries and shadows can send again, as Envoy's router
// buffers one: the body streams to the current attempt as it arrives while a
// copy is kept, up to a limit. Past the limit the copy is dropped, later
// retries and shadows are abandoned (and counted by the caller), and the
// attempt in flight keeps streaming with backpressure. Memory per request is
// bounded by the limit.

import { PassThrough, type Readable } from "node:stream";

/** Envoy's default per-connection buffer limit, which bounds its retry/shadow buffer. */
export const REPLAY_BUFFER_LIMIT = 1024 * 1024;

function ignore(): void {}

export class ReplayableBody {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private failed: Error | undefined;
  /** The body is larger than the limit: nothing can be replayed any more. */
  overflowed = false;
  private primary: PassThrough | undefined;
  private readonly shadows = new Set<PassThrough>();

  constructor(
    private readonly source: Readable,
    /** Called for each shadow dropped because the body outgrew the buffer (Envoy counts retry_or_shadow_abandoned). */
    private readonly onShadowDropped: () => void,
    private readonly limit = REPLAY_BUFFER_LIMIT,
  ) {
    // Attached on the next turn, as undici attaches to a body it is given:
    // attaching inside the uWS request handler stalled uploads after the first
    // chunk (the uWS listener's pause/resume re-entered its data callback).
    setImmediate(() => source.on("data", (chunk: Buffer) => this.onData(chunk)));
    source.once("end", () => {
      this.ended = true;
      this.primary?.end();
      for (const s of this.shadows) s.end();
    });
    source.on("error", (err: Error) => {
      this.failed = err;
      this.primary?.destroy(err);
      for (const s of this.shadows) s.destroy(err);
    });
  }

  /**
   * A stream of the whole body for a new attempt, replacing the previous
   * attempt's stream. Undefined when the body can no longer be replayed.
   */
  forAttempt(): Readable | undefined {
    const previous = this.primary;
    this.primary = undefined;
    previous?.destroy();
    const stream = this.replay();
    if (stream) {
      this.primary = stream;
      stream.on("drain", () => this.source.resume());
    }
    return stream;
  }

  /** A copy of the body for a shadow: never slows the source; dropped if the body overflows. */
  forShadow(): Readable | undefined {
    const stream = this.replay();
    if (stream && !this.ended) {
      this.shadows.add(stream);
      stream.once("close", () => this.shadows.delete(stream));
    }
    return stream;
  }

  private replay(): PassThrough | undefined {
    if (this.overflowed || this.failed) return undefined;
    // Buffered chunks go in at once: they are already in memory, bounded by the limit.
    const stream = new PassThrough({ highWaterMark: this.limit });
    // A client that goes away mid-body fails the source, and so every copy; the exchange hears of the abort
    // from its listener. The upstream client stops listening once it is done with a copy: an 'error'
    // nobody listens to would end the process.
    stream.on("error", ignore);
    for (const c of this.chunks) stream.write(c);
    if (this.ended) stream.end();
    return stream;
  }

  private onData(chunk: Buffer): void {
    if (!this.overflowed) {
      this.size += chunk.length;
      if (this.size > this.limit) {
        this.overflowed = true;
        this.chunks = [];
        // A shadow cannot hold more than the limit either.
        for (const s of this.shadows) {
          s.destroy();
          this.onShadowDropped();
        }
        this.shadows.clear();
      } else {
        this.chunks.push(chunk);
      }
    }
    for (const s of this.shadows) s.write(chunk);
    // Backpressure follows the attempt in flight only.
    if (this.primary && !this.primary.write(chunk)) this.source.pause();
  }
}
