// undici's handler for one upstream attempt. It passes callbacks on while it is
// its exchange's current attempt; once superseded (a retry, a per-try timeout)
// its late callbacks are dropped, so they cannot touch the next attempt.

import type { Dispatcher } from "undici";

type Headers = Record<string, string | string[] | undefined>;

/** What an attempt reports to (the Exchange). */
export interface AttemptTarget {
  /** The current attempt's number; an attempt with another is superseded. */
  readonly attemptId: number;
  onRequestStart(controller: Dispatcher.DispatchController): void;
  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers): void;
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void;
  onResponseEnd(trailers?: Headers): void;
  onResponseError(controller: Dispatcher.DispatchController, err: Error): void;
}

export class Attempt implements Dispatcher.DispatchHandler {
  constructor(
    private readonly target: AttemptTarget,
    private readonly id: number,
  ) {}
  private get current(): boolean {
    return this.target.attemptId === this.id;
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.current) this.target.onRequestStart(controller);
    else controller.abort(new Error("superseded attempt"));
  }
  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers): void {
    if (this.current) this.target.onResponseStart(controller, statusCode, headers);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.current) this.target.onResponseData(controller, chunk);
  }
  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Headers): void {
    if (this.current) this.target.onResponseEnd(trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.current) this.target.onResponseError(controller, err);
  }
}
