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
import { pluginsFor, WasmStage } from "./wasm-stage.js";

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
  if (normalizePath(ds.path) === undefined) {
    ex.localReply(Reply.BAD_REQUEST);
    return ex;
  }
  if (snapshot.wasmPlugins.length === 0) {
    authorizeAndForward(ex, app);
    return ex;
  }
  // Istio's inbound HCM: AUTHN and AUTHZ plugins, then RBAC, then STATS and unspecified plugins, then the router.
  const early = pluginsFor(snapshot.wasmPlugins, "inbound", app.port, ["AUTHN", "AUTHZ"]);
  const late = pluginsFor(snapshot.wasmPlugins, "inbound", app.port, ["STATS", "UNSPECIFIED_PHASE"]);
  if (early.length + late.length === 0) {
    authorizeAndForward(ex, app);
    return ex;
  }
  const stage = (ex.wasm = new WasmStage(ex));
  const forward = (): void => {
    // A later plugin may have changed the path again: it goes upstream normalized, as the HCM normalizes it.
    const path = normalizePath(ex.ds.path) ?? ex.ds.path;
    ex.upstreamPath = path === ex.ds.path ? undefined : ex.ds.query === undefined ? path : `${path}?${ex.ds.query}`;
    forwardToApp(ex, app);
  };
  stage.runRequest(early, () => {
    if (!authorize(ex, app)) return;
    stage.runRequest(late, forward);
  });
  return ex;
}

function authorizeAndForward(ex: Exchange, app: InboundApp): void {
  if (authorize(ex, app)) forwardToApp(ex, app);
}

/** AuthorizationPolicy on the normalized path; a denial answers the request (false). */
function authorize(ex: Exchange, app: InboundApp): boolean {
  const ds = ex.ds;
  const path = normalizePath(ds.path);
  if (path === undefined) {
    ex.localReply(Reply.BAD_REQUEST);
    return false;
  }
  if (path !== ds.path) ex.upstreamPath = ds.query === undefined ? path : `${path}?${ds.query}`;
  const authorizer = ex.snapshot.authorizer;
  if (!authorizer.empty) {
    const decision = authorizer.decide(new InboundRequest(ds, path, app), ex.snapshot.stats.rbac);
    if (!decision.allowed) {
      ex.localReply(rbacDenied(decision.policy));
      return false;
    }
  }
  return true;
}

function forwardToApp(ex: Exchange, app: InboundApp): void {
  ex.directClient = app.client;
  ex.forward(-1, app.origin);
}
