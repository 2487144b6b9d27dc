// The mesh from a live Kubernetes cluster: list+watch informers
// (@kubernetes/client-node) for the registry's kinds and Istio's config CRDs,
// kept as documents for the same reader the files go through. Every object
// becomes a document named `cluster:KIND/NAMESPACE/NAME`, so a problem in a
// VirtualService in the cluster is reported as precisely as one in a file.
//
// The informer relists on 410 Gone (as an HTTP status or a watch ERROR event)
// and resumes a closed watch from the last resourceVersion, bookmarks included;
// on any other error it stops, and this source restarts it with a backoff.

import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import * as k8s from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { Logger } from "../../log.js";
import { parseSource, type DiagnosticSink, type SourceDocument } from "../../config/source.js";
import { CLUSTER_DOCUMENT_PREFIX, type ClusterDocuments } from "../mesh.js";
import type { ControlPlaneMetrics } from "../metrics.js";

export interface WatchedKind {
  apiVersion: string;
  kind: string;
  /** The cluster-wide collection: /api/v1/services, /apis/GROUP/VERSION/PLURAL. */
  path: string;
  /** Registry kinds count in pilot_k8s_reg_events, Istio config in pilot_k8s_cfg_events. */
  role: "registry" | "config";
}

const ISTIO_KINDS: [kind: string, plural: string][] = [
  ["VirtualService", "virtualservices"],
  ["DestinationRule", "destinationrules"],
  ["ServiceEntry", "serviceentries"],
  ["WorkloadEntry", "workloadentries"],
  ["Gateway", "gateways"],
  ["Sidecar", "sidecars"],
];

export const WATCHED_KINDS: WatchedKind[] = [
  { apiVersion: "v1", kind: "Namespace", path: "/api/v1/namespaces", role: "registry" },
  { apiVersion: "v1", kind: "Service", path: "/api/v1/services", role: "registry" },
  { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", path: "/apis/discovery.k8s.io/v1/endpointslices", role: "registry" },
  { apiVersion: "v1", kind: "Pod", path: "/api/v1/pods", role: "registry" },
  ...ISTIO_KINDS.map(([kind, plural]): WatchedKind => ({ apiVersion: "networking.istio.io/v1", kind, path: `/apis/networking.istio.io/v1/${plural}`, role: "config" })),
];

/** What an API object carries that the reader uses (everything else passes through as read). */
interface ApiObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface ApiList {
  metadata?: { resourceVersion?: string };
  items: ApiObject[];
}

/** The metadata the reader accepts; the rest (managedFields, ownerReferences, ...) is the API server's bookkeeping. */
const KEPT_METADATA = ["name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation"];

export interface KubeClusterOptions {
  kubeConfig: k8s.KubeConfig;
  log: Logger;
  metrics: ControlPlaneMetrics;
  /** Any object added, changed or deleted (the caller debounces). */
  onChange: () => void;
  /** First retry after an error, doubling up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
  /** A collection that answers 404 (a CRD not installed) is listed again this often. */
  missingRetryMs?: number;
  kinds?: WatchedKind[];
}

class KindWatch {
  informer: k8s.ListWatch<ApiObject> | undefined;
  synced = false;
  /** false while the collection answers 404 (its CRD is not installed). */
  installed = true;
  retryMs: number;
  timer: NodeJS.Timeout | undefined;
  lastError = "";
  constructor(
    readonly kind: WatchedKind,
    retryMs: number,
  ) {
    this.retryMs = retryMs;
  }
}

/**
 * Watch requests ask for bookmarks, so a quiet collection's resourceVersion
 * stays fresh and a reconnect needs no relist. The informer reconnects a watch
 * that ended at once, with no pause: one that lasted under a second waits a
 * second first, so a server closing every watch is not asked again in a loop.
 */
class BookmarkWatch extends k8s.Watch {
  private lastStart = 0;
  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const since = Date.now() - this.lastStart;
    if (since < 1000) await new Promise((r) => setTimeout(r, 1000 - since));
    this.lastStart = Date.now();
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, callback, done);
  }
}

export class KubeClusterSource implements ClusterDocuments {
  private readonly watches: KindWatch[];
  private readonly documentCache = new Map<string, { version: string; docs: SourceDocument[] }>();
  /** The last accepted documents of each object. */
  private readonly accepted = new Map<string, SourceDocument[]>();
  /** Objects rejected at a version: name → that resourceVersion. */
  private readonly heldBack = new Map<string, string>();
  private closed = false;
  private readonly server: string;

  private constructor(private readonly options: KubeClusterOptions) {
    const cluster = options.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig has no current cluster");
    this.server = cluster.server.replace(/\/+$/, "");
    this.watches = (options.kinds ?? WATCHED_KINDS).map((k) => new KindWatch(k, options.retryMs ?? 1000));
  }

  /** Starts every informer and waits until each has listed once (or given up on a missing CRD). */
  static async start(options: KubeClusterOptions, syncTimeoutMs = 60_000): Promise<KubeClusterSource> {
    const source = new KubeClusterSource(options);
    for (const w of source.watches) source.startWatch(w);
    const until = Date.now() + syncTimeoutMs;
    while (source.watches.some((w) => !w.synced)) {
      if (Date.now() > until) {
        const pending = source.watches.filter((w) => !w.synced).map((w) => `${w.kind.kind} (${w.lastError || "no answer"})`);
        source.close();
        throw new Error(`the Kubernetes API server at ${source.server} did not list ${pending.join(", ")} within ${syncTimeoutMs / 1000} s`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    options.log.info(`kubernetes: synced from ${source.server}: ${source.watches.map((w) => `${w.informer?.list().length ?? 0} ${w.kind.kind}${w.installed ? "" : " (not installed)"}`).join(", ")}`);
    return source;
  }

  get apiServer(): string {
    return this.server;
  }

  /** Every object, as documents for the mesh reader (cached per object and resourceVersion). */
  documents(sink: DiagnosticSink): SourceDocument[] {
    const out: SourceDocument[] = [];
    const live = new Set<string>();
    for (const w of this.watches) {
      for (const obj of w.informer?.list() ?? []) {
        const name = `${CLUSTER_DOCUMENT_PREFIX}${w.kind.kind}/${obj.metadata?.namespace ? `${obj.metadata.namespace}/` : ""}${obj.metadata?.name ?? ""}`;
        live.add(name);
        const version = obj.metadata?.resourceVersion ?? "";
        if (this.heldBack.get(name) === version) {
          out.push(...(this.accepted.get(name) ?? []));
          continue;
        }
        let cached = this.documentCache.get(name);
        if (!cached || cached.version !== version || version === "") {
          cached = { version, docs: parseSource(name, stringify(asDocument(w.kind, obj)), sink) };
          this.documentCache.set(name, cached);
        }
        out.push(...cached.docs);
      }
    }
    for (const name of this.documentCache.keys()) if (!live.has(name)) this.documentCache.delete(name);
    return out;
  }

  /** The objects documents() gave were accepted: they are what a rejected change falls back to. */
  accept(): void {
    for (const name of this.accepted.keys()) if (!this.documentCache.has(name)) this.accepted.delete(name);
    for (const [name, { version, docs }] of this.documentCache) {
      // A held object's accepted version is the one it is served at: it stays.
      if (this.heldBack.get(name) !== version) this.accepted.set(name, docs);
    }
    for (const name of this.heldBack.keys()) if (!this.documentCache.has(name)) this.heldBack.delete(name);
  }

  /**
   * These objects are invalid at their current version: until they change, they
   * are served at their last accepted version (or not at all), so that one bad
   * object does not stop the rest of the cluster's changes, endpoints above all,
   * from reaching the proxies. What istiod does with an object that fails validation.
   */
  holdBack(names: Iterable<string>): string[] {
    const held: string[] = [];
    for (const name of names) {
      const version = this.documentCache.get(name)?.version;
      if (version === undefined) continue;
      this.heldBack.set(name, version);
      held.push(name);
    }
    return held;
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches) {
      clearTimeout(w.timer);
      void w.informer?.stop();
    }
  }

  /** One informer per kind for the source's life: a restart resumes from its resourceVersion, or relists and diffs. */
  private startWatch(w: KindWatch): void {
    const { kubeConfig, metrics, log } = this.options;
    const informer = new k8s.ListWatch<ApiObject>(w.kind.path, new BookmarkWatch(kubeConfig), () => this.list(w), false);
    w.informer = informer;
    const event = (verb: "add" | "update" | "delete") => (): void => {
      if (w.kind.role === "registry") metrics.registryEvents.inc({ type: w.kind.kind, event: verb });
      else metrics.configEvents.inc({ type: w.kind.kind, event: verb });
      if (w.synced) this.options.onChange();
    };
    informer.on(k8s.ADD, event("add"));
    informer.on(k8s.UPDATE, event("update"));
    informer.on(k8s.DELETE, event("delete"));
    informer.on(k8s.ERROR, (err: unknown) => {
      if (this.closed) return;
      let delay: number;
      if (!w.installed && (err as { statusCode?: number }).statusCode === 404) {
        delay = this.options.missingRetryMs ?? 30_000; // the watch of a collection that is not there: look again later
      } else {
        const message = describeError(err);
        if (message !== w.lastError) log.warn(`kubernetes: ${w.kind.kind} from ${this.server}${w.kind.path}: ${message}; retrying in ${w.retryMs / 1000} s`);
        w.lastError = message;
        delay = w.retryMs;
        w.retryMs = Math.min(w.retryMs * 2, this.options.maxRetryMs ?? 30_000);
      }
      w.timer = setTimeout(() => this.run(w), delay);
    });
    this.run(w);
  }

  private run(w: KindWatch): void {
    if (this.closed) return;
    w.informer!.start().catch((err: unknown) => this.options.log.warn(`kubernetes: ${w.kind.kind}: ${describeError(err)}`));
  }

  /**
   * The informer's list call, made here rather than through the typed API so
   * that every kind, Istio's CRDs included, arrives as the same raw JSON the
   * watch events carry. A 404 (the CRD is not installed) deletes what was
   * there, and the collection is listed again later.
   */
  private async list(w: KindWatch): Promise<ApiList> {
    const { status, body } = await getJson(this.options.kubeConfig, `${this.server}${w.kind.path}`);
    if (status === 404) {
      if (w.installed) this.options.log.info(`kubernetes: ${w.kind.apiVersion} ${w.kind.kind} is not served by ${this.server} (CRD not installed?); looking again every ${(this.options.missingRetryMs ?? 30_000) / 1000} s`);
      w.installed = false;
      this.markSynced(w);
      // What was there is deleted (an empty list); with nothing to delete, the informer is stopped
      // here rather than left to watch a collection that is not there (the retry lists again).
      if ((w.informer?.list().length ?? 0) > 0) return { metadata: { resourceVersion: "" }, items: [] };
      throw Object.assign(new Error("not installed"), { statusCode: 404 });
    }
    if (status !== 200) throw Object.assign(new Error(`list answered HTTP ${status}: ${apiMessage(body)}`), { statusCode: status });
    const list = body as ApiList;
    if (!list || !Array.isArray(list.items)) throw new Error("list answered something that is not a Kubernetes list");
    if (!w.installed) this.options.log.info(`kubernetes: ${w.kind.kind} is served now`);
    w.installed = true;
    w.lastError = "";
    w.retryMs = this.options.retryMs ?? 1000;
    this.markSynced(w);
    return list;
  }

  private markSynced(w: KindWatch): void {
    if (w.synced) return;
    // After the informer has stored the first list (it does so synchronously once this promise resolves):
    // those objects are the starting state, not changes.
    setImmediate(() => (w.synced = true));
  }
}

/** The object as the reader wants it: kind and apiVersion set (list items have neither), metadata without bookkeeping. */
function asDocument(kind: WatchedKind, obj: ApiObject): object {
  const metadata: Record<string, unknown> = {};
  for (const k of KEPT_METADATA) if (obj.metadata?.[k] !== undefined) metadata[k] = obj.metadata[k];
  const out: Record<string, unknown> = { apiVersion: kind.apiVersion, kind: kind.kind, metadata };
  for (const [k, v] of Object.entries(obj)) if (!(k in out)) out[k] = v;
  return out;
}

function describeError(err: unknown): string {
  const e = err as { statusCode?: number; message?: string } | undefined;
  if (e?.statusCode) return `HTTP ${e.statusCode} ${e.message ?? ""}`.trim();
  return e?.message ?? String(err);
}

function apiMessage(body: unknown): string {
  const m = (body as { message?: unknown } | undefined)?.message;
  return typeof m === "string" ? m.slice(0, 300) : "(no message)";
}

/** GET with the kubeconfig's credentials (token, client certificate, CA), JSON in. */
async function getJson(kc: k8s.KubeConfig, url: string): Promise<{ status: number; body: unknown }> {
  const target = new URL(url);
  const options: RequestOptions = { method: "GET", headers: { accept: "application/json" } };
  await kc.applyToHTTPSOptions(options);
  const request = target.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(target, options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown;
        try {
          body = text === "" ? undefined : JSON.parse(text);
        } catch {
          return reject(new Error(`${url}: HTTP ${res.statusCode}, and the body is not JSON`));
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`${url}: no answer within 60 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** The kubeconfig to use: the file given, else the pod's service account when running in a cluster. */
export function loadKubeConfig(path: string | undefined): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else throw new Error("no cluster: give --kubeconfig PATH, or run in a pod (KUBERNETES_SERVICE_HOST and a service account token)");
  return kc;
}
