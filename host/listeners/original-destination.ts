// The original destination of a connection the capture rules (instio
// iptables) redirected to a sidecar's 15001 or 15006, read with
// SO_ORIGINAL_DST through a small native addon (native/original-dst.c, built
// by `npm run build:addon` at install): Node has no API for it. Without the
// addon capture cannot work; the listeners that need it refuse to start with
// this module's reason, and explicit-proxy use is unaffected.

import type { Socket } from "node:net";
import { splitAuthority } from "../http/authority.js";
import { socketAddon, type SocketAddon } from "./socket-addon.js";

let addon: SocketAddon | undefined;

/** Why capture cannot work here (the addon cannot load), or undefined when it can. */
export function captureUnavailable(): string | undefined {
  const loaded = socketAddon();
  addon = loaded.addon;
  return loaded.failure;
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
  if (!addon && captureUnavailable() !== undefined) return undefined;
  const fd = (socket as Socket & { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return undefined;
  return addon!.originalDst(fd) ?? undefined;
}
