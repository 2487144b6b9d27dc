// The serving thread's side of the xDS translator worker (translate-worker.ts):
// one request at a time, in order; a worker that dies is started again, and
// the resources it held are sent to the new one by the client's resubscription
// (the requests in flight fail with the reason).

import { deserialize } from "node:v8";
import { Worker } from "node:worker_threads";
import type { CompiledConfig } from "../config/compile.js";
import type { EndpointPatch } from "../envoy/translate/assemble.js";
import { workerScript } from "../worker-script.js";
import type { TranslateReply, TranslateRequest } from "./translate-worker.js";

/** What the proxy is asked to serve: a whole config, or new endpoints for some clusters of the one it serves. */
export type XdsUpdate = { config: CompiledConfig; endpoints?: undefined } | { config?: undefined; endpoints: EndpointPatch[] };

type Request = TranslateRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

export class Translator {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly waiting = new Map<number, (reply: TranslateReply) => void>();
  private stopped = false;

  request(req: Request): Promise<TranslateReply> {
    // After stop, no worker is started again: the proxy is closing.
    if (this.stopped) return Promise.resolve({ id: 0, failure: "the translator is stopped", warm: false, endpointNames: [], routeNames: [] });
    if (!this.worker) {
      const worker = (this.worker = new Worker(workerScript(import.meta.url, "translate-worker.js")));
      worker.unref();
      worker.on("message", (reply: TranslateReply) => {
        this.waiting.get(reply.id)?.(reply);
        this.waiting.delete(reply.id);
      });
      worker.on("error", (err) => this.failAll(worker, err));
      worker.on("exit", () => this.failAll(worker, new Error("the xDS translator worker exited")));
    }
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.worker!.postMessage({ ...req, id } as TranslateRequest);
    });
  }

  /** The update a reply carries, when the resources are warm. */
  static update(reply: TranslateReply): XdsUpdate | undefined {
    if (reply.config) return { config: deserialize(Buffer.from(reply.config)) as CompiledConfig };
    if (reply.endpoints) return { endpoints: reply.endpoints };
    return undefined;
  }

  private failAll(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined; // the next request starts a new one
    for (const [id, resolve] of this.waiting) resolve({ id, failure: err.stack ?? err.message, warm: false, endpointNames: [], routeNames: [] });
    this.waiting.clear();
  }

  stop(): void {
    this.stopped = true;
    void this.worker?.terminate();
    this.worker = undefined;
  }
}
