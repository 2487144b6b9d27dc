// What every listener engine provides.

import type { RouteRequest } from "../core/decision.js";
import type { Downstream, DownstreamEvents } from "./downstream.js";
import type { UpgradeDecision } from "./upgrade.js";

/** Runs the pipeline for one request; returns the sink for the listener's events. */
export type RequestHandler = (ds: Downstream) => DownstreamEvents;

/** Routes a WebSocket upgrade request (see upgrade.ts) and tells `done` where it goes; listeners relay the connection. */
export type UpgradeRouter = (req: RouteRequest, done: (decision: UpgradeDecision) => void) => void;

export interface Listener {
  engine: "h1" | "uws" | "node";
  address: string;
  port: number;
  /** Stops accepting connections; open connections keep being served (draining). */
  stopAccepting(): void;
  close(): Promise<void>;
}
