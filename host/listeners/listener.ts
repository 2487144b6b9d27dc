// What every listener engine provides.

import type { Server } from "node:net";
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

/**
 * Binds a node:net server of instio's own HTTP/1.1 engine and describes it as a Listener: `bound` learns the port
 * (0 picks one), `closeConnections` ends what is open once it stops accepting.
 */
export function bindH1Server(server: Server, address: string, port: number, bound: (port: number) => void, closeConnections: () => void): Promise<Listener> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => {
      server.off("error", reject);
      const at = server.address();
      const boundPort = typeof at === "object" && at ? at.port : port;
      bound(boundPort);
      const stopAccepting = (): void => {
        if (server.listening) server.close();
      };
      resolve({
        engine: "h1",
        address,
        port: boundPort,
        stopAccepting,
        close: async () => {
          stopAccepting();
          closeConnections();
        },
      });
    });
  });
}
