// One proxy's Envoy v3 resources, generated from its compiled config and encoded
// once: what the control plane sends over xDS, resource by resource.

import { createHash } from "node:crypto";
import type { CompiledConfig } from "../../config/compile.js";
import type { ConfigDiagnostic } from "../../config/diagnostics.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, packAny, ROUTE_TYPE, type AnyMessage } from "../protos.js";
import { lengthDelimitedFields } from "../wire-format.js";
import { builtinClusters, envoyCluster, loadAssignment } from "./clusters.js";
import { grpcUnsupported } from "./grpc-unsupported.js";
import { grpcListener, httpPorts, sidecarListeners } from "./listeners.js";
import { RouteGenerator, type Generator, type Json } from "./routes.js";

export interface EncodedResource {
  name: string;
  /** The resource as sent: an Any of its type. */
  any: AnyMessage;
  /** A digest of the encoded bytes: what Delta xDS calls the resource's version. */
  version: string;
  /** The resource in Envoy's field names, for config dumps. */
  json: Json;
  /** Its Any and delta Resource wire encodings, made on first send (control-plane/xds/wire.ts). */
  anyBytes?: Buffer;
  deltaBytes?: Buffer;
}

/** What changed for one type from a proxy class's previous resources to these. */
export interface ResourceDiff {
  /** New, or with a new version. */
  changed: EncodedResource[];
  removed: string[];
}

const VIRTUAL_HOST_TYPE = "envoy.config.route.v3.VirtualHost";

/** A resource from its encoded value: its version is a digest of those bytes. */
function encoded(typeUrl: string, name: string, value: Uint8Array, json: Json): EncodedResource {
  return { name, any: { type_url: typeUrl, value }, version: createHash("sha256").update(value).digest("base64url").slice(0, 16), json };
}

/** Entries used at this mesh version, and those of the version before, which survive one more unless used again. */
class Generations<T> {
  private current = new Map<string, T>();
  private previous = new Map<string, T>();

  get(key: string, make: () => T): T {
    let v = this.current.get(key);
    if (v === undefined) {
      v = this.previous.get(key) ?? make();
      this.current.set(key, v);
    }
    return v;
  }

  next(): void {
    this.previous = this.current;
    this.current = new Map();
  }
}

const digest = (text: string): string => createHash("sha256").update(text).digest("base64url");

/** RouteConfiguration.virtual_hosts. */
const VIRTUAL_HOSTS_FIELD = 2;

/**
 * Encoded resources by content, shared by every proxy class (proxies in ten
 * namespaces see the same thousand clusters) and kept from one mesh version to
 * the next while still in use: a resource is encoded once, not once per class
 * and per change. Checking that a resource has only known fields, and
 * protobuf encoding, cost far more than the JSON digest that finds it here.
 * A route configuration is assembled from its virtual hosts' encodings, each
 * cached the same way: a VirtualService change encodes again only the virtual
 * hosts it changed, not the thousand beside them.
 */
export class EncodeCache {
  private readonly resources = new Generations<EncodedResource>();
  private readonly virtualHosts = new Generations<Uint8Array>();

  encode(typeUrl: string, name: string, json: Json): EncodedResource {
    return this.resources.get(`${typeUrl}|${name}|${digest(JSON.stringify(json))}`, () =>
      typeUrl === ROUTE_TYPE && Array.isArray(json.virtual_hosts) ? this.routeConfiguration(name, json) : encoded(typeUrl, name, packAny(typeUrl, json).value, json),
    );
  }

  /** The route configuration's other fields, then each virtual host as a field 2 (protobuf parsers take fields in any order). */
  private routeConfiguration(name: string, json: Json): EncodedResource {
    const { virtual_hosts: hosts, ...rest } = json as Json & { virtual_hosts: Json[] };
    const virtualHosts = hosts.map((host) => [VIRTUAL_HOSTS_FIELD, this.virtualHosts.get(digest(JSON.stringify(host)), () => packAny(VIRTUAL_HOST_TYPE, host).value)] as const);
    return encoded(ROUTE_TYPE, name, Buffer.concat([packAny(ROUTE_TYPE, rest).value, lengthDelimitedFields(virtualHosts)]), json);
  }

  /** A new mesh version: entries the last version used survive one more, then go unless used again. */
  nextGeneration(): void {
    this.resources.next();
    this.virtualHosts.next();
  }
}

/**
 * Every resource a proxy can ask for. A sidecar's are all built up front (it
 * subscribes to every listener and cluster); a gRPC client names the listeners
 * it dials and the route configs they use, built on first request.
 */
export class ProxyResources {
  readonly diagnostics: ConfigDiagnostic[] = [];
  private readonly byType = new Map<string, Map<string, EncodedResource>>();
  private readonly routes: RouteGenerator;
  /** gRPC: virtual host index by every domain it answers ("reviews:9080", "reviews.default.svc.cluster.local:9080", ...). */
  private readonly vhostByDomain = new Map<string, number>();
  private readonly vhostByName = new Map<string, number>();
  /**
   * The same proxy class's resources at the previous mesh version (sidecars
   * only: a gRPC client's are built by name on demand, so two versions' maps
   * cannot be compared). Dropped once this version's diffs are known.
   */
  predecessor: ProxyResources | undefined;
  private readonly diffs = new Map<string, ResourceDiff>();
  /** What generating the clusters found (kept with them when a VirtualService change reuses them). */
  private clusterDiagnostics: ConfigDiagnostic[] = [];
  private readonly responses = new Map<string, { nonce: string; bytes: Buffer }>();

  /**
   * `reuse`: the class's resources at the previous version, and what of them still holds.
   *   - "routes": only endpoints changed since. Its listeners, routes and clusters are kept as they are, and only
   *     the endpoint assignments are generated (Envoy's EDS granularity).
   *   - "clusters": only VirtualServices changed since, which name clusters but never shape one. Its clusters and
   *     endpoint assignments are kept, and only the listeners and route configurations are generated.
   * Either way nothing is generated or encoded again but what can have changed.
   */
  constructor(
    readonly config: CompiledConfig,
    readonly generator: Generator,
    private readonly cache: EncodeCache = new EncodeCache(),
    reuse?: { from: ProxyResources; keep: "routes" | "clusters" },
  ) {
    this.routes = new RouteGenerator(config, generator);
    const endpoints = new Map<string, EncodedResource>();
    if (reuse?.keep === "routes") {
      for (const t of [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE]) this.byType.set(t, new Map(reuse.from.byType.get(t)));
      this.byType.set(ENDPOINT_TYPE, endpoints);
      this.diagnostics.push(...reuse.from.diagnostics);
      const clusters = this.byType.get(CLUSTER_TYPE)!;
      for (const c of config.clusters) {
        if (!clusters.has(c.name) || c.passthrough) continue;
        // A DNS cluster carries its endpoints (names) itself: its Cluster is what changes.
        if (c.dns && generator === "sidecar") {
          const cluster = envoyCluster(c, generator, this.diagnostics);
          if (cluster) clusters.set(c.name, this.cache.encode(CLUSTER_TYPE, c.name, cluster));
        } else endpoints.set(c.name, this.cache.encode(ENDPOINT_TYPE, c.name, loadAssignment(c)));
      }
    } else {
      for (const t of [LISTENER_TYPE, ROUTE_TYPE]) this.byType.set(t, new Map());
      if (reuse?.keep === "clusters") {
        this.byType.set(CLUSTER_TYPE, new Map(reuse.from.byType.get(CLUSTER_TYPE)));
        this.byType.set(ENDPOINT_TYPE, new Map(reuse.from.byType.get(ENDPOINT_TYPE)));
        this.clusterDiagnostics = reuse.from.clusterDiagnostics;
      } else {
        const clusters = new Map<string, EncodedResource>();
        this.byType.set(CLUSTER_TYPE, clusters);
        this.byType.set(ENDPOINT_TYPE, endpoints);
        for (const c of config.clusters) {
          const cluster = envoyCluster(c, generator, this.clusterDiagnostics);
          if (!cluster) continue;
          clusters.set(c.name, this.cache.encode(CLUSTER_TYPE, c.name, cluster));
          if (!c.passthrough && !(c.dns && generator === "sidecar")) endpoints.set(c.name, this.cache.encode(ENDPOINT_TYPE, c.name, loadAssignment(c)));
        }
        if (generator === "sidecar") {
          const connectTimeout = config.clusters[0]?.policy.limits.connectTimeoutMs ?? 10_000;
          for (const c of builtinClusters(connectTimeout)) clusters.set(c.name as string, this.cache.encode(CLUSTER_TYPE, c.name as string, c));
        }
      }
      this.diagnostics.push(...this.clusterDiagnostics);
      if (generator === "grpc") this.diagnostics.push(...grpcUnsupported(config));
      if (generator === "sidecar") {
        for (const l of sidecarListeners(config)) this.byType.get(LISTENER_TYPE)!.set(l.name as string, this.cache.encode(LISTENER_TYPE, l.name as string, l));
        for (const port of httpPorts(config)) this.byType.get(ROUTE_TYPE)!.set(String(port), this.cache.encode(ROUTE_TYPE, String(port), this.sidecarRouteConfig(port)));
      }
    }
    if (generator === "grpc") {
      config.table.virtualHosts.forEach((vh, i) => {
        this.vhostByName.set(vh.name, i);
        for (const d of vh.domains) if (!this.vhostByDomain.has(d)) this.vhostByDomain.set(d, i);
      });
    }
  }

  /**
   * An encoded response, made once for every stream of this class that is sent
   * the same (key: the type, version and resources) — a push to thousands of
   * proxies encodes each distinct response once. The last few are kept.
   */
  sharedResponse(key: string, make: () => { nonce: string; bytes: Buffer }): { nonce: string; bytes: Buffer } {
    let r = this.responses.get(key);
    if (!r) {
      r = make();
      if (this.responses.size >= 16) this.responses.delete(this.responses.keys().next().value!);
      this.responses.set(key, r);
    }
    return r;
  }

  /** What changed for the type since the predecessor (everything, if there is none). */
  diffFromPredecessor(typeUrl: string): ResourceDiff {
    let diff = this.diffs.get(typeUrl);
    if (diff) return diff;
    const now = this.byType.get(typeUrl) ?? new Map<string, EncodedResource>();
    const before = this.predecessor?.byType.get(typeUrl) ?? new Map<string, EncodedResource>();
    diff = { changed: [...now.values()].filter((r) => before.get(r.name)?.version !== r.version), removed: [...before.keys()].filter((n) => !now.has(n)) };
    this.diffs.set(typeUrl, diff);
    return diff;
  }

  /** Wildcard subscriptions get every resource of the type (a gRPC client's listeners are only those it names). */
  all(typeUrl: string): Iterable<EncodedResource> {
    return this.byType.get(typeUrl)?.values() ?? [];
  }

  get(typeUrl: string, name: string): EncodedResource | undefined {
    const known = this.byType.get(typeUrl)?.get(name);
    if (known || this.generator !== "grpc") return known;
    const made = typeUrl === LISTENER_TYPE ? this.grpcListener(name) : typeUrl === ROUTE_TYPE ? this.grpcRouteConfig(name) : undefined;
    if (made) this.byType.get(typeUrl)!.set(name, made);
    return made;
  }

  /** The route config a sidecar's listener on `port` uses: that port's virtual hosts, then Istio's catch-all. */
  private sidecarRouteConfig(port: number): Json {
    const vhosts: Json[] = [];
    this.config.table.virtualHosts.forEach((_, i) => {
      if (this.config.virtualHosts[i]!.port === port) vhosts.push(this.routes.virtualHost(i));
    });
    const allowAny = this.config.settings.outboundTrafficPolicy !== "REGISTRY_ONLY";
    vhosts.push(allowAny
      ? { name: "allow_any", domains: ["*"], routes: [{ name: "allow_any", match: { prefix: "/" }, route: { cluster: "PassthroughCluster", timeout: { seconds: 0 } } }] }
      : { name: "block_all", domains: ["*"], routes: [{ name: "block_all", match: { prefix: "/" }, direct_response: { status: 502 } }] });
    return { name: String(port), virtual_hosts: vhosts, validate_clusters: { value: false }, ignore_port_in_host_matching: true };
  }

  /** istiod's grpcgen: a listener per dial target, echoed under the name asked for. */
  private grpcListener(name: string): EncodedResource | undefined {
    const i = this.vhostByDomain.get(name.toLowerCase());
    if (i === undefined) return undefined;
    const info = this.config.virtualHosts[i]!;
    return this.cache.encode(LISTENER_TYPE, name, grpcListener(name, `outbound|${info.port}||${info.host}`));
  }

  /** "outbound|PORT||HOST": the one virtual host of that service port. */
  private grpcRouteConfig(name: string): EncodedResource | undefined {
    const m = /^outbound\|(\d+)\|\|(.+)$/.exec(name);
    const i = m ? this.vhostByName.get(`${m[2]}:${m[1]}`) : undefined;
    if (i === undefined) return undefined;
    return this.cache.encode(ROUTE_TYPE, name, { name, virtual_hosts: [this.routes.virtualHost(i)] });
  }
}
