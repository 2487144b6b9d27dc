// The original destination of a connection the capture rules (instio
// iptables) redirected to a sidecar's 15001 or 15006, read with
// SO_ORIGINAL_DST through a small native addon (native/original-dst.c, built
// by `npm run build:addon` at install): Node has no API for it. Without the
// addon capture cannot work; the listeners that need it refuse to start with
// this module's reason, and explicit-proxy use is unaffected.

import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { splitAuthority } from "../http/authority.js";
import { packageFile } from "../package-root.js";

interface Addon {
  originalDst(fd: number): string | null;
}

let addon: Addon | undefined;
let failure: string | undefined;

/** The addon, or why it cannot be had (undefined when it loaded). */
export function captureUnavailable(): string | undefined {
  if (addon || failure) return failure;
  if (process.platform !== "linux") return (failure = `traffic capture needs Linux (SO_ORIGINAL_DST); this is ${process.platform}`);
  const path = fileURLToPath(packageFile("native/build/Release/original_dst.node"));
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (err) {
    failure = `the original-destination addon cannot load (${(err as Error).message.split("\n")[0]}); build it with 'npm run build:addon' (node-gyp, a C compiler and Node's headers)`;
  }
  return failure;
}

/** An original destination's address (an IPv6 one without its brackets) and port. */
export function destinationParts(destination: string): { address: string; port: number } {
  const { host, port } = splitAuthority(destination);
  return { address: host.replace(/^\[|\]$/g, ""), port: Number(port) };
}

/**
 * Where the client meant to connect, "ADDRESS:PORT" (IPv6 in brackets), from the NAT record of the redirect;
 * undefined when the connection was not redirected (a client that connected to the sidecar's port itself).
 */
export function originalDestination(socket: Socket): string | undefined {
  if (captureUnavailable() !== undefined) return undefined;
  const fd = (socket as Socket & { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return undefined;
  return addon!.originalDst(fd) ?? undefined;
}
