// The config loader's worker thread: reading, parsing, validating and
// compiling a config take seconds for a large one (YAML parsing most of all),
// so file reloads run here, off the thread that serves requests. The result
// crosses back as v8-serialized bytes (Buffers, Maps and Sets survive it),
// transferred rather than copied.

import { parentPort } from "node:worker_threads";
import { serialize } from "node:v8";
import { configDigest } from "./digest.js";
import { loadConfigPath } from "./load.js";
import { encodeImageFor } from "../core/route-core.js";

/** What the serving thread asks: load `path` unless its files still have digest `unless` ("": load anyway). */
export interface LoadRequest {
  id: number;
  path: string;
  unless: string;
  /** The DNS answers to compile DNS-resolved ServiceEntries with (a DNS change recompiles here too). */
  resolved: [string, string[]][];
}

/** The answer: the files' digest, and the serialized LoadResult when they changed. */
export interface LoadReply {
  id: number;
  digest: string;
  result: ArrayBuffer | undefined;
  /** A bug in loading, as text (the serving thread reports it as a rejected config). */
  failure: string | undefined;
}

parentPort?.on("message", (req: LoadRequest) => {
  let reply: LoadReply;
  const digest = configDigest(req.path);
  if (digest === req.unless) reply = { id: req.id, digest, result: undefined, failure: undefined };
  else {
    try {
      const result = loadConfigPath(req.path, new Map(req.resolved));
      // Every recompile (a DNS change too) happens here: the model, most of the bytes, stays behind.
      if (result.config) result.config.model = undefined;
      // The table image too is encoded here, not on the serving thread.
      if (result.config) result.config.image = encodeImageFor(result.config.table);
      const bytes = serialize(result);
      const transferable = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
      reply = { id: req.id, digest, result: transferable, failure: undefined };
    } catch (err) {
      reply = { id: req.id, digest, result: undefined, failure: (err as Error).stack ?? String(err) };
    }
  }
  parentPort!.postMessage(reply, reply.result ? [reply.result] : []);
});
