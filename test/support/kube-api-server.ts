// A small Kubernetes API server for the live-cluster path: cluster-wide list
// and watch of any collection, as the real one speaks them: a resourceVersion
// per change, lists whose items carry neither kind nor apiVersion, watches that
// replay from a resourceVersion (or start with every object, given none),
// BOOKMARK events when asked for, and 410 Gone
// (as an HTTP status or an ERROR event) for a resourceVersion older than the
// last compaction. No kube-apiserver can run on our machines; this is the
// nearest real thing: real HTTP, and @kubernetes/client-node's own informers.

import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ApiObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface Event {
  rv: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: ApiObject;
}

interface Collection {
  kind: string;
  apiVersion: string;
  objects: Map<string, ApiObject>;
  events: Event[];
}

export interface KubeApiServer {
  url: string;
  /** Every request, in order: path and query. */
  requests: { path: string; query: Record<string, string> }[];
  /** Adds or replaces an object in the collection at `path`. */
  apply(path: string, object: ApiObject): void;
  remove(path: string, namespace: string | undefined, name: string): void;
  /** Collections answering 404 (a CRD not installed). */
  missing: Set<string>;
  /** Answers the next `n` list requests of `path` with a 500. */
  failLists(path: string, n: number): void;
  /** Forgets history up to now: watches from an older resourceVersion get 410 Gone. */
  compact(): void;
  /** How a 410 is given: the watch request's HTTP status, or an ERROR event on a 200 stream (what newer servers do). */
  expiry: "status" | "event";
  /** Sends every open watch that asked for them a BOOKMARK at the current resourceVersion. */
  bookmark(): void;
  /** Ends every open watch (the server's watch timeout, or a restart). */
  closeWatches(): void;
  resourceVersion(): number;
  /**
   * Objects written through the API (ConfigMaps in a namespace, MutatingWebhookConfigurations), by their path:
   * get, create (POST to the collection, 409 when there) and replace (PUT). Put one here to have it found.
   */
  written: Map<string, ApiObject>;
  /** Service-account tokens TokenReview knows: token → the account's user name and the token's audiences. */
  tokens: Map<string, { username: string; audiences: string[] }>;
  close(): Promise<void>;
}

/** The paths of single objects the server lets clients write (see `written`). */
const WRITABLE = /^\/api\/v1\/namespaces\/[^/]+\/configmaps(\/[^/]+)?$|^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations\/[^/]+$/;

const LIST_KINDS: Record<string, { kind: string; apiVersion: string }> = {
  "/api/v1/namespaces": { kind: "Namespace", apiVersion: "v1" },
  "/api/v1/services": { kind: "Service", apiVersion: "v1" },
  "/api/v1/pods": { kind: "Pod", apiVersion: "v1" },
  "/apis/discovery.k8s.io/v1/endpointslices": { kind: "EndpointSlice", apiVersion: "discovery.k8s.io/v1" },
};

function collectionKind(path: string): { kind: string; apiVersion: string } {
  const known = LIST_KINDS[path];
  if (known) return known;
  const m = /^\/apis\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(path);
  if (!m) throw new Error(`not a collection path: ${path}`);
  const plural = m[3]!;
  const kinds: Record<string, string> = { virtualservices: "VirtualService", destinationrules: "DestinationRule", serviceentries: "ServiceEntry", workloadentries: "WorkloadEntry", gateways: "Gateway", sidecars: "Sidecar" };
  return { kind: kinds[plural] ?? plural, apiVersion: `${m[1]}/${m[2]}` };
}

const key = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export async function startKubeApiServer(): Promise<KubeApiServer> {
  let rv = 100;
  let compactedAt = 0;
  const collections = new Map<string, Collection>();
  const watches = new Set<{ path: string; res: ServerResponse; bookmarks: boolean; send: (e: object) => void }>();
  const listFailures = new Map<string, number>();
  const requests: KubeApiServer["requests"] = [];

  const collection = (path: string): Collection => {
    let c = collections.get(path);
    if (!c) {
      c = { ...collectionKind(path), objects: new Map(), events: [] };
      collections.set(path, c);
    }
    return c;
  };
  const record = (path: string, type: Event["type"], object: ApiObject): void => {
    const event = { rv, type, object };
    collection(path).events.push(event);
    for (const w of watches) if (w.path === path) w.send({ type, object });
  };

  const api: KubeApiServer = {
    url: "",
    requests,
    missing: new Set(),
    expiry: "status",
    apply(path, object) {
      const c = collection(path);
      const stored: ApiObject = { ...object, metadata: { ...object.metadata, resourceVersion: String(++rv), uid: `uid-${key(object)}` } };
      const existed = c.objects.has(key(object));
      c.objects.set(key(object), stored);
      record(path, existed ? "MODIFIED" : "ADDED", stored);
    },
    remove(path, namespace, name) {
      const c = collection(path);
      const k = `${namespace ?? ""}/${name}`;
      const old = c.objects.get(k);
      if (!old) return;
      c.objects.delete(k);
      record(path, "DELETED", { ...old, metadata: { ...old.metadata, resourceVersion: String(++rv) } });
    },
    failLists(path, n) {
      listFailures.set(path, n);
    },
    compact() {
      compactedAt = rv;
      for (const c of collections.values()) c.events = [];
    },
    bookmark() {
      for (const w of watches) {
        const { kind, apiVersion } = collection(w.path);
        if (w.bookmarks) w.send({ type: "BOOKMARK", object: { kind, apiVersion, metadata: { resourceVersion: String(rv) } } });
      }
    },
    closeWatches() {
      for (const w of [...watches]) w.res.end();
      watches.clear();
    },
    resourceVersion: () => rv,
    tokens: new Map(),
    written: new Map(),
    close: () => new Promise((resolve) => {
      api.closeWatches();
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const query = Object.fromEntries(url.searchParams);
    requests.push({ path: url.pathname, query });
    const status = (code: number, reason: string, message: string): void => {
      res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason, message, code }));
    };
    if (req.method === "POST" && url.pathname === "/apis/authentication.k8s.io/v1/tokenreviews") {
      // TokenReview, as the API server answers it: authenticated only for a known token with an audience asked for.
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        const review = JSON.parse(body) as { spec?: { token?: string; audiences?: string[] } };
        const known = api.tokens.get(review.spec?.token ?? "");
        const asked = review.spec?.audiences ?? [];
        const audiences = known ? known.audiences.filter((a) => asked.length === 0 || asked.includes(a)) : [];
        const ok = known !== undefined && audiences.length > 0;
        res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({
          kind: "TokenReview",
          apiVersion: "authentication.k8s.io/v1",
          spec: review.spec,
          status: ok ? { authenticated: true, user: { username: known.username, groups: ["system:serviceaccounts"] }, audiences } : { authenticated: false, error: "invalid bearer token" },
        }));
      });
      return;
    }
    if (WRITABLE.test(url.pathname)) {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        const json = (code: number, o: unknown): void => void res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(o));
        if (req.method === "GET") {
          const o = api.written.get(url.pathname);
          return o ? json(200, o) : status(404, "NotFound", `${url.pathname} not found`);
        }
        const object = JSON.parse(body) as ApiObject;
        const path = req.method === "POST" ? `${url.pathname}/${object.metadata.name}` : url.pathname;
        if (req.method === "POST" && api.written.has(path)) return status(409, "AlreadyExists", `${path} already exists`);
        if (req.method === "PUT" && !api.written.has(path)) return status(404, "NotFound", `${path} not found`);
        if (req.method !== "POST" && req.method !== "PUT") return status(405, "MethodNotAllowed", "get, create or replace");
        object.metadata.resourceVersion = String(++rv);
        api.written.set(path, object);
        json(req.method === "POST" ? 201 : 200, object);
      });
      return;
    }
    if (req.method !== "GET") return status(405, "MethodNotAllowed", "this server only lists and watches");
    if (api.missing.has(url.pathname)) return status(404, "NotFound", "the server could not find the requested resource");
    let c: Collection;
    try {
      c = collection(url.pathname);
    } catch {
      return status(404, "NotFound", "the server could not find the requested resource");
    }
    if (query.watch !== "true") {
      const failures = listFailures.get(url.pathname) ?? 0;
      if (failures > 0) {
        listFailures.set(url.pathname, failures - 1);
        return status(500, "InternalError", "etcd is having a bad day");
      }
      // List items carry no kind or apiVersion, as the real server's.
      const items = [...c.objects.values()].map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ kind: `${c.kind}List`, apiVersion: c.apiVersion, metadata: { resourceVersion: String(rv) }, items }));
      return;
    }
    const from = Number(query.resourceVersion ?? "0");
    if (from !== 0 && from < compactedAt) {
      if (api.expiry === "status") return status(410, "Expired", `too old resource version: ${from} (${compactedAt})`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`${JSON.stringify({ type: "ERROR", object: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Expired", message: `too old resource version: ${from} (${compactedAt})`, code: 410 } })}\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders(); // the informer's start() waits for the watch's headers
    const send = (e: object): void => void res.write(`${JSON.stringify(e)}\n`);
    // Replay what happened after the client's resourceVersion; with none, every object as ADDED first
    // (the API server's "get state and start at most recent").
    if (from !== 0) for (const e of c.events) if (e.rv > from) send({ type: e.type, object: e.object });
    if (from === 0) for (const o of c.objects.values()) send({ type: "ADDED", object: o });
    const watch = { path: url.pathname, res, bookmarks: query.allowWatchBookmarks === "true", send };
    watches.add(watch);
    req.on("close", () => watches.delete(watch));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return api;
}
