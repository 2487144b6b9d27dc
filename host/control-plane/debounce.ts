// istiod's push debouncing (pilot/pkg/xds/discovery.go debounce): a push fires
// once no event has come for the quiet period, or once the first unpushed event
// is the maximum old; events meanwhile merge into that push; one push runs at a time.

export interface DebounceOptions {
  /** PILOT_DEBOUNCE_AFTER: 100 ms. */
  quietMs: number;
  /** PILOT_DEBOUNCE_MAX: 10 s. */
  maxMs: number;
}

export const ISTIO_DEBOUNCE: DebounceOptions = { quietMs: 100, maxMs: 10_000 };

export class Debouncer {
  private firstEventAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly options: DebounceOptions,
    /** Runs the merged push; `since` is when its first event came. */
    private readonly push: (since: number) => Promise<void>,
  ) {}

  /** An event: a file changed, a watched object changed. */
  event(): void {
    const now = Date.now();
    this.firstEventAt ??= now;
    this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    if (this.firstEventAt === undefined) return;
    const untilMax = this.firstEventAt + this.options.maxMs - Date.now();
    this.timer = setTimeout(() => void this.fire(), Math.max(0, Math.min(this.options.quietMs, untilMax)));
  }

  private async fire(): Promise<void> {
    if (this.running) return; // the running push re-arms when it ends
    const since = this.firstEventAt;
    if (since === undefined) return;
    this.firstEventAt = undefined;
    this.running = true;
    try {
      await this.push(since);
    } finally {
      this.running = false;
      this.arm();
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.firstEventAt = undefined;
  }
}
