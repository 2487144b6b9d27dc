// Phases 2–4 for a request to the local application (Istio's inbound HCM):
//   metadata exchange (the caller's headers read, and stripped on the way up)
//   → path normalization → authorization (AuthorizationPolicy) → the app,
// as the catch-all route to inbound|PORT|| Istio gives a sidecar's inbound side.

import * as Reply from "../http/local-reply.js";
import { normalizePath } from "../http/path.js";
import type { Downstream, DownstreamEvents } from "../listeners/downstream.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { AuthzRequest } from "../security/authorization.js";
import { PEER_METADATA, PEER_METADATA_ID } from "../security/peer-metadata.js";
import { Exchange } from "./exchange.js";
import type { PipelineOptions, UpstreamClient } from "./options.js";

/** Where inbound requests go: the application's address and port (and the client that reaches it, when not the default). */
export interface InboundApp {
  readonly origin: string;
  readonly clusterName: string;
  readonly address: string;
  readonly port: number;
  readonly client?: UpstreamClient;
}

/** Envoy's RBAC filter denial: 403 with its body and details; it sets no response flag. */
function rbacDenied(policy: string): Reply.LocalReply {
  return { status: 403, flag: "-", body: "RBAC: access denied", details: `rbac_access_denied_matched_policy[${policy}]` };
}

/** The request as AuthorizationPolicy reads it. */
class InboundRequest implements AuthzRequest {
  constructor(
    private readonly ds: Downstream,
    readonly path: string,
    private readonly app: InboundApp,
  ) {}
  get principal(): string {
    return this.ds.peer?.principal ?? "";
  }
  get sourceAddress(): string {
    return this.ds.remoteAddress;
  }
  get destinationAddress(): string {
    return this.app.address;
  }
  get destinationPort(): number {
    return this.app.port;
  }
  get authority(): string {
    return this.ds.authority ?? "";
  }
  get method(): string {
    return this.ds.method;
  }
  get sni(): string {
    return this.ds.peer?.sni ?? "";
  }
  header(name: string): string | undefined {
    return this.ds.header(name);
  }
}

export function handleInbound(p: PipelineOptions, runtime: ListenerRuntime, ds: Downstream, app: InboundApp): DownstreamEvents {
  const snapshot = p.holder.current;
  const ex = new Exchange(p, runtime, snapshot, ds);
  ex.clusterName = app.clusterName;
  const peerId = ds.header(PEER_METADATA_ID);
  if (peerId !== undefined || ds.header(PEER_METADATA) !== undefined) {
    ex.downstreamPeer = p.peers.peer(peerId, ds.header(PEER_METADATA));
    ex.answerPeerMetadata = peerId !== undefined;
  }
  const path = normalizePath(ds.path);
  if (path === undefined) {
    ex.localReply(Reply.BAD_REQUEST);
    return ex;
  }
  if (path !== ds.path) ex.upstreamPath = ds.query === undefined ? path : `${path}?${ds.query}`;
  const authorizer = snapshot.authorizer;
  if (!authorizer.empty) {
    const decision = authorizer.decide(new InboundRequest(ds, path, app), snapshot.stats.rbac);
    if (!decision.allowed) {
      ex.localReply(rbacDenied(decision.policy));
      return ex;
    }
  }
  ex.directClient = app.client;
  ex.forward(-1, app.origin);
  return ex;
}
