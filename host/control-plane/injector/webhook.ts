// The injection webhook (istiod's /inject on 15017): Kubernetes sends an
// AdmissionReview v1 for each pod being created; the answer allows it, with a
// JSONPatch that adds the sidecar when the pod is to be injected. The pod
// shape is inject.ts's. As Istio's: 415 unless the body is JSON, the review's
// apiVersion and kind echoed, a skipped pod allowed without a patch, a pod
// that cannot be read refused with the reason (the webhook's failurePolicy
// decides what the API server does then).

import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import jsonpatch from "fast-json-patch";
import { injectionRequired, injectPodSpec, type InjectOptions, type KubeObject } from "./inject.js";

/** An AdmissionReview larger than this is refused (the API server's own request limit is 3 MiB). */
const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

export interface WebhookOptions {
  address: string;
  port: number;
  /** The serving certificate (the webhook's Service name) and its key, PEM. */
  cert: string;
  key: string;
  inject: InjectOptions;
  /** A namespace's labels when the registry knows it (istio-injection=enabled), else undefined. */
  namespaceLabels(namespace: string): Record<string, string> | undefined;
  /** Counts each review: "injected", "skipped" or "error". */
  reviewed(result: "injected" | "skipped" | "error"): void;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: "JSONPatch";
  patch?: string;
  status?: { message: string };
}

/** The answer to one AdmissionReview's request (pure: the tests call it directly too). */
export function admit(review: unknown, o: Pick<WebhookOptions, "inject" | "namespaceLabels">): { response: AdmissionResponse; result: "injected" | "skipped" | "error" } {
  const request = (review as { request?: KubeObject } | null)?.request;
  const uid = typeof request?.uid === "string" ? request.uid : "";
  const refuse = (message: string) => ({ response: { uid, allowed: false, status: { message } }, result: "error" as const });
  if (!request || uid === "") return refuse("not an AdmissionReview: request.uid is missing");
  const pod = request.object as KubeObject | undefined;
  if (!pod || typeof pod !== "object" || pod.kind !== "Pod" || typeof pod.spec !== "object" || pod.spec === null) return refuse("request.object is not a Pod");
  if (!Array.isArray((pod.spec as KubeObject).containers)) return refuse("the Pod has no spec.containers");
  const meta = (pod.metadata !== null && typeof pod.metadata === "object" && !Array.isArray(pod.metadata) ? pod.metadata : {}) as KubeObject;
  const namespace = String(request.namespace ?? meta.namespace ?? "default");
  const decision = injectionRequired(meta, pod.spec as KubeObject, namespace, o.namespaceLabels(namespace));
  if (!decision.inject) return { response: { uid, allowed: true }, result: "skipped" };
  const injected = injectPodSpec(meta, pod.spec as KubeObject, o.inject);
  const patch = jsonpatch.compare(pod, { ...pod, ...injected });
  return { response: { uid, allowed: true, patchType: "JSONPatch", patch: Buffer.from(JSON.stringify(patch)).toString("base64") }, result: "injected" };
}

function reply(res: ServerResponse, status: number, body: string, type = "text/plain"): void {
  res.writeHead(status, { "content-type": type }).end(body);
}

function handle(req: IncomingMessage, res: ServerResponse, o: WebhookOptions): void {
  const path = (req.url ?? "").split("?")[0]!;
  if (path !== "/inject" && !path.startsWith("/inject/")) return reply(res, 404, "not found\n");
  if (req.method !== "POST") return reply(res, 405, "POST an AdmissionReview\n");
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) return reply(res, 415, "invalid Content-Type, want `application/json`\n");
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size > MAX_REVIEW_BYTES) {
      reply(res, 413, "AdmissionReview too large\n");
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on("end", () => {
    if (res.headersSent) return;
    let review: KubeObject;
    try {
      review = JSON.parse(Buffer.concat(chunks).toString("utf8")) as KubeObject;
    } catch (err) {
      o.reviewed("error");
      return reply(res, 400, `could not decode the body: ${(err as Error).message}\n`);
    }
    const { response, result } = admit(review, o);
    o.reviewed(result);
    reply(res, 200, JSON.stringify({ apiVersion: typeof review?.apiVersion === "string" ? review.apiVersion : "admission.k8s.io/v1", kind: typeof review?.kind === "string" ? review.kind : "AdmissionReview", response }), "application/json");
  });
}

export async function startInjectionWebhook(o: WebhookOptions): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: o.cert, key: o.key, minVersion: "TLSv1.2" }, (req, res) => handle(req, res, o));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.address, () => resolve((server.address() as AddressInfo).port));
  });
  return { server, port };
}
