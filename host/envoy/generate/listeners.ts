// Compiled listeners → Envoy v3 Listener, as istiod writes a sidecar's
// (listener_builder.go: virtualOutbound on 15001, one bind_to_port:false listener
// per port handed off by original destination) and a proxyless gRPC client's
// (grpcgen/lds.go: one api_listener per requested host:port).

import type { CompiledConfig, TcpListenerInfo } from "../../config/compile.js";
import { matchesTraffic, type WasmPluginConfig } from "../../config/wasm-plugin.js";
import { packAny, TYPE_PREFIX } from "../protos.js";
import { ADS_CONFIG_SOURCE } from "./clusters.js";
import { CORS_FILTER, FAULT_FILTER, FAULT_TYPE, MISSING_CLUSTER, ROUTER_FILTER, type Json } from "./routes.js";

export const HCM_FILTER = "envoy.filters.network.http_connection_manager";
export const HCM_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
export const TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy";
export const TCP_PROXY_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`;
const ROUTER_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router`;
const CORS_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.cors.v3.Cors`;
const TLS_INSPECTOR_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`;

/** Istio's outbound capture port (mesh proxyListenPort). */
export const VIRTUAL_OUTBOUND_PORT = 15001;

export const WASM_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.wasm.v3.Wasm`;
export const STRING_VALUE_TYPE = `${TYPE_PREFIX}google.protobuf.StringValue`;
export const BYTES_VALUE_TYPE = `${TYPE_PREFIX}google.protobuf.BytesValue`;

/**
 * A WasmPlugin as istiod's Wasm filter (model/extensions.go): name NAMESPACE.NAME, root_id the
 * pluginName, the pluginConfig as a StringValue of JSON, the module by its local file (istiod's form
 * for file:// URLs). Inline in the HCM rather than through ECDS, which instio does not serve.
 */
function wasmFilter(p: WasmPluginConfig): Json {
  const config = {
    name: p.name,
    root_id: p.rootId,
    configuration: typeof p.configuration === "string" ? packAny(STRING_VALUE_TYPE, { value: p.configuration }) : packAny(BYTES_VALUE_TYPE, { value: p.configuration }),
    fail_open: p.failStrategy === "FAIL_OPEN",
    vm_config: { runtime: "envoy.wasm.runtime.v8", code: { local: { filename: p.file } }, environment_variables: { key_values: Object.fromEntries(p.env) } },
  };
  return { name: `extensions.istio.io/wasmplugin/${p.name}`, typed_config: packAny(WASM_TYPE, { config }) };
}

/** HCM HTTP filters in Istio's order: the WasmPlugins (every phase comes before fault), fault, CORS (sidecars only), the router last. */
function httpFilters(proxyless: boolean, plugins: readonly WasmPluginConfig[] = []): Json[] {
  const filters: Json[] = plugins.map(wasmFilter);
  filters.push({ name: FAULT_FILTER, typed_config: packAny(FAULT_TYPE, {}) });
  if (!proxyless) filters.push({ name: CORS_FILTER, typed_config: packAny(CORS_TYPE, {}) });
  filters.push({ name: ROUTER_FILTER, typed_config: packAny(ROUTER_TYPE, {}) });
  return filters;
}

function httpConnectionManager(statPrefix: string, routeConfigName: string, proxyless: boolean, plugins?: readonly WasmPluginConfig[]): Json {
  const hcm: Json = {
    stat_prefix: statPrefix,
    rds: { route_config_name: routeConfigName, config_source: ADS_CONFIG_SOURCE },
    http_filters: httpFilters(proxyless, plugins),
  };
  if (!proxyless) Object.assign(hcm, { codec_type: "AUTO", upgrade_configs: [{ upgrade_type: "websocket" }], use_remote_address: { value: false } });
  return hcm;
}

/** The ports that carry HTTP: one RouteConfiguration each, named by the port (istiod's "9080"). */
export function httpPorts(config: CompiledConfig): number[] {
  return [...new Set(config.virtualHosts.map((v) => v.port))].sort((a, b) => a - b);
}

function socketAddress(address: string, port: number): Json {
  return { socket_address: { address, port_value: port } };
}

function tcpProxy(statPrefix: string, destinations: TcpListenerInfo["destinations"], clusterName: (i: number) => string): Json {
  const config: Json = { stat_prefix: statPrefix };
  if (destinations.length === 1) config.cluster = clusterName(destinations[0]!.cluster);
  else if (destinations.length === 0) config.cluster = "BlackHoleCluster";
  else config.weighted_clusters = { clusters: destinations.map((d) => ({ name: clusterName(d.cluster), weight: d.weight })) };
  return { name: TCP_PROXY_FILTER, typed_config: packAny(TCP_PROXY_TYPE, config) };
}

/** A sidecar's outbound listeners: virtualOutbound, then one per HTTP port and one per TCP listener. */
export function sidecarListeners(config: CompiledConfig): Json[] {
  const clusterName = (i: number): string => (i < 0 ? MISSING_CLUSTER : config.clusters[i]!.name);
  const catchAll = config.settings.outboundTrafficPolicy === "REGISTRY_ONLY" ? "BlackHoleCluster" : "PassthroughCluster";
  const listeners: Json[] = [{
    name: "virtualOutbound",
    address: socketAddress("0.0.0.0", VIRTUAL_OUTBOUND_PORT),
    use_original_dst: { value: true },
    traffic_direction: "OUTBOUND",
    filter_chains: [
      // Traffic addressed to 15001 itself would loop.
      { name: "virtualOutbound-blackhole", filter_chain_match: { destination_port: { value: VIRTUAL_OUTBOUND_PORT } }, filters: [tcpProxy("BlackHoleCluster", [], clusterName)] },
      { name: "virtualOutbound-catchall-tcp", filters: [tcpProxy(catchAll, [{ cluster: -2, weight: 1 }], () => catchAll)] },
    ],
  }];
  for (const port of httpPorts(config)) {
    const name = `0.0.0.0_${port}`;
    listeners.push({
      name,
      address: socketAddress("0.0.0.0", port),
      bind_to_port: { value: false },
      traffic_direction: "OUTBOUND",
      filter_chains: [{ filters: [{ name: HCM_FILTER, typed_config: packAny(HCM_TYPE, httpConnectionManager(`outbound_${name}`, String(port), false, config.wasmPlugins.filter((p) => matchesTraffic(p.match, "outbound", port)))) }] }],
    });
  }
  for (const tcp of config.tcpListeners) {
    const name = `${tcp.address}_${tcp.port}`;
    const chains = tcp.sni
      ? tcp.sni.map((route) => ({ filter_chain_match: { server_names: route.hosts }, filters: [tcpProxy(`outbound|${tcp.port}||${route.hosts[0]}`, route.destinations, clusterName)] }))
      : [{ filters: [tcpProxy(`outbound_${name}`, tcp.destinations, clusterName)] }];
    listeners.push({
      name,
      address: socketAddress(tcp.address, tcp.port),
      bind_to_port: { value: false },
      traffic_direction: "OUTBOUND",
      ...(tcp.sni ? { listener_filters: [{ name: "envoy.filters.listener.tls_inspector", typed_config: packAny(TLS_INSPECTOR_TYPE, {}) }] } : {}),
      filter_chains: chains,
    });
  }
  return listeners;
}

/**
 * A proxyless gRPC client's listener for `name` (the dial target, "host:port"):
 * an api_listener whose routes are the RouteConfiguration `routeConfigName`.
 */
export function grpcListener(name: string, routeConfigName: string): Json {
  return {
    name,
    api_listener: { api_listener: packAny(HCM_TYPE, httpConnectionManager(name, routeConfigName, true)) },
  };
}
