// Model → compiled config: the route table for the core, plus what the host needs
// to act on a decision (cluster endpoints, route and virtual host names).
// Runs once per config version, off the hot path.

import { isIP } from "node:net";
import { SLOT_COUNT_MAX, SLOT_FIRST_HEADER } from "../../assembly/layout.js";
import type { RegexMode } from "../core/regex/program.js";
import { tableCluster, type MatchEntry, type RouteTable, type StringMatch, type TableHashKey, type TableLoadBalancer, type WeightedDestination } from "../core/route-table.js";
import type { ConfigDiagnostic, Location } from "./diagnostics.js";
import { resolveDelegates } from "./delegate.js";
import { egressAllows, sidecarFor, type SidecarModel } from "./sidecar.js";
import { gatewayListeners, gatewaysFor, type GatewayListener } from "./gateway.js";
import { inboundSecurity, mtlsModeFor, type InboundSecurity } from "./security-policy.js";
import { wasmPluginsFor, type WasmPluginConfig } from "./wasm-plugin.js";
import { clusterPolicy, ISTIO_MUTUAL_DEFAULTS, type ClusterPolicy, type LoadBalancerModel, type TrafficPolicyModel } from "./traffic-policy.js";
import type { EncodedImage } from "../core/route-core.js";
import { endpointsDigest, updateDigests, type UpdateDigests } from "./update-digests.js";
import { HostIndex, hostMatches, spiffeId, TRUST_DOMAIN, virtualHostDomains } from "./hosts.js";
import type { ConfigModel, CorsModel, DestinationModel, HealthCheckSettings, HeadersModel, RetryPolicyModel, RouteActionModel, DestinationRuleModel, HttpRouteModel, MatchModel, ResourceMeta, ServiceModel, ServicePort, Settings, VirtualServiceModel, WorkloadEndpoint } from "./model.js";

export interface ClusterEndpoint {
  address: string;
  port: number;
  labels: Record<string, string>;
  /** Envoy's load_balancing_weight, when the config gives one other than 1 (WorkloadEntry weight, EDS). */
  weight?: number;
}

export interface ClusterInfo {
  /** Envoy's name: outbound|port|subset|host. */
  name: string;
  host: string;
  /** Namespace of the ServiceEntry that defines the host. */
  serviceNamespace: string;
  port: number;
  subset: string | undefined;
  /** Resolution NONE: forwarded to the requested authority instead of to endpoints. */
  passthrough: boolean;
  endpoints: ClusterEndpoint[];
  /** The DestinationRule's trafficPolicy for this port and subset, with Istio's defaults. */
  policy: ClusterPolicy;
  /** Active health checking from the settings, when they name this host (and port). */
  healthCheck: HealthCheckSettings | undefined;
  /** HTTP/2 (h2c) to the endpoints: the port's protocol is HTTP2, GRPC or GRPC-WEB, as Istio chooses. */
  http2: boolean;
  /**
   * A DNS-resolved service's cluster (Envoy's STRICT_DNS, or LOGICAL_DNS: the first address only): the
   * endpoints as configured, names unresolved. `endpoints` holds them resolved.
   */
  dns?: { logical: boolean; targets: ClusterEndpoint[] };
}

export interface RouteInfo {
  /** Envoy route name: the HTTPRoute name (with the match name, per entry), or "default". */
  name: string;
  virtualService: string | undefined;
  /** Route timeout in ms, all attempts included; 0 = none. */
  timeoutMs: number;
  /** Route-level header operations; applied after the destination's, as Envoy does. */
  headers: HeadersModel | undefined;
  /** forward (destinations in the table), or a redirect / direct response answered by the host. */
  action: RouteActionModel;
  rewrite: RewriteInfo | undefined;
  fault: HttpRouteModel["fault"];
  cors: CorsInfo | undefined;
  /** The route's retry policy, or Istio's default. */
  retry: RetryPolicyModel;
  /** Shadow clusters (-1: does not exist) and the percentage of requests copied to each. */
  mirrors: { cluster: number; percent: number }[];
  source: Location | undefined;
}

/** rewrite with its uriRegexRewrite pattern bound to a program of the route core (table.hostRegexes). */
export interface RewriteInfo {
  uri: string | undefined;
  authority: string | undefined;
  uriRegex: { program: number; rewrite: (string | number)[] } | undefined;
}

/** corsPolicy with each regex origin bound to a program of the route core (-1 for exact/prefix). */
export interface CorsInfo extends Omit<CorsModel, "allowOrigins"> {
  allowOrigins: (StringMatch & { program: number })[];
}

export interface EntryInfo {
  /** `route.match` as Istio names Envoy routes; the route name when the match has none. */
  name: string;
  source: Location | undefined;
}

export interface VirtualHostInfo {
  name: string;
  /** The service host (or VirtualService host) the virtual host serves, and its namespace. */
  host: string;
  namespace: string;
  domains: string[];
  port: number;
}

/** A TCP proxy listener (from a Sidecar egress listener with a TCP port): where connections go. */
export interface TcpListenerInfo {
  address: string;
  port: number;
  /** Weighted clusters (-1: does not exist); empty: nothing serves this port (connections are closed). */
  destinations: { cluster: number; weight: number }[];
  /** TLS passthrough: routes by the SNI of the client's handshake, first match wins (exact or "*." names). */
  sni: { hosts: string[]; destinations: { cluster: number; weight: number }[] }[] | undefined;
}

export interface CompiledConfig {
  /**
   * The validated resources, kept to compile again when DNS answers change. A config loaded on
   * the config worker without DNS names crosses to the serving thread without it (it is most of
   * the bytes, and nothing compiles that config again).
   */
  model: ConfigModel | undefined;
  /** The route table's image, encoded on the config worker so that the swap does not (undefined: encoded when the snapshot is built). */
  image?: EncodedImage;
  tcpListeners: TcpListenerInfo[];
  /** Ports of the Gateways that select this proxy (ingress mode). */
  gatewayListeners: GatewayListener[];
  /**
   * HTTP listeners that bind a port of their own and route by it, as Envoy's
   * (from LDS or an Envoy bootstrap): their virtual hosts' domains carry the port
   * (see envoy/translate/assemble.ts). The YAML path has none.
   */
  boundHttpListeners: { address: string; port: number }[];
  /** PeerAuthentication and AuthorizationPolicies for this workload's inbound side. */
  inboundSecurity: InboundSecurity;
  /** The WasmPlugins that select this workload, in istiod's order (their modules' bytes included). */
  wasmPlugins: WasmPluginConfig[];
  /** Ingress mode: a Gateway selects this proxy (unknown hosts get 404, not a passthrough). */
  gateway: boolean;
  /** Names the DNS-resolved ServiceEntries need resolved (their endpoints, or their hosts). */
  dnsNames: string[];
  settings: Settings;
  table: RouteTable;
  /** Per global destination index (the core's decision): that destination's header operations. */
  destinations: { headers: HeadersModel | undefined }[];
  clusters: ClusterInfo[];
  routes: RouteInfo[];
  entries: EntryInfo[];
  virtualHosts: VirtualHostInfo[];
  diagnostics: ConfigDiagnostic[];
  /** What an update to or from this config changes: routes, a cluster's settings, a cluster's endpoints (absent when compiled without: CompileOptions.digests). */
  digests: UpdateDigests | undefined;
}

const DEFAULT_HTTP_PORT = 80;
const TCP_PROTOCOLS = ["TCP", "MONGO", "TLS", "HTTPS"];

/** No retries: routes answered without an upstream, inbound traffic, and an Envoy route without retry_policy. */
export const NO_RETRY: RetryPolicyModel = { attempts: 1, perTryTimeoutMs: 0, on: { fiveXx: false, gatewayError: false, reset: false, connectFailure: false, retriable4xx: false, statusCodes: [], grpcStatuses: [] }, backoffMs: 25, avoidPreviousHosts: false };

/**
 * Istio's built-in outbound retry policy when a route sets none: 2 retries on
 * connect-failure, refused-stream, unavailable, cancelled and (since 1.24, with
 * no codes) retriable-status-codes.
 */
export const ISTIO_DEFAULT_RETRY: RetryPolicyModel = {
  attempts: 3,
  perTryTimeoutMs: 0,
  on: { fiveXx: false, gatewayError: false, reset: false, connectFailure: true, retriable4xx: false, statusCodes: [], grpcStatuses: [1, 14] },
  backoffMs: 25,
  avoidPreviousHosts: true,
};

function visibleTo(meta: ResourceMeta, namespace: string): boolean {
  if (meta.exportTo.length === 0) return true;
  return meta.exportTo.some((e) => e === "*" || e === namespace || (e === "." && meta.namespace === namespace));
}

function labelsMatch(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function isHashed(lb: LoadBalancerModel | undefined): lb is Extract<LoadBalancerModel, { key: unknown }> {
  return lb?.kind === "RING_HASH" || lb?.kind === "MAGLEV";
}

function isCatchAll(e: MatchEntry): boolean {
  const uriAll = !e.uri || (e.uri.kind === "prefix" && e.uri.value === "/") || (e.uri.kind === "regex" && e.uri.value === ".*");
  return uriAll && !e.method && !e.authority && !e.scheme && e.conditions.length === 0;
}

class Compiler {
  private readonly table: RouteTable = { virtualHosts: [], entries: [], routes: [], clusters: [], headerNames: [], hostRegexes: [] };
  private readonly clusters: ClusterInfo[] = [];
  private readonly clusterIndex = new Map<string, number>();
  private readonly routes: RouteInfo[] = [];
  private readonly destinations: { headers: HeadersModel | undefined }[] = [];
  private readonly entries: EntryInfo[] = [];
  private readonly vhosts: VirtualHostInfo[] = [];
  readonly diagnostics: ConfigDiagnostic[] = [];
  private readonly services: ServiceModel[];
  private readonly virtualServices: VirtualServiceModel[];
  private readonly destinationRules: DestinationRuleModel[];
  /** The settings, with the Sidecar's outboundTrafficPolicy when it sets one. */
  private readonly settings: Settings;
  /** Gateways configuring this proxy ("ns/name"); empty: a sidecar. */
  private readonly gatewayRefs: string[];
  /** The ports those Gateways open (empty for a sidecar). */
  private readonly gatewayListeners: GatewayListener[];
  /** The Sidecar resource that applies to this proxy, if any. */
  private readonly sidecar: SidecarModel | undefined;

  /** Names looked up for DNS-resolved services, for the discovery to keep resolving. */
  private readonly dnsNames = new Set<string>();

  constructor(
    private readonly model: ConfigModel,
    /** Addresses of DNS names, as last resolved; a name missing here has no endpoints yet. */
    private readonly resolved: ReadonlyMap<string, readonly string[]> = new Map(),
    private readonly options: CompileOptions = {},
  ) {
    const ns = model.settings.namespace;
    // The Sidecar resource scopes what this proxy imports (egress.hosts).
    const sidecar = (this.sidecar = sidecarFor(model.sidecars, ns, model.settings.labels));
    this.settings = { ...model.settings, outboundTrafficPolicy: sidecar?.outboundTrafficPolicy ?? model.settings.outboundTrafficPolicy };
    this.services = [];
    const seenHosts = new Map<string, ServiceModel>();
    for (const se of model.services.filter((s) => visibleTo(s, ns))) {
      const hosts = se.hosts.filter((h) => egressAllows(sidecar, se.namespace, [h])).filter((h) => {
        const first = seenHosts.get(h);
        if (first && first !== se) {
          this.warn(se.source, `host ${h} is already defined by ServiceEntry ${first.namespace}/${first.name}; this one is ignored for it`);
          return false;
        }
        seenHosts.set(h, se);
        return true;
      });
      if (hosts.length > 0) this.services.push({ ...se, hosts, endpoints: this.endpointsOf(se) });
    }
    // As an ingress gateway (some Gateway selects this proxy), only VirtualServices bound to those Gateways route;
    // as a sidecar, those bound to "mesh".
    const gateways = gatewaysFor(model.gateways, model.settings.labels);
    this.gatewayRefs = gateways.map((g) => `${g.namespace}/${g.name}`);
    this.gatewayListeners = gatewayListeners(gateways);
    const bound = (v: VirtualServiceModel): boolean => (this.gatewayRefs.length > 0 ? v.gateways.some((g) => this.gatewayRefs.includes(g)) : v.gateways.includes("mesh"));
    this.virtualServices = resolveDelegates(model.virtualServices, (where, message) => this.warn(where, message)).filter((v) => visibleTo(v, ns) && egressAllows(sidecar, v.namespace, v.hosts) && bound(v));
    this.destinationRules = model.destinationRules.filter((d) => visibleTo(d, ns) && egressAllows(sidecar, d.namespace, [d.host]));
  }

  private readonly warned = new Set<string>();

  private warn(source: Location | undefined, message: string): void {
    const at = source ?? { file: "<config>", line: 1, column: 1 };
    // A route compiled for several ports would otherwise say the same thing once per port.
    const key = `${at.file}:${at.line}:${message}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.diagnostics.push({ ...at, path: "", message, severity: "warning" });
  }
  private error(source: Location | undefined, message: string): void {
    this.diagnostics.push({ ...(source ?? { file: "<config>", line: 1, column: 1 }), path: "", message, severity: "error" });
  }

  private endpointsOf(se: ServiceModel): WorkloadEndpoint[] {
    if (!se.workloadSelector) return se.endpoints;
    return this.model.workloadEntries
      .filter((we) => we.namespace === se.namespace && labelsMatch(se.workloadSelector!, we.endpoint.labels))
      .map((we) => we.endpoint);
  }

  compile(): CompiledConfig {
    const coveredVsHosts = new Set<string>();
    // A gateway has no virtual hosts of its own for services: only its VirtualServices' hosts.
    for (const service of this.gatewayRefs.length > 0 ? [] : this.services) {
      for (const host of service.hosts) {
        const defaultPort = service.ports.find((p) => p.number === DEFAULT_HTTP_PORT) ?? service.ports[0];
        for (const port of service.ports) {
          if (TCP_PROTOCOLS.includes(port.protocol)) continue; // served by TCP listeners, not HTTP routes
          const vs = this.virtualServiceFor(host);
          if (vs) vs.hosts.filter((h) => hostMatches(h, host)).forEach((h) => coveredVsHosts.add(h));
          const domains = virtualHostDomains(host, port.number, this.model.settings.namespace).filter((d) => port === defaultPort || d.includes(":"));
          for (const a of service.addresses) {
            if (a.includes("/")) continue; // a CIDR is not an authority
            domains.push(`${a}:${port.number}`);
            if (port === defaultPort) domains.push(a);
          }
          this.addVirtualHost({ name: `${host}:${port.number}`, host, namespace: service.namespace, domains, port: port.number }, vs, { host, port });
        }
      }
    }
    // VirtualService hosts that name no service still get a virtual host, as Istio builds one on the listener port.
    for (const vs of this.virtualServices) {
      for (const host of vs.hosts) {
        if (coveredVsHosts.has(host)) continue;
        coveredVsHosts.add(host);
        // On a gateway, the host is reached on every server port; on a sidecar, on the listener port 80.
        const ports = this.gatewayRefs.length > 0 ? this.gatewayListeners.map((l) => l.port) : [DEFAULT_HTTP_PORT];
        this.addVirtualHost({ name: `${host}:${ports[0] ?? DEFAULT_HTTP_PORT}`, host, namespace: vs.namespace, domains: [host, ...ports.map((p) => `${host}:${p}`)], port: ports[0] ?? DEFAULT_HTTP_PORT }, vs, undefined);
      }
    }
    if (this.options.everyCluster) this.addUnroutedClusters();
    if (this.table.headerNames.length > SLOT_COUNT_MAX - SLOT_FIRST_HEADER) {
      this.error(undefined, `routes reference ${this.table.headerNames.length} distinct headers; at most ${SLOT_COUNT_MAX - SLOT_FIRST_HEADER} are supported`);
    }
    const config = {
      model: this.model,
      tcpListeners: this.tcpListeners(),
      gatewayListeners: this.gatewayListeners,
      boundHttpListeners: [],
      inboundSecurity: inboundSecurity(this.model),
      wasmPlugins: wasmPluginsFor(this.model),
      gateway: this.gatewayRefs.length > 0,
      dnsNames: [...this.dnsNames],
      settings: this.settings,
      table: this.table,
      destinations: this.destinations,
      clusters: this.clusters,
      routes: this.routes,
      entries: this.entries,
      virtualHosts: this.vhosts,
      diagnostics: this.diagnostics,
    };
    return { ...config, digests: this.options.digests === false ? undefined : updateDigests(config) };
  }

  /** istiod's cluster set: `outbound|PORT||HOST` for each service port, and one per subset of the host's DestinationRule. */
  private addUnroutedClusters(): void {
    for (const service of this.services) {
      for (const host of service.hosts) {
        if (host.startsWith("*")) continue; // a wildcard host has no cluster of its own
        const subsets = this.destinationRuleFor(host)?.subsets ?? [];
        for (const port of service.ports) {
          for (const subset of [undefined, ...subsets.map((s) => s.name)]) {
            this.clusterFor({ host, subset, port: port.number, weight: 100, headers: undefined, source: service.source }, port.number);
          }
        }
      }
    }
  }

  /** The VirtualService whose hosts cover `host` most specifically (first in file order on a tie). */
  private virtualServiceFor(host: string): VirtualServiceModel | undefined {
    this.vsIndex ??= new HostIndex(this.virtualServices, (vs) => vs.hosts);
    const [best, ...others] = this.vsIndex.best(host);
    for (const o of others) {
      // Istio merges VirtualServices only for gateways; on sidecars the first one wins (istioctl analyze: IST0109).
      this.warn(o.item.source, `host ${o.pattern} is also defined by VirtualService ${best!.item.namespace}/${best!.item.name}; Istio does not merge VirtualServices for sidecars, so this one is ignored for it (IST0109)`);
    }
    return best?.item;
  }

  // Host lookups over every service, VirtualService and DestinationRule, built on first use.
  private vsIndex: HostIndex<VirtualServiceModel> | undefined;
  private serviceIndex: HostIndex<ServiceModel> | undefined;
  private drIndex: HostIndex<DestinationRuleModel> | undefined;

  private addVirtualHost(info: VirtualHostInfo, vs: VirtualServiceModel | undefined, service: { host: string; port: ServicePort } | undefined): void {
    const { name, domains, port } = info;
    const entryStart = this.table.entries.length;
    if (vs) {
      for (const route of vs.http) {
        const matches = this.applicableMatches(route, port);
        if (matches === undefined) continue;
        const routeIndex = this.addRoute(route, port, `${vs.namespace}/${vs.name}`);
        const routeName = route.name ?? "";
        const newEntries: MatchEntry[] = matches.length === 0 ? [{ route: routeIndex, conditions: [] }] : matches.map((m) => this.entryOf(m, routeIndex));
        let catchAll = false;
        newEntries.forEach((e, i) => {
          this.table.entries.push(e);
          const matchName = matches[i]?.name;
          this.entries.push({ name: matchName && routeName ? `${routeName}.${matchName}` : matchName || routeName, source: route.source });
          catchAll ||= isCatchAll(e);
        });
        // Istio stops emitting routes after a catch-all: nothing after it could ever match.
        if (catchAll) break;
      }
    } else if (service) {
      const cluster = this.clusterFor({ host: service.host, subset: undefined, port: service.port.number, weight: 1, headers: undefined, source: undefined }, port);
      this.table.routes.push({ destinations: [{ cluster, weight: 1 }] });
      this.destinations.push({ headers: undefined });
      this.routes.push({ name: "default", virtualService: undefined, timeoutMs: 0, headers: undefined, action: { kind: "forward" }, rewrite: undefined, fault: undefined, cors: undefined, retry: ISTIO_DEFAULT_RETRY, mirrors: [], source: undefined });
      this.table.entries.push({ route: this.table.routes.length - 1, uri: { kind: "prefix", value: "/", ignoreCase: false }, conditions: [] });
      this.entries.push({ name: "default", source: undefined });
    }
    this.table.virtualHosts.push({ name, domains, entryStart, entryCount: this.table.entries.length - entryStart });
    this.vhosts.push(info);
  }

  /** The route's match blocks that apply on this port and to this workload; undefined drops the route. */
  private applicableMatches(route: HttpRouteModel, port: number): MatchModel[] | undefined {
    if (route.matches.length === 0) return [];
    const kept = route.matches.filter((m) => this.matchApplies(m, port));
    return kept.length === 0 ? undefined : kept;
  }

  /** Istio's build-time match filters: the listener port, and this workload's labels and namespace. */
  private matchApplies(m: { port?: number; sourceLabels?: Record<string, string>; sourceNamespace?: string }, port: number): boolean {
    const s = this.model.settings;
    return (m.port === undefined || m.port === port) && (m.sourceLabels === undefined || labelsMatch(m.sourceLabels, s.labels)) && (m.sourceNamespace === undefined || m.sourceNamespace === s.namespace);
  }

  private entryOf(m: MatchModel, route: number): MatchEntry {
    for (const c of m.conditions) {
      if (c.source === "header" && !this.table.headerNames.includes(c.name)) this.table.headerNames.push(c.name);
    }
    return { route, uri: m.uri, method: m.method, authority: m.authority, scheme: m.scheme, conditions: m.conditions };
  }

  private addRoute(route: HttpRouteModel, port: number, virtualService: string): number {
    const destinations: WeightedDestination[] = route.destinations.map((d) => ({ cluster: this.clusterFor(d, port), weight: d.weight }));
    let retry = route.retries ?? ISTIO_DEFAULT_RETRY;
    // Istio leaves the previous-hosts predicate off routes that hash to a host: there, the same host is the point.
    if (retry.avoidPreviousHosts && destinations.some((d) => isHashed(this.clusters[d.cluster]?.policy.loadBalancer))) retry = { ...retry, avoidPreviousHosts: false };
    this.table.routes.push({ destinations });
    for (const d of route.destinations) this.destinations.push({ headers: d.headers });
    this.routes.push({ name: route.name ?? "", virtualService, timeoutMs: route.timeoutMs, headers: route.headers, action: route.action, rewrite: this.rewriteOf(route.rewrite), fault: route.fault, cors: this.corsOf(route.cors), retry,
      mirrors: route.mirrors.map((m) => ({ cluster: this.clusterFor(m.destination, port), percent: m.percent })),
      source: route.source,
    });
    return this.table.routes.length - 1;
  }

  /**
   * A DNS-resolved service's endpoints with names replaced by their addresses:
   * every address for DNS (Envoy's STRICT_DNS), the first for DNS_ROUND_ROBIN
   * (LOGICAL_DNS). Without endpoints the host itself is resolved.
   */
  private resolveEndpoints(service: ServiceModel, host: string): WorkloadEndpoint[] {
    if (service.resolution !== "DNS" && service.resolution !== "DNS_ROUND_ROBIN") return service.endpoints;
    return resolveDnsEndpoints(this.dnsTargetsOf(service, host), service.resolution === "DNS_ROUND_ROBIN", this.resolved, this.dnsNames);
  }

  /** A DNS service's endpoints as configured: its endpoints' names, or without endpoints the host itself. */
  private dnsTargetsOf(service: ServiceModel, host: string): WorkloadEndpoint[] {
    return service.endpoints.length > 0 || service.workloadSelector ? service.endpoints : [{ address: host, ports: {}, labels: {} }];
  }

  /**
   * TCP listeners: the Sidecar's egress listeners with a TCP port. Connections
   * follow the first VirtualService tcp route whose match takes the port (and
   * this workload), else go to the one TCP service with that port.
   */
  private tcpListeners(): TcpListenerInfo[] {
    const sidecar = this.sidecar;
    const s = this.model.settings;
    // A Gateway's PASSTHROUGH servers are SNI listeners routed by the bound VirtualServices' tls routes.
    const passthrough = this.gatewayListeners.filter((g) => g.passthrough);
    const gatewaySni = passthrough.map((g) => ({ address: g.bind ?? s.outbound.address, port: g.port, destinations: [], sni: this.sniRoutes([], g.port) }));
    return [...gatewaySni, ...(sidecar?.tcpListeners ?? []).map(({ port, bind, tls }) => {
      const services = this.services.filter((svc) => svc.ports.some((p) => p.number === port && TCP_PROTOCOLS.includes(p.protocol)));
      const address = bind ?? s.outbound.address;
      if (tls) return { address, port, destinations: [], sni: this.sniRoutes(services, port) };
      for (const vs of this.virtualServices) {
        if (!vs.hosts.some((h) => services.some((svc) => svc.hosts.some((sh) => hostMatches(h, sh))))) continue;
        const route = vs.tcp.find((t) => t.matches.length === 0 || t.matches.some((m) => this.matchApplies(m, port)));
        if (route) return { address, port, destinations: route.destinations.map((d) => ({ cluster: this.clusterFor(d, port), weight: d.weight })), sni: undefined };
      }
      if (services.length === 1) {
        const host = services[0]!.hosts[0]!;
        return { address, port, destinations: [{ cluster: this.clusterFor({ host, subset: undefined, port, weight: 1, headers: undefined, source: undefined }, port), weight: 1 }], sni: undefined };
      }
      this.warn(sidecar?.source, services.length === 0
        ? `egress TCP port ${port}: no service declares it as TCP; connections there are closed`
        : `egress TCP port ${port}: ${services.length} services use it and no VirtualService tcp route picks one; connections there are closed`);
      return { address, port, destinations: [], sni: undefined };
    })];
  }

  /**
   * TLS passthrough on `port`: the VirtualServices' tls routes (sniHosts matches
   * for this port and workload), then each TLS service's own hosts, as Istio
   * routes SNI to the service of that name when no VirtualService says otherwise.
   */
  private sniRoutes(services: ServiceModel[], port: number): NonNullable<TcpListenerInfo["sni"]> {
    const routes: NonNullable<TcpListenerInfo["sni"]> = [];
    for (const vs of this.virtualServices) {
      for (const route of vs.tls) {
        const hosts = route.matches
          .filter((m) => this.matchApplies(m, port))
          .flatMap((m) => m.sniHosts ?? []);
        if (hosts.length > 0) routes.push({ hosts, destinations: route.destinations.map((d) => ({ cluster: this.clusterFor(d, port), weight: d.weight })) });
      }
    }
    for (const svc of services) {
      for (const host of svc.hosts) routes.push({ hosts: [host], destinations: [{ cluster: this.clusterFor({ host, subset: undefined, port, weight: 1, headers: undefined, source: undefined }, port), weight: 1 }] });
    }
    return routes;
  }

  private tableLoadBalancer(lb: LoadBalancerModel): TableLoadBalancer {
    return tableLoadBalancer(this.table, lb);
  }

  private hostRegex(pattern: string, mode: RegexMode): number {
    return hostRegexIndex(this.table, pattern, mode);
  }

  private rewriteOf(rewrite: HttpRouteModel["rewrite"]): RewriteInfo | undefined {
    if (!rewrite) return undefined;
    const rx = rewrite.uriRegex;
    return { uri: rewrite.uri, authority: rewrite.authority, uriRegex: rx && { program: this.hostRegex(rx.match, "search"), rewrite: rx.rewrite } };
  }

  private corsOf(cors: CorsModel | undefined): CorsInfo | undefined {
    if (!cors) return undefined;
    return { ...cors, allowOrigins: cors.allowOrigins.map((m) => ({ ...m, program: m.kind === "regex" ? this.hostRegex(m.value, "fullMatch") : -1 })) };
  }

  /** The DestinationRule for `host`: the most specific host that covers it. */
  private destinationRuleFor(host: string): DestinationRuleModel | undefined {
    this.drIndex ??= new HostIndex(this.destinationRules, (r) => [r.host]);
    return this.drIndex.best(host)[0]?.item;
  }

  /** The ServiceEntry defining `host`: an exact host first, else the most specific wildcard host. */
  private serviceFor(host: string): ServiceModel | undefined {
    this.serviceIndex ??= new HostIndex(this.services, (s) => s.hosts);
    return this.serviceIndex.best(host)[0]?.item;
  }

  /** The endpoints of a cluster: the service's (DNS-resolved) endpoints that match the subset's labels, on the port. */
  private clusterEndpoints(service: ServiceModel, host: string, port: ServiceModel["ports"][number], selector: Record<string, string>, endpoints = this.resolveEndpoints(service, host)): ClusterEndpoint[] {
    return endpoints
      .filter((ep) => labelsMatch(selector, ep.labels))
      .map((ep) => ({ address: ep.address, port: ep.ports[port.name] ?? port.targetPort ?? port.number, labels: ep.labels, ...(ep.weight !== undefined && ep.weight !== 1 ? { weight: ep.weight } : {}) }));
  }

  /**
   * The endpoints of clusters compiled before, from this model: after an
   * endpoint-only change, nothing else needs compiling again. A cluster whose
   * service or subset is gone gets none (a config change would drop it).
   */
  clusterEndpointsOf(clusters: readonly ClusterInfo[]): Pick<ClusterInfo, "endpoints" | "dns">[] {
    return clusters.map((c) => {
      const service = c.passthrough ? undefined : this.serviceFor(c.host);
      const port = service?.ports.find((p) => p.number === c.port);
      const subset = c.subset === undefined ? { labels: {} } : this.destinationRuleFor(c.host)?.subsets.find((x) => x.name === c.subset);
      if (!service || !port || !subset) return { endpoints: [], dns: c.dns && { ...c.dns, targets: [] } };
      const endpoints = this.clusterEndpoints(service, c.host, port, subset.labels);
      return { endpoints, dns: c.dns && { ...c.dns, targets: this.clusterEndpoints(service, c.host, port, subset.labels, this.dnsTargetsOf(service, c.host)) } };
    });
  }

  /**
   * Istio's auto mTLS: a destination without TLS settings whose workloads run a sidecar (label
   * security.istio.io/tlsMode: istio) is called with ISTIO_MUTUAL, unless its PeerAuthentication
   * disables mTLS for that port. Not for resolution NONE (Envoy's ORIGINAL_DST) or services
   * outside the mesh. instio decides per cluster: with some endpoints labeled and others not,
   * the cluster stays plaintext (Envoy chooses per endpoint), and a warning says so.
   */
  private autoMtls(service: ServiceModel, port: ServicePort, selector: Record<string, string>, cluster: string): boolean {
    if (service.resolution === "NONE" || service.location === "MESH_EXTERNAL") return false;
    const endpoints = service.endpoints.filter((ep) => labelsMatch(selector, ep.labels));
    const mesh = endpoints.filter((ep) => ep.labels["security.istio.io/tlsMode"] === "istio");
    if (mesh.length === 0) return false;
    if (mesh.length < endpoints.length) {
      this.warn(service.source, `${cluster}: ${mesh.length} of ${endpoints.length} endpoints run a sidecar (security.istio.io/tlsMode: istio); instio chooses mTLS per cluster, so this one stays plaintext: label them all, or set the DestinationRule's tls`);
      return false;
    }
    const target = port.targetPort ?? port.number;
    return mesh.every((ep) => mtlsModeFor(inboundSecurity({ settings: { ...this.settings, namespace: service.namespace, labels: ep.labels }, peerAuthentications: this.model.peerAuthentications, authorizationPolicies: [] }).mtls, ep.ports[port.name] ?? target) !== "DISABLE");
  }

  /** The cluster a destination names, created on first use; -1 when it cannot exist (503 NC at run time). */
  private clusterFor(d: DestinationModel, listenerPort: number): number {
    const service = this.serviceFor(d.host);
    if (!service) {
      this.warn(d.source, `Referenced host not found: "${d.host}" (IST0101): no ServiceEntry defines it; requests routed there get 503 (NC)`);
      return -1;
    }
    const port = d.port !== undefined ? service.ports.find((p) => p.number === d.port) : service.ports.length === 1 ? service.ports[0] : service.ports.find((p) => p.number === listenerPort);
    if (!port) {
      this.warn(d.source, d.port !== undefined
        ? `Referenced host:port not found: "${d.host}:${d.port}" (IST0101): requests routed there get 503 (NC)`
        : `destination ${d.host}: the service has several ports; set destination.port (IST0112): requests routed there get 503 (NC)`);
      return -1;
    }
    let selector: Record<string, string> = {};
    const dr = this.destinationRuleFor(d.host);
    let subsetPolicy: TrafficPolicyModel | undefined;
    if (d.subset !== undefined) {
      const subset = dr?.subsets.find((s) => s.name === d.subset);
      if (!subset) {
        this.warn(d.source, `Referenced host+subset in destinationrule not found: "${d.host}+${d.subset}" (IST0101): requests routed there get 503 (NC)`);
        return -1;
      }
      selector = subset.labels;
      subsetPolicy = subset.trafficPolicy;
    }
    const name = `outbound|${port.number}|${d.subset ?? ""}|${d.host}`;
    const known = this.clusterIndex.get(name);
    if (known !== undefined) return known;
    let policy = clusterPolicy(dr?.trafficPolicy, subsetPolicy, port.number);
    if (!policy.tls && this.autoMtls(service, port, selector, name)) policy = { ...policy, tls: ISTIO_MUTUAL_DEFAULTS };
    if (policy.tls?.mode === "ISTIO_MUTUAL") {
      // Istio's defaults: the SNI names the cluster (outbound_.PORT_.SUBSET_.HOST), and the peer must be one of the
      // service accounts the destination's endpoints run as (its SPIFFE identities).
      // Identities do not depend on addresses: the service's workloads as configured, not resolved again.
      const accounts = [...new Set(service.endpoints.filter((ep) => labelsMatch(selector, ep.labels) && ep.serviceAccount).map((ep) => spiffeOf(service.namespace, ep.serviceAccount!)))];
      policy = { ...policy, tls: { ...policy.tls, sni: policy.tls.sni ?? `outbound_.${port.number}_.${d.subset ?? ""}_.${d.host}`, subjectAltNames: policy.tls.subjectAltNames.length > 0 ? policy.tls.subjectAltNames : accounts } };
    }
    // loadBalancer PASSTHROUGH is Envoy's ORIGINAL_DST: like resolution NONE, the requested address is used.
    const passthrough = service.resolution === "NONE" || policy.loadBalancer.kind === "PASSTHROUGH";
    const endpoints = passthrough ? [] : this.clusterEndpoints(service, d.host, port, selector);
    const index = this.clusters.length;
    const healthCheck = this.model.settings.healthChecks.find((h) => h.host === d.host && (h.port === undefined || h.port === port.number));
    const http2 = ["HTTP2", "GRPC", "GRPC-WEB"].includes(port.protocol);
    const dnsResolved = !passthrough && (service.resolution === "DNS" || service.resolution === "DNS_ROUND_ROBIN");
    const dns = dnsResolved ? { logical: service.resolution === "DNS_ROUND_ROBIN", targets: this.clusterEndpoints(service, d.host, port, selector, this.dnsTargetsOf(service, d.host)) } : undefined;
    this.clusters.push({ name, host: d.host, serviceNamespace: service.namespace, port: port.number, subset: d.subset, passthrough, endpoints, policy, healthCheck, http2, ...(dns ? { dns } : {}) });
    const loadBalancer = this.tableLoadBalancer(policy.loadBalancer);
    this.table.clusters.push(tableCluster(endpoints, passthrough, loadBalancer));
    this.clusterIndex.set(name, index);
    return index;
  }
}

/** A service account's SPIFFE identity in the mesh's trust domain (instio has no setting for another yet); `account` may be "ns/sa" or a bare name in `namespace`. */
function spiffeOf(namespace: string, account: string): string {
  if (account.startsWith("spiffe://")) return account;
  const [ns, sa] = account.includes("/") ? account.split("/", 2) : [namespace, account];
  return spiffeId(TRUST_DOMAIN, { namespace: ns!, serviceAccount: sa! });
}

/**
 * Endpoints whose addresses may be names, resolved: every address of a name
 * (Envoy's STRICT_DNS), or the first (`logical`, LOGICAL_DNS); a name not
 * resolved yet gives none. The names met are added to `names`.
 */
export function resolveDnsEndpoints<T extends { address: string }>(targets: readonly T[], logical: boolean, resolved: ReadonlyMap<string, readonly string[]>, names: Set<string>): T[] {
  return targets.flatMap((ep) => {
    if (isIP(ep.address) !== 0) return [ep];
    names.add(ep.address);
    const addresses = resolved.get(ep.address) ?? [];
    return (logical ? addresses.slice(0, 1) : addresses).map((address) => ({ ...ep, address }));
  });
}

/** The core's form of a load balancer; a hash on a header or cookie gets that header a request slot in `table`. */
export function tableLoadBalancer(table: RouteTable, lb: LoadBalancerModel): TableLoadBalancer {
  if (lb.kind !== "RING_HASH" && lb.kind !== "MAGLEV") return { kind: lb.kind === "ROUND_ROBIN" ? "roundRobin" : lb.kind === "RANDOM" ? "random" : "leastRequest" }; // PASSTHROUGH clusters pick no endpoint
  const k = lb.key;
  const key: TableHashKey = k.kind === "sourceIp" ? { source: "sourceIp" } : { source: k.kind, name: k.name };
  if (k.kind === "header" || k.kind === "cookie") {
    const header = k.kind === "cookie" ? "cookie" : k.name;
    if (!table.headerNames.includes(header)) table.headerNames.push(header);
  }
  return lb.kind === "RING_HASH" ? { kind: "ringHash", key, minimumRingSize: lb.minimumRingSize } : { kind: "maglev", key, tableSize: lb.tableSize };
}

/** Index of a pattern in table.hostRegexes (programs the host runs through the route core), added when new. */
export function hostRegexIndex(table: RouteTable, pattern: string, mode: RegexMode): number {
  const list = table.hostRegexes!;
  const found = list.findIndex((r) => r.pattern === pattern && r.mode === mode);
  return found >= 0 ? found : list.push({ pattern, mode }) - 1;
}

export interface CompileOptions {
  /**
   * Build a cluster for every visible service port and DestinationRule subset,
   * routed to or not, as istiod does for the proxies it configures: a client may
   * hold a cluster an older route named while the new route takes over. The proxy
   * itself builds only the clusters its routes use.
   */
  everyCluster?: boolean;
  /**
   * Compute the update digests (default): the proxy compares them to apply a
   * change at its granularity, and the config worker computes them off the
   * serving thread. The control plane diffs the Envoy resources instead.
   */
  digests?: boolean;
}

export function compile(model: ConfigModel, resolved?: ReadonlyMap<string, readonly string[]>, options: CompileOptions = {}): CompiledConfig {
  return new Compiler(model, resolved, options).compile();
}

/**
 * `config` with its clusters' endpoints read again from `model` (and DNS answers
 * `resolved`), for a model differing from config's only in endpoints: nothing
 * else is compiled again. A config that carries update digests gets its
 * endpoint digests anew, so that serving it patches only the endpoints (EDS).
 */
export function withEndpointsFrom(config: CompiledConfig, model: ConfigModel, resolved?: ReadonlyMap<string, readonly string[]>): CompiledConfig {
  const fresh = new Compiler(model, resolved).clusterEndpointsOf(config.clusters);
  const clusters = config.clusters.map((c, i) => ({ ...c, ...fresh[i]! }));
  const digests = config.digests && { ...config.digests, endpoints: clusters.map((c) => endpointsDigest(c.endpoints)) };
  return { ...config, model, clusters, digests };
}
