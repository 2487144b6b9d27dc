// The xDS translator's worker thread. Decoding Envoy's resources, translating
// them, assembling the compiled config and encoding its route image cost tens
// of milliseconds for a thousand routes: done here, off the thread that serves
// requests, as file reloads are compiled on the config worker. The serving
// thread gets the compiled config (v8-serialized, transferred), or for an
// endpoint-only update just the clusters whose endpoints changed.
//
// Requests come one at a time, in order: apply a response, then commit it
// (the proxy serves it) or undo it (the proxy refused it, or it stays unserved
// because the set is not warm yet: commit then too, so the resources are held).

import { parentPort } from "node:worker_threads";
import { serialize } from "node:v8";
import type { CompiledConfig } from "../config/compile.js";
import { patchEndpoints, type EndpointPatch } from "../envoy/translate/assemble.js";
import type { Settings } from "../config/model.js";
import { encodeImageFor } from "../core/route-core.js";
import type { AnyMessage } from "../envoy/protos.js";
import { Rejected, ResourceSet } from "./resource-set.js";

export type TranslateRequest =
  | { id: number; kind: "apply"; type: string; resources: AnyMessage[]; removed: string[]; replaceAll: boolean; settings: Settings; endpointsOnly: boolean }
  | { id: number; kind: "forget"; type: string; names: string[]; settings: Settings; endpointsOnly: boolean }
  /** The proxy's DNS answers changed: DNS clusters' endpoints are resolved again. */
  | { id: number; kind: "dns"; resolved: [string, string[]][]; settings: Settings; endpointsOnly: boolean }
  | { id: number; kind: "commit" }
  | { id: number; kind: "undo" };

export interface TranslateReply {
  id: number;
  /** The response cannot be served: the NACK's message. */
  rejected?: string;
  /** A bug, as text. */
  failure?: string;
  warm: boolean;
  /** apply: the names of the response's resources, in order (state of the world sends none beside them). */
  names?: string[];
  endpointNames: string[];
  routeNames: string[];
  /** Warm after a change beyond endpoints: the serialized CompiledConfig, its image encoded. */
  config?: ArrayBuffer;
  /** Warm after an endpoint-only change: the clusters (by index in the config served) whose endpoints changed. */
  endpoints?: EndpointPatch[];
}

const set = new ResourceSet();
/** The config the proxy serves (the last one committed), which an endpoint-only update patches. */
let served: CompiledConfig | undefined;
let candidate: CompiledConfig | undefined;
let undo: (() => void) | undefined;

function build(req: { settings: Settings; endpointsOnly: boolean }, reply: TranslateReply): ArrayBuffer[] {
  reply.warm = set.warm();
  if (!reply.warm) return [];
  if (req.endpointsOnly && served) {
    reply.endpoints = set.endpointPatches(served);
    candidate = patchEndpoints(served, reply.endpoints);
    return [];
  }
  candidate = set.build(req.settings);
  candidate.image = encodeImageFor(candidate.table);
  const bytes = serialize(candidate);
  candidate.image = undefined;
  const transferable = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
  reply.config = transferable;
  return [transferable];
}

parentPort?.on("message", (req: TranslateRequest) => {
  const reply: TranslateReply = { id: req.id, warm: false, endpointNames: [], routeNames: [] };
  let transfer: ArrayBuffer[] = [];
  try {
    if (req.kind === "commit") {
      if (candidate) served = candidate;
      candidate = undefined;
      undo = undefined;
    } else if (req.kind === "undo") {
      undo?.();
      undo = candidate = undefined;
    } else if (req.kind === "apply") {
      candidate = undefined;
      const applied = set.apply(req.type, req.resources, req.removed, req.replaceAll);
      undo = applied.undo;
      reply.names = applied.names;
      transfer = build(req, reply);
    } else if (req.kind === "forget") {
      candidate = undefined;
      set.forget(req.type, req.names);
      undo = undefined;
      transfer = build(req, reply);
    } else {
      candidate = undefined;
      const before = set.resolved;
      set.resolved = new Map(req.resolved);
      undo = () => (set.resolved = before);
      transfer = build(req, reply);
    }
  } catch (err) {
    if (err instanceof Rejected) reply.rejected = err.message;
    else reply.failure = (err as Error).stack ?? String(err);
  }
  reply.endpointNames = set.endpointNames();
  reply.routeNames = set.routeNames();
  parentPort!.postMessage(reply, transfer);
});
