// The Envoy resources a sidecar holds (listeners, routes, clusters, endpoints,
// each translated on arrival) → one CompiledConfig: the same route table,
// clusters and route info the YAML path compiles, served by the same snapshot,
// route core and pipeline.
//
// instio serves a sidecar's outbound HTTP on one listener (explicit proxying
// until traffic capture lands), so the route configurations of every port share
// one table: a domain of port P's routes is matched as "domain:P", and the
// authority without a port goes to port 80's routes, else to the lowest port
// whose routes list the name (what the YAML path does for a service's first
// port). A listener that binds its own port P (a bootstrap's, say) routes every
// request as "host:P" (ListenerRuntime.routePort), so its domains carry the
// port only.

import { hostRegexIndex, resolveDnsEndpoints, tableLoadBalancer, type ClusterEndpoint, type ClusterInfo, type CompiledConfig, type CorsInfo, type EntryInfo, type RouteInfo, type TcpListenerInfo, type VirtualHostInfo } from "../../config/compile.js";
import type { HeadersModel, Settings } from "../../config/model.js";
import { DEFAULT_CLUSTER_POLICY, type HashKeySource } from "../../config/traffic-policy.js";
import { OPEN_INBOUND } from "../../config/security-policy.js";
import { endpointsDigest, updateDigests } from "../../config/update-digests.js";
import { tableCluster, type RouteTable } from "../../core/route-table.js";
import type { XdsCluster } from "./clusters.js";
import { BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, type XdsListener, type XdsWeightedCluster } from "./listeners.js";
import type { XdsRouteConfiguration, XdsVirtualHost } from "./routes.js";
import { pluginIdentity, type WasmPluginConfig } from "../../config/wasm-plugin.js";

export interface XdsResources {
  listeners: ReadonlyMap<string, XdsListener>;
  routes: ReadonlyMap<string, XdsRouteConfiguration>;
  clusters: ReadonlyMap<string, XdsCluster>;
  /** ClusterLoadAssignments by name (an EDS cluster's service_name). */
  endpoints: ReadonlyMap<string, ClusterEndpoint[]>;
  /** Addresses of the names STRICT_DNS and LOGICAL_DNS clusters resolve, as last resolved by the proxy. */
  resolved: ReadonlyMap<string, readonly string[]>;
}

/** A name no request header can have (':' is not a token character): a ring-hash cluster no route gives a hash key picks at random, as Envoy. */
const NO_HASH_KEY: HashKeySource = { kind: "header", name: "instio:no-hash-policy" };

const NO_OWNERS: ReadonlyMap<string, number> = new Map();

/** The port whose routes an authority without a port goes to, per domain. */
function portlessOwners(http: { port: number; config: XdsRouteConfiguration }[]): Map<string, number> {
  const owners = new Map<string, number>();
  for (const { port, config } of http) {
    for (const vh of config.virtualHosts) {
      for (const d of vh.domains) {
        if (d.includes(":")) continue;
        const owner = owners.get(d);
        if (owner === undefined || (port === 80 && owner !== 80)) owners.set(d, port);
      }
    }
  }
  return owners;
}

class Assembler {
  private readonly table: RouteTable = { virtualHosts: [], entries: [], routes: [], clusters: [], headerNames: [], hostRegexes: [] };
  private readonly clusters: ClusterInfo[] = [];
  private readonly clusterIndex = new Map<string, number>();
  private readonly routes: RouteInfo[] = [];
  private readonly entries: EntryInfo[] = [];
  private readonly vhosts: VirtualHostInfo[] = [];
  private readonly destinations: { headers: HeadersModel | undefined }[] = [];
  /** Names the DNS clusters resolve (CompiledConfig.dnsNames: the proxy keeps them resolved). */
  private readonly dnsNames = new Set<string>();
  /** Hash keys of the routes that use each consistent-hash cluster (Envoy hashes per route, instio per cluster). */
  private readonly hashKeys = new Map<string, HashKeySource>();

  constructor(private readonly resources: XdsResources) {}

  assemble(settings: Settings): CompiledConfig {
    const listeners = [...this.resources.listeners.values()];
    const outbound = listeners.find((l) => l.kind === "virtualOutbound");
    const httpListeners = listeners.filter((l): l is Extract<XdsListener, { kind: "http" }> => l.kind === "http").sort((a, b) => a.port - b.port);
    const http = httpListeners
      .map((l) => ({ port: l.port, bound: l.bind !== undefined, config: l.inline ?? this.resources.routes.get(l.rds!) }))
      .filter((l): l is { port: number; bound: boolean; config: XdsRouteConfiguration } => l.config !== undefined);
    for (const { config } of http) for (const vh of config.virtualHosts) for (const r of vh.routes) if (r.hash) for (const d of r.destinations) if (!this.hashKeys.has(d.cluster)) this.hashKeys.set(d.cluster, r.hash);
    // Clusters in the order CDS delivered them, so that an update keeps the others' indices.
    for (const name of this.resources.clusters.keys()) {
      if (name !== PASSTHROUGH_CLUSTER && name !== BLACKHOLE_CLUSTER) this.clusterFor(name);
    }
    const owners = portlessOwners(http.filter((l) => !l.bound));
    for (const { port, bound, config } of http) for (const vh of config.virtualHosts) if (!isIstioCatchAll(vh)) this.addVirtualHost(vh, port, bound ? NO_OWNERS : owners);
    const tcpListeners = listeners.filter((l): l is Extract<XdsListener, { kind: "tcp" }> => l.kind === "tcp").map((l): TcpListenerInfo => ({
      address: l.bind?.address ?? settings.outbound.address,
      port: l.port,
      destinations: this.weighted(l.destinations),
      sni: l.sni?.map((s) => ({ hosts: s.hosts, destinations: this.weighted(s.destinations) })),
    }));
    const config = {
      model: undefined,
      tcpListeners,
      gatewayListeners: [],
      boundHttpListeners: listeners.flatMap((l) => (l.kind === "http" && l.bind ? [l.bind] : [])),
      // Inbound listeners (and the RBAC filters on them) are not read from xDS yet: see listeners.ts.
      inboundSecurity: OPEN_INBOUND,
      wasmPlugins: wasmPluginsOf(httpListeners),
      gateway: false,
      dnsNames: [...this.dnsNames],
      settings: { ...settings, outboundTrafficPolicy: outbound && !outbound.passthrough ? ("REGISTRY_ONLY" as const) : ("ALLOW_ANY" as const) },
      table: this.table,
      destinations: this.destinations,
      clusters: this.clusters,
      routes: this.routes,
      entries: this.entries,
      virtualHosts: this.vhosts,
      diagnostics: [],
    };
    return { ...config, digests: updateDigests(config) };
  }

  private weighted(list: readonly XdsWeightedCluster[]): { cluster: number; weight: number }[] {
    return list.filter((d) => d.cluster !== BLACKHOLE_CLUSTER).map((d) => ({ cluster: this.clusterFor(d.cluster), weight: d.weight }));
  }

  private addVirtualHost(vh: XdsVirtualHost, port: number, owners: ReadonlyMap<string, number>): void {
    const domains: string[] = [];
    for (const d of vh.domains) {
      if (d.includes(":")) domains.push(d);
      else {
        domains.push(`${d}:${port}`);
        if (owners.get(d) === port) domains.push(d);
      }
    }
    const entryStart = this.table.entries.length;
    for (const route of vh.routes) {
      const routeIndex = this.table.routes.length;
      this.table.routes.push({ destinations: route.destinations.map((d) => ({ cluster: this.clusterFor(d.cluster), weight: d.weight })) });
      for (const d of route.destinations) this.destinations.push({ headers: d.headers });
      const rx = route.rewrite?.uriRegex;
      this.routes.push({
        name: route.name,
        virtualService: undefined,
        timeoutMs: route.timeoutMs,
        headers: route.headers,
        action: route.action,
        rewrite: route.rewrite && { uri: route.rewrite.uri, authority: route.rewrite.authority, uriRegex: rx && { program: hostRegexIndex(this.table, rx.match, "search"), rewrite: rx.rewrite } },
        fault: route.fault,
        cors: route.cors && ({ ...route.cors, allowOrigins: route.cors.allowOrigins.map((m) => ({ ...m, program: m.kind === "regex" ? hostRegexIndex(this.table, m.value, "fullMatch") : -1 })) } satisfies CorsInfo),
        retry: route.retry,
        mirrors: route.mirrors.map((m) => ({ cluster: this.clusterFor(m.cluster), percent: m.percent })),
        source: undefined,
      });
      for (const c of route.conditions) if (c.source === "header" && !this.table.headerNames.includes(c.name)) this.table.headerNames.push(c.name);
      this.table.entries.push({ route: routeIndex, uri: route.uri, method: route.method, authority: route.authority, scheme: route.scheme, conditions: route.conditions });
      this.entries.push({ name: route.name, source: undefined });
    }
    this.table.virtualHosts.push({ name: vh.name, domains, entryStart, entryCount: this.table.entries.length - entryStart });
    const host = vh.name.replace(/:\d+$/, "");
    this.vhosts.push({ name: vh.name, host, namespace: /^[^.]+\.([^.]+)\.svc\./.exec(host)?.[1] ?? "", domains, port });
  }

  /** The index of a cluster by name; -1 when CDS has not sent it (a request there gets 503 NC, as in Envoy). */
  private clusterFor(name: string): number {
    const known = this.clusterIndex.get(name);
    if (known !== undefined) return known;
    const xds = this.resources.clusters.get(name) ?? (name === PASSTHROUGH_CLUSTER ? passthroughCluster() : undefined);
    if (!xds) return -1;
    let policy = xds.info.policy;
    const lb = policy.loadBalancer;
    if (lb.kind === "RING_HASH" || lb.kind === "MAGLEV") policy = { ...policy, loadBalancer: { ...lb, key: this.hashKeys.get(name) ?? NO_HASH_KEY } };
    const endpoints = xds.info.passthrough ? NO_ENDPOINTS : clusterEndpoints(xds, this.resources, this.dnsNames);
    const index = this.clusters.length;
    this.clusters.push({ ...xds.info, policy, endpoints, ...(xds.dns ? { dns: xds.dns } : {}) });
    const tableLb = tableLoadBalancer(this.table, policy.loadBalancer);
    this.table.clusters.push(tableCluster(endpoints, xds.info.passthrough, tableLb));
    this.clusterIndex.set(name, index);
    return index;
  }

}

/**
 * istiod's last virtual host on each port, allow_any (to PassthroughCluster) or block_all (502): what the
 * outbound traffic policy does for an authority no virtual host serves, which virtualOutbound's catch-all
 * already told this proxy. Served that way, unknown hosts behave as they do under the YAML path.
 */
function isIstioCatchAll(vh: XdsVirtualHost): boolean {
  return (vh.name === "allow_any" || vh.name === "block_all") && vh.domains.length === 1 && vh.domains[0] === "*";
}

/** Istio's PassthroughCluster, for a route that names it: forwarded to the requested authority. */
function passthroughCluster(): XdsCluster {
  return {
    info: { name: PASSTHROUGH_CLUSTER, host: PASSTHROUGH_CLUSTER, serviceNamespace: "", port: 0, subset: undefined, passthrough: true, policy: DEFAULT_CLUSTER_POLICY, healthCheck: undefined, http2: false },
    edsName: undefined,
    endpoints: undefined,
    dns: undefined,
  };
}

export function assembleConfig(resources: XdsResources, settings: Settings): CompiledConfig {
  return new Assembler(resources).assemble(settings);
}

/** A cluster's new endpoints, by its index in a config, with their update digest (made where the patch is, off the serving thread). */
export interface EndpointPatch {
  cluster: number;
  endpoints: ClusterEndpoint[];
  digest: string;
}

/** An EDS cluster whose assignment has not come (or was removed) has none; one array for all of them. */
const NO_ENDPOINTS: ClusterEndpoint[] = [];

/** A cluster's endpoints: its own (STATIC), its assignment's (EDS), or its names' addresses (STRICT_DNS, LOGICAL_DNS). */
function clusterEndpoints(xds: XdsCluster, resources: XdsResources, dnsNames: Set<string>): ClusterEndpoint[] {
  if (xds.dns) return resolveDnsEndpoints(xds.dns.targets, xds.dns.logical, resources.resolved, dnsNames);
  return xds.endpoints ?? resources.endpoints.get(xds.edsName!) ?? NO_ENDPOINTS;
}

/** The EDS and DNS clusters of `config` whose endpoints in `resources` (and its DNS answers) are not the ones it serves. */
export function endpointPatches(config: CompiledConfig, resources: XdsResources): EndpointPatch[] {
  const patches: EndpointPatch[] = [];
  config.clusters.forEach((c, i) => {
    const xds = resources.clusters.get(c.name);
    if (!xds) return;
    if (xds.dns) {
      // Resolved anew: changed when its digest is.
      const endpoints = clusterEndpoints(xds, resources, new Set());
      const digest = endpointsDigest(endpoints);
      if (digest !== config.digests?.endpoints[i]) patches.push({ cluster: i, endpoints, digest });
      return;
    }
    if (xds.edsName === undefined) return;
    const endpoints = resources.endpoints.get(xds.edsName) ?? NO_ENDPOINTS;
    if (endpoints !== c.endpoints) patches.push({ cluster: i, endpoints, digest: endpointsDigest(endpoints) });
  });
  return patches;
}

/** `config` with new endpoints for some clusters: an EDS update touches nothing else (no route is read again). */
export function patchEndpoints(config: CompiledConfig, patches: readonly EndpointPatch[]): CompiledConfig {
  const clusters = [...config.clusters];
  const digests = config.digests && { ...config.digests, endpoints: [...config.digests.endpoints] };
  for (const p of patches) {
    clusters[p.cluster] = { ...clusters[p.cluster]!, endpoints: p.endpoints };
    if (digests) digests.endpoints[p.cluster] = p.digest;
  }
  return { ...config, clusters, image: undefined, digests };
}

/**
 * The Wasm filters of the HTTP listeners as one list of plugins, each matching the ports whose
 * listeners carry it (one plugin, one VM, as Envoy shares a VM between listeners with the same code
 * and configuration), in the order the listeners' chains give them.
 */
function wasmPluginsOf(listeners: readonly Extract<XdsListener, { kind: "http" }>[]): WasmPluginConfig[] {
  const byIdentity = new Map<string, WasmPluginConfig>();
  for (const l of listeners) {
    for (const p of l.wasm) {
      const key = pluginIdentity(p);
      const known = byIdentity.get(key);
      if (known) known.match[0]!.ports.push(l.port);
      else byIdentity.set(key, { ...p, match: [{ mode: "CLIENT", ports: [l.port] }] });
    }
  }
  return [...byIdentity.values()];
}
