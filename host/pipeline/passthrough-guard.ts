// Where a passthrough request may go. Passthrough (PassthroughCluster, a
// PASSTHROUGH load balancer, a WebSocket to an unknown host) forwards to the
// address the request names; under iptables capture Envoy never sees the
// proxy's own traffic, but an explicit-proxy client can name anything. So the
// name is resolved first, as the connection would resolve it (getaddrinfo takes
// `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`, `0` and /etc/hosts names),
// and the decision is made on the address the proxy will connect to — which is
// then the address it connects to, so a second lookup cannot answer otherwise.
//
//   - an address of this machine (loopback, unspecified, any interface's) on one
//     of the proxy's own ports (listeners, admin, agent): refused, always;
//   - any other loopback or unspecified address: refused unless the settings'
//     passthrough.allowLoopback says otherwise.

import { lookup } from "node:dns";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

export type PassthroughVerdict =
  | { ok: true; address: string }
  | { ok: false; reason: "self" | "loopback" | "unresolvable"; detail: string };

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d or ::ffff:7f00:1) as plain IPv4; others unchanged, lower-cased. */
export function unmapIPv4(address: string): string {
  const a = address.toLowerCase();
  const m = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(.+)$/.exec(a);
  if (!m || isIP(a) !== 6) return a;
  const tail = m[1]!;
  if (isIP(tail) === 4) return tail;
  const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(tail);
  if (!hex) return a;
  const hi = parseInt(hex[1]!, 16);
  const lo = parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

function isLoopbackOrUnspecified(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith("127.") || address === "0.0.0.0";
  return /^(0{0,4}:){1,7}0{0,3}1$|^::1$/.test(address) || /^[0:]+$/.test(address);
}

function canonicalIPv6(address: string): string {
  // Expands "::" so that equal addresses compare equal as strings.
  const [head, tail] = address.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((x) => parseInt(x, 16).toString(16)).join(":");
}

function canonical(address: string): string {
  const a = unmapIPv4(address);
  return isIP(a) === 6 ? canonicalIPv6(a) : a;
}

export class PassthroughGuard {
  private readonly local = new Set<string>();

  constructor(
    /** The proxy's own ports; filled as listeners bind. */
    readonly selfPorts: Set<number>,
    private readonly allowLoopback: boolean,
  ) {
    for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) this.local.add(canonical(i.address));
  }

  /** The verdict for a resolved address (IPv4, IPv6 or IPv4-mapped). */
  check(address: string, port: number): PassthroughVerdict {
    const a = canonical(address);
    const loopback = isLoopbackOrUnspecified(a);
    if ((loopback || this.local.has(a)) && this.selfPorts.has(port)) return { ok: false, reason: "self", detail: `${address}:${port} is this proxy` };
    if (loopback && !this.allowLoopback) return { ok: false, reason: "loopback", detail: `${address}:${port} is a loopback address (settings: passthrough.allowLoopback)` };
    return { ok: true, address: unmapIPv4(address) };
  }

  /** Resolves `host` (a name, an IP literal in any form getaddrinfo takes, or "[v6]") and decides on the result. */
  resolve(host: string, port: number, done: (verdict: PassthroughVerdict) => void): void {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    if (isIP(bare) !== 0) {
      done(this.check(bare, port));
      return;
    }
    lookup(bare, (err, address) => {
      if (err) done({ ok: false, reason: "unresolvable", detail: `${bare}: ${err.code ?? err.message}` });
      else done(this.check(address, port));
    });
  }
}
