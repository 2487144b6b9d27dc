// What every listener engine provides.

import type { Server } from "node:net";
import { socketAddon } from "./socket-addon.js";
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

/** The kernel's queue of connections not yet accepted: Node's default. */
const BACKLOG = 511;

/**
 * `server.listen(port, address)`, or with `reusePort` a socket of its own with SO_REUSEPORT, as Envoy binds
 * each worker's listener: every serving thread binds one and the kernel spreads connections across them. A
 * failure (the port taken without SO_REUSEPORT, an address that is not an IP literal) is the server's "error".
 */
export function listenOn(server: Server, address: string, port: number, reusePort: boolean, ready: () => void): void {
  if (!reusePort) {
    server.listen(port, address, ready);
    return;
  }
  const { addon, failure } = socketAddon();
  let fd: number;
  try {
    if (!addon) throw new Error(`listeners shared by worker threads need the socket addon: ${failure}`);
    fd = addon.reusePortListener(address, port, BACKLOG);
  } catch (err) {
    process.nextTick(() => server.emit("error", err));
    return;
  }
  server.listen({ fd }, ready);
}

/**
 * Binds a node:net server of instio's own HTTP/1.1 engine and describes it as a Listener: `bound` learns the port
 * (0 picks one), `closeConnections` ends what is open once it stops accepting; `reusePort` as listenOn's.
 */
export function bindH1Server(server: Server, address: string, port: number, bound: (port: number) => void, closeConnections: () => void, reusePort = false): Promise<Listener> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    listenOn(server, address, port, reusePort, () => {
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
