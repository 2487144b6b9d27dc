// Envoy v3 Listener → what instio serves: the sidecar's listeners as istiod
// writes them (../generate/listeners.ts): virtualOutbound, whose catch-all says
// where unknown traffic goes; one HTTP connection manager per port, with its
// routes by RDS or inline; TCP proxies, by SNI where the chains match it.

import { BYTES_VALUE_TYPE, HCM_FILTER, HCM_TYPE, STRING_VALUE_TYPE, TCP_PROXY_FILTER, TCP_PROXY_TYPE, WASM_TYPE } from "../generate/listeners.js";
import { checkedModule, loadModuleFile, type WasmPluginConfig } from "../../config/wasm-plugin.js";
import { CORS_FILTER, FAULT_FILTER, ROUTER_FILTER } from "../generate/routes.js";
import { TYPE_PREFIX } from "../protos.js";
import { MessageReader } from "./reader.js";
import { readRouteConfiguration, type XdsRouteConfiguration } from "./routes.js";

const ROUTER_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router`;
const CORS_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.cors.v3.Cors`;
const FAULT_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.http.fault.v3.HTTPFault`;
const TLS_INSPECTOR_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`;
const ORIGINAL_DST_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.listener.original_dst.v3.OriginalDst`;

/** Istio's catch-all clusters: where a sidecar's unmatched outbound traffic goes. */
export const PASSTHROUGH_CLUSTER = "PassthroughCluster";
export const BLACKHOLE_CLUSTER = "BlackHoleCluster";

export interface XdsWeightedCluster {
  cluster: string;
  weight: number;
}

export type XdsListener =
  /** The capture listener (use_original_dst): its catch-all chain decides ALLOW_ANY or REGISTRY_ONLY. */
  | { kind: "virtualOutbound"; name: string; port: number; passthrough: boolean }
  | { kind: "http"; name: string; port: number; rds: string | undefined; inline: XdsRouteConfiguration | undefined; bind: Bind | undefined; wasm: WasmPluginConfig[] }
  | { kind: "tcp"; name: string; port: number; destinations: XdsWeightedCluster[]; sni: { hosts: string[]; destinations: XdsWeightedCluster[] }[] | undefined; bind: Bind | undefined };

/**
 * Where a listener that binds its own port listens (bind_to_port, Envoy's default; a bootstrap's
 * listeners). Istio's per-port sidecar listeners do not bind: traffic reaches them through the
 * outbound listener.
 */
export interface Bind {
  address: string;
  port: number;
}

export function readListener(r: MessageReader): XdsListener {
  const name = r.str("name") ?? r.fail("name", "a listener needs a name");
  const address = r.obj("address") ?? r.fail("address", "a listener needs an address");
  const socket = address.obj("socket_address") ?? address.fail("socket_address", "only socket addresses are supported");
  const host = socket.str("address") ?? "0.0.0.0";
  const port = socket.num("port_value") ?? 0;
  socket.only("protocol", ["TCP"]);
  socket.done();
  address.done();
  const originalDst = r.wrapped<boolean>("use_original_dst") === true;
  const bound = r.has("bind_to_port") ? r.wrapped<boolean>("bind_to_port") === true : true;
  r.only("traffic_direction", ["OUTBOUND", "UNSPECIFIED"], "listeners are not supported yet (inbound listeners come with capture)");
  for (const f of r.list("listener_filters")) {
    f.accept("name");
    f.any("typed_config", [TLS_INSPECTOR_TYPE, ORIGINAL_DST_TYPE])?.done();
    f.done();
  }
  r.accept("continue_on_listener_filters_timeout", "listener_filters_timeout");
  const chains = r.list("filter_chains");
  let listener: XdsListener;
  if (originalDst) {
    listener = { kind: "virtualOutbound", name, port, passthrough: virtualOutboundPassthrough(chains, port) };
  } else {
    if (bound && (port <= 0 || port > 65535)) r.fail("address", `a listener that binds needs a port from 1 to 65535, not ${port}`);
    listener = readChains(chains, name, port, bound ? { address: host, port } : undefined);
  }
  r.done();
  return listener;
}

/** virtualOutbound: chains that black-hole traffic to the capture port itself, and the catch-all. */
function virtualOutboundPassthrough(chains: MessageReader[], port: number): boolean {
  let passthrough = true;
  for (const chain of chains) {
    chain.accept("name");
    const match = chain.obj("filter_chain_match");
    const tcp = singleFilter(chain, TCP_PROXY_FILTER);
    const target = readTcpProxy(tcp);
    if (match) {
      const dst = match.wrapped("destination_port");
      if (dst !== port || target.destinations.length !== 1 || target.destinations[0]!.cluster !== BLACKHOLE_CLUSTER) match.fail("destination_port", "virtualOutbound chains other than the loop guard are not supported");
      match.done();
    } else {
      const cluster = target.destinations[0]?.cluster;
      if (target.destinations.length !== 1 || (cluster !== PASSTHROUGH_CLUSTER && cluster !== BLACKHOLE_CLUSTER)) chain.fail("filters", `the catch-all goes to ${PASSTHROUGH_CLUSTER} or ${BLACKHOLE_CLUSTER}`);
      passthrough = cluster === PASSTHROUGH_CLUSTER;
    }
    chain.done();
  }
  return passthrough;
}

function singleFilter(chain: MessageReader, expected: string): MessageReader {
  const filters = chain.list("filters");
  if (filters.length !== 1) chain.fail("filters", "one network filter per chain is supported");
  const f = filters[0]!;
  const name = f.str("name");
  if (name !== expected) f.fail("name", `${name} is not supported here (expected ${expected})`);
  return f;
}

function readChains(chains: MessageReader[], name: string, port: number, bind: Bind | undefined): XdsListener {
  if (chains.length === 0) throw new MessageReader({}, name).fail("filter_chains", "a listener needs a filter chain");
  const first = chains[0]!;
  const filterName = first.list("filters")[0]?.str("name");
  if (filterName === HCM_FILTER) {
    if (chains.length > 1) chains[1]!.fail("", "an HTTP listener with several filter chains is not supported");
    first.accept("name");
    const hcm = readHcm(singleFilter(first, HCM_FILTER), name, port);
    first.done();
    return { kind: "http", name, port, ...hcm, bind };
  }
  const sni: { hosts: string[]; destinations: XdsWeightedCluster[] }[] = [];
  let plain: XdsWeightedCluster[] | undefined;
  for (const chain of chains) {
    chain.accept("name");
    const match = chain.obj("filter_chain_match");
    const tcp = readTcpProxy(singleFilter(chain, TCP_PROXY_FILTER));
    if (match) {
      const hosts = match.strings("server_names");
      match.done();
      sni.push({ hosts, destinations: tcp.destinations });
    } else plain = tcp.destinations;
    chain.done();
  }
  return { kind: "tcp", name, port, destinations: plain ?? [], sni: sni.length > 0 ? sni : undefined, bind };
}

function readTcpProxy(filter: MessageReader): { destinations: XdsWeightedCluster[] } {
  const config = filter.any("typed_config", [TCP_PROXY_TYPE]) ?? filter.fail("typed_config", "a tcp_proxy needs its config");
  config.accept("stat_prefix");
  let destinations: XdsWeightedCluster[];
  if (config.has("cluster")) destinations = [{ cluster: config.str("cluster")!, weight: 1 }];
  else {
    const weighted = config.obj("weighted_clusters") ?? config.fail("cluster_specifier", "a tcp_proxy needs cluster or weighted_clusters");
    destinations = weighted.list("clusters").map((c) => {
      const d = { cluster: c.str("name") ?? "", weight: c.num("weight") ?? 0 };
      c.done();
      return d;
    });
    weighted.done();
  }
  config.done();
  filter.done();
  return { destinations };
}

function readHcm(filter: MessageReader, listener: string, port: number): { rds: string | undefined; inline: XdsRouteConfiguration | undefined; wasm: WasmPluginConfig[] } {
  const hcm = filter.any("typed_config", [HCM_TYPE]) ?? filter.fail("typed_config", "an HTTP connection manager needs its config");
  filter.done();
  hcm.accept("stat_prefix", "use_remote_address", "generate_request_id", "server_name");
  // instio's listeners speak HTTP/1.1 and HTTP/2 as configured for the proxy, and upgrade WebSockets on every route.
  hcm.only("codec_type", ["AUTO", "HTTP1", "HTTP2"]);
  for (const u of hcm.list("upgrade_configs")) {
    u.only("upgrade_type", ["websocket"]);
    u.done();
  }
  const filters = hcm.list("http_filters");
  const last = filters.at(-1);
  if (!last || last.str("name") !== ROUTER_FILTER) hcm.fail("http_filters", `the last HTTP filter must be ${ROUTER_FILTER}`);
  const wasm: WasmPluginConfig[] = [];
  for (const f of filters) {
    if (f.anyType("typed_config") === WASM_TYPE) {
      wasm.push(readWasmFilter(f, listener, port));
      continue;
    }
    const name = f.str("name");
    const types: Record<string, string> = { [ROUTER_FILTER]: ROUTER_TYPE, [CORS_FILTER]: CORS_TYPE, [FAULT_FILTER]: FAULT_TYPE };
    const type = name === undefined ? undefined : types[name];
    if (!type) {
      if (f.bool("is_optional") === true) continue; // Envoy skips an optional filter it does not know
      throw f.error("name", `HTTP filter ${name} is not supported (instio runs ${Object.keys(types).join(", ")})`);
    }
    const config = f.any("typed_config", [type]);
    if (config) {
      // The filters' own settings: none are supported (faults and CORS come per route).
      if (type === ROUTER_TYPE) config.accept("suppress_envoy_headers");
      config.done();
    }
    f.accept("is_optional");
    f.done();
  }
  let rds: string | undefined;
  let inline: XdsRouteConfiguration | undefined;
  const rdsConfig = hcm.obj("rds");
  if (rdsConfig) {
    rds = rdsConfig.str("route_config_name") ?? "";
    rdsConfig.accept("config_source");
    rdsConfig.done();
  } else {
    const route = hcm.obj("route_config") ?? hcm.fail("route_specifier", "an HTTP connection manager needs rds or route_config");
    inline = readRouteConfiguration(route);
  }
  hcm.done();
  return { rds, inline, wasm };
}

/**
 * An HTTP Wasm filter (envoy.extensions.filters.http.wasm.v3.Wasm) → the plugin the proxy runs, on
 * this listener's port. The module is read here, from its local file or inline bytes: fetching a
 * remote one is istio-agent's job, which instio does not do (the filter is refused, with the reason).
 */
function readWasmFilter(f: MessageReader, listener: string, port: number): WasmPluginConfig {
  f.accept("name", "is_optional");
  const wasm = f.any("typed_config", [WASM_TYPE])!;
  const config = wasm.obj("config") ?? wasm.fail("config", "a Wasm filter needs its plugin config");
  wasm.done();
  const name = config.str("name") ?? f.peek("name") ?? listener;
  const rootId = config.str("root_id") ?? "";
  let configuration: string | Uint8Array = "";
  const any = config.any("configuration", [STRING_VALUE_TYPE, BYTES_VALUE_TYPE]);
  if (any) {
    configuration = any.peek("value") ?? any.bytes("value") ?? "";
    any.accept("value");
    any.done();
  }
  const failOpen = config.bool("fail_open") === true;
  const vm = config.obj("vm_config") ?? config.fail("vm_config", "a Wasm filter needs its vm_config");
  vm.accept("vm_id", "runtime", "allow_precompiled", "nack_on_code_cache_miss");
  const code = vm.obj("code") ?? vm.fail("code", "a Wasm filter needs its code");
  const local = code.obj("local") ?? code.fail("remote", "remote modules are not fetched (istio-agent's job): give local.filename or local.inline_bytes");
  const filename = local.str("filename");
  const inline = local.bytes("inline_bytes");
  local.done();
  code.done();
  let module: { bytes: Uint8Array; sha256: string };
  try {
    module = inline ? checkedModule(inline) : loadModuleFile(filename ?? local.fail("filename", "a local module needs filename or inline_bytes"));
  } catch (err) {
    throw local.error("filename", (err as Error).message);
  }
  const env: [string, string][] = [];
  const vars = vm.obj("environment_variables");
  if (vars) {
    for (const key of vars.strings("host_env_keys")) if (process.env[key] !== undefined) env.push([key, process.env[key]!]);
    for (const [key, value] of vars.map("key_values")) env.push([key, String(value)]);
    vars.done();
  }
  vm.done();
  config.done();
  f.done();
  return {
    name,
    source: { file: `xds listener ${listener}`, line: 0, column: 0 },
    rootId,
    file: filename ?? "",
    code: module.bytes,
    sha256: module.sha256,
    configuration,
    phase: "UNSPECIFIED_PHASE",
    failStrategy: failOpen ? "FAIL_OPEN" : "FAIL_CLOSE",
    match: [{ mode: "CLIENT", ports: [port] }],
    env,
  };
}
