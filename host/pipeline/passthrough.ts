// Original-destination forwarding (PassthroughCluster, resolution NONE): the
// authority names the upstream (port defaulted). The name is resolved and
// checked by the passthrough guard, and the connection goes to the address it
// checked (the Host header is kept).

import { splitAuthority, urlHost } from "../http/authority.js";
import * as Reply from "../http/local-reply.js";
import type { Exchange } from "./exchange.js";
import type { PassthroughVerdict } from "./passthrough-guard.js";

export function forwardPassthrough(ex: Exchange, authority: string, defaultPort: number): void {
  const { host, port: given } = splitAuthority(authority);
  const port = given === undefined ? defaultPort : Number(given);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    ex.localReply(Reply.BAD_REQUEST);
    return;
  }
  ex.options.passthrough.resolve(host, port, (verdict) => passthroughResolved(ex, verdict, port));
}

function passthroughResolved(ex: Exchange, verdict: PassthroughVerdict, port: number): void {
  if (ex.over) return;
  if (verdict.ok) ex.forward(-1, `http://${urlHost(verdict.address)}:${port}`);
  else if (verdict.reason === "unresolvable") ex.localReply(Reply.upstreamReset("connection failure", verdict.detail, false));
  else ex.localReply(verdict.reason === "self" ? Reply.PASSTHROUGH_LOOP : Reply.PASSTHROUGH_LOOPBACK);
}
