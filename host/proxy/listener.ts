// What every listener engine provides.

import type { Downstream, DownstreamEvents } from "./downstream.js";

/** Runs the pipeline for one request; returns the sink for the listener's events. */
export type RequestHandler = (ds: Downstream) => DownstreamEvents;

export interface Listener {
  engine: "uws" | "node";
  address: string;
  port: number;
  /** Stops accepting connections; open connections keep being served (draining). */
  stopAccepting(): void;
  close(): Promise<void>;
}
