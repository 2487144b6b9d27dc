// The request pipeline's entry, and phase 2 (route). Every request runs these
// phases, in this order (docs/phases.md has the chart):
//
//   1. decode    a listener (host/listeners) reads method, authority, path,
//                query and headers into a Downstream
//   2. route     the referenced fields are copied into the Wasm request area and
//                one core call returns route, destination, cluster and endpoint
//                (this file)
//   3. filters   CORS, fault, route actions, rewrite (filter-chain.ts, host/filters)
//   4. upstream  the router (router.ts) sends the request to the chosen endpoint
//                through the cluster's pool; attempts, retries, timeouts,
//                circuit breaking and outlier reports are the Exchange's
//                (exchange.ts); mirrors get their copies (mirror.ts)
//   5. respond   upstream headers and body, or an Envoy-compatible local reply
//
// HOT PATH — change with care: phases 2, 4 and 5 run for every request. No
// closures are created per request; the Exchange is the upstream client's
// handler and the listener's event sink.

import { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST } from "../core/decision.js";
import { writeRequest } from "../core/request-fields.js";
import { SLOT_AUTHORITY } from "../../assembly/layout.js";
import { splitAuthority } from "../http/authority.js";
import * as Reply from "../http/local-reply.js";
import type { Downstream } from "../listeners/downstream.js";
import type { ListenerRuntime } from "../listeners/listener-runtime.js";
import type { Snapshot } from "../proxy/snapshot.js";
import { Exchange } from "./exchange.js";
import { runFilters } from "./filter-chain.js";
import type { PipelineOptions } from "./options.js";
import { forwardPassthrough } from "./passthrough.js";
import { random32 } from "./random.js";
import { pluginsFor, WasmStage } from "./wasm-stage.js";

/** route()'s answer when the request's fields do not fit the core's request area. */
const FIELDS_TOO_LARGE = -431;

/** Copies the referenced fields into the core and decides. Returns the route code or FIELDS_TOO_LARGE. */
function route(snapshot: Snapshot, ds: Downstream, listener: ListenerRuntime): number {
  if (!writeRequest(snapshot.core, snapshot.headerNames, ds)) return FIELDS_TOO_LARGE;
  // A listener with routes of its own routes by its port (the slot written again; the forwarded Host stays as sent).
  if (listener.routePort !== undefined && !snapshot.core.set(SLOT_AUTHORITY, splitAuthority(ds.authority!).host + listener.routePort)) return FIELDS_TOO_LARGE;
  // A captured connection routes by the port it was going to, as Envoy's 15001 hands it to that port's listener.
  const original = ds.originalDestination;
  if (original !== undefined && !snapshot.core.set(SLOT_AUTHORITY, splitAuthority(ds.authority!).host + original.slice(original.lastIndexOf(":")))) return FIELDS_TOO_LARGE;
  return snapshot.core.route(random32());
}

/** Entry point from the outbound listeners: runs the phases for one request. */
export function handleRequest(options: PipelineOptions, listener: ListenerRuntime, ds: Downstream): Exchange {
  const ex = new Exchange(options, listener, options.holder.current, ds);
  const plugins = ex.snapshot.wasmPlugins.length === 0 ? undefined : pluginsFor(ex.snapshot.wasmPlugins, listener.direction, outboundPort(ds, listener));
  if (plugins !== undefined && plugins.length > 0 && ds.authority) {
    // Every plugin phase runs before fault, CORS and the router, so before routing: their edits route the request.
    ex.wasm = new WasmStage(ex);
    guarded(ex, () => ex.wasm!.runRequest(plugins, () => guarded(ex, () => routeAndFilter(ex, ex.ds))));
    return ex;
  }
  try {
    routeAndFilter(ex, ds);
  } catch (err) {
    internalError(ex, err as Error);
  }
  return ex;
}

/** A bug must not take the proxy down with it: this request fails, loudly, and the rest go on. */
function internalError(ex: Exchange, err: Error): void {
  ex.options.onInternalError(err);
  if (!ex.over) ex.localReply(Reply.INTERNAL_ERROR);
}

/** Runs a phase of a request with plugins (which continue from callbacks), with internalError's guard. */
function guarded(ex: Exchange, phase: () => void): void {
  try {
    phase();
  } catch (err) {
    internalError(ex, err as Error);
  }
}

/** The port a WasmPlugin's match reads: the listener's (Envoy's outbound listener is the destination port). */
function outboundPort(ds: Downstream, listener: ListenerRuntime): number {
  if (listener.routePort !== undefined) return Number(listener.routePort.slice(1));
  const { port } = splitAuthority(ds.originalDestination ?? ds.authority ?? "");
  return port === undefined ? 80 : Number(port);
}

function routeAndFilter(ex: Exchange, ds: Downstream): void {
  const snapshot = ex.snapshot;
  if (ds.authority === undefined || ds.authority === "") {
    ex.localReply(Reply.MISSING_HOST);
    return;
  }
  const code = route(snapshot, ds, ex.listener);
  const core = snapshot.core;
  ex.routeIndex = code;
  ex.vhost = core.vhost;
  ex.entry = core.entry;
  ex.dest = core.dest;
  ex.cluster = core.cluster;
  if (code >= 0) {
    // The route's cluster, for stats and the access log even when a filter answers (Envoy sets it with the route).
    ex.clusterName = snapshot.config.clusters[ex.cluster]?.name ?? "";
    runFilters(ex, 0);
    return;
  }
  switch (code) {
    case RC_NO_VHOST:
      if (snapshot.config.gateway) {
        ex.localReply(Reply.NO_ROUTE); // a gateway serves its VirtualServices' hosts only, as Envoy's 404
      } else if (snapshot.config.settings.outboundTrafficPolicy === "REGISTRY_ONLY") {
        ex.clusterName = "BlackHoleCluster";
        ex.localReply(Reply.BLOCKED_BY_REGISTRY_ONLY);
      } else {
        ex.clusterName = "PassthroughCluster";
        // Captured: where the client was going (Envoy's ORIGINAL_DST PassthroughCluster); else the authority.
        forwardPassthrough(ex, ds.originalDestination ?? ds.authority, 80);
      }
      break;
    case RC_NO_ROUTE:
      ex.localReply(Reply.NO_ROUTE);
      break;
    case RC_NO_CLUSTER:
      ex.localReply(Reply.NO_CLUSTER);
      break;
    case RC_NO_ENDPOINT:
      ex.clusterName = snapshot.config.clusters[ex.cluster]?.name ?? "";
      ex.localReply(Reply.NO_HEALTHY_UPSTREAM);
      break;
    case FIELDS_TOO_LARGE:
      ex.localReply(Reply.HEADERS_TOO_LARGE);
      break;
    default:
      throw new Error(`internal: route core returned unknown code ${code}`);
  }
}
