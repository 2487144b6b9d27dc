// instio's native addon (native/original-dst.c, built by `npm run build:addon`
// at install): the socket calls Node 20 has no API for, SO_ORIGINAL_DST for
// traffic capture and SO_REUSEPORT for listeners shared by serving threads.
// Without it those features refuse to start with this module's reason; the
// rest of the proxy is unaffected.

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { packageFile } from "../package-root.js";

export interface SocketAddon {
  /** "ADDRESS:PORT" a redirected connection was going to, or null when it was not redirected. */
  originalDst(fd: number): string | null;
  /** A listening socket with SO_REUSEPORT bound to `address` (an IP literal) and `port`: its file descriptor. */
  reusePortListener(address: string, port: number, backlog: number): number;
}

let addon: SocketAddon | undefined;
let failure: string | undefined;

/** The addon, or why it cannot be had. */
export function socketAddon(): { addon: SocketAddon; failure?: undefined } | { addon?: undefined; failure: string } {
  if (addon) return { addon };
  if (failure) return { failure };
  if (process.platform !== "linux") return { failure: (failure = `it needs Linux (SO_ORIGINAL_DST, SO_REUSEPORT); this is ${process.platform}`) };
  const path = fileURLToPath(packageFile("native/build/Release/original_dst.node"));
  try {
    addon = createRequire(import.meta.url)(path) as SocketAddon;
    return { addon };
  } catch (err) {
    return { failure: (failure = `the socket addon cannot load (${(err as Error).message.split("\n")[0]}); build it with 'npm run build:addon' (node-gyp, a C compiler and Node's headers)`) };
  }
}
