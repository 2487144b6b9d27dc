// Two sockets joined into one TCP relay: what the TCP listeners (listener-tcp.ts)
// and the capturing listener's passthrough (listener-capture.ts) both do once
// they know where a connection goes.

import type { Socket } from "node:net";

/**
 * Joins `client` to `upstream` once it connects: bytes flow both ways (the
 * client's, held paused until then, resume), and either side closing or
 * failing ends both, once. `connected` runs before the bytes flow (an initial
 * write goes first); `ended` runs once at the end, told whether the upstream
 * ever connected.
 */
export function spliceSockets(client: Socket, upstream: Socket, events: { connected?(): void; ended?(connected: boolean): void } = {}): void {
  let connected = false;
  let done = false;
  upstream.once("connect", () => {
    connected = true;
    events.connected?.();
    upstream.pipe(client);
    client.pipe(upstream);
    client.resume();
  });
  const end = (): void => {
    if (done) return;
    done = true;
    events.ended?.(connected);
    client.destroy();
    upstream.destroy();
  };
  upstream.once("error", end);
  upstream.once("close", end);
  client.once("error", end);
  client.once("close", end);
}
