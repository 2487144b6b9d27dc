// Istio's WasmPlugin (extensions.istio.io/v1alpha1) → validated model, and the
// plugins that apply to this proxy in the order istiod gives them
// (../shared/reference/mesh.md §J): the proxy's namespace and the root
// namespace, selected by labels; per phase (AUTHN, AUTHZ, STATS, then
// UNSPECIFIED), priority descending, an unset priority after every set one.
// The module is read and its sha256 checked here, so that a wrong file is a
// config error at the url's line, not a failing filter later.

import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { FieldReader, Obj } from "./fields.js";
import { readBounded } from "./files.js";
import type { ResourceMeta } from "./resource.js";
import { readPolicyMeta, readSelector, selects } from "./security-policy.js";

export const EXTENSIONS_API_VERSION = "extensions.istio.io/v1alpha1";

export const PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"] as const;
export type WasmPhase = (typeof PHASES)[number];
export type FailStrategy = "FAIL_CLOSE" | "FAIL_OPEN" | "FAIL_RELOAD";
export type TrafficMode = "CLIENT" | "SERVER" | "CLIENT_AND_SERVER";

/** A module's size limit: Istio's agent caps downloads at 256 MiB; a filter is rarely over a few MiB. */
const MAX_MODULE_BYTES = 64 << 20;

export interface WasmPluginModel extends ResourceMeta {
  selector: Record<string, string> | undefined;
  url: string;
  /** The module's path (the url's). */
  file: string;
  /** The module's bytes (read and checked against sha256 when given). */
  code: Uint8Array;
  /** Hex sha256 of the module, computed when the resource gives none. */
  sha256: string;
  /** Envoy's root_id. */
  pluginName: string;
  /** pluginConfig as JSON (Envoy's StringValue configuration), "" without. */
  pluginConfig: string;
  phase: WasmPhase;
  /** undefined sorts after every priority, as istiod's MinInt32. */
  priority: number | undefined;
  failStrategy: FailStrategy;
  /** Any entry selecting the traffic applies the plugin; empty: all traffic. */
  match: { mode: TrafficMode; ports: number[] }[];
  /** vmConfig.env resolved: INLINE values, HOST values from the proxy's environment. */
  env: [string, string][];
  created: number;
}

export function readWasmPlugin(r: FieldReader, top: Obj, order: number): WasmPluginModel | undefined {
  const spec =
    r.object(top.spec, ["spec"], ["selector", "url", "sha256", "imagePullPolicy", "imagePullSecret", "pluginConfig", "pluginName", "phase", "priority", "vmConfig", "match", "failStrategy", "type"], {
      targetRef: "targetRef binds a plugin to a Gateway API resource or a waypoint; instio applies plugins to sidecars (use selector)",
      targetRefs: "targetRefs binds a plugin to a Gateway API resource or a waypoint; instio applies plugins to sidecars (use selector)",
      verificationKey: "verificationKey is not implemented by Istio either",
    }) ?? {};
  const { meta, created } = readPolicyMeta(r, top, "WasmPlugin");
  const url = r.string(spec.url, ["spec", "url"], true);
  const sha = r.string(spec.sha256, ["spec", "sha256"]);
  if (sha !== undefined && !/^[0-9a-f]{64}$/.test(sha)) r.error(["spec", "sha256"], "must be 64 lower-case hex digits");
  if (r.oneOf(spec.type, ["spec", "type"], ["HTTP", "UNSPECIFIED_PLUGIN_TYPE"], ["NETWORK"]) === undefined && spec.type !== undefined) return undefined;
  r.oneOf(spec.imagePullPolicy, ["spec", "imagePullPolicy"], ["UNSPECIFIED_POLICY", "IfNotPresent", "Always"]);
  const code = url === undefined ? undefined : readModule(r, url, sha);
  const phase = r.oneOf(spec.phase, ["spec", "phase"], PHASES) ?? "UNSPECIFIED_PHASE";
  const priority = r.integer(spec.priority, ["spec", "priority"], -(2 ** 31), 2 ** 31 - 1);
  const failStrategy = r.oneOf(spec.failStrategy, ["spec", "failStrategy"], ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"] as const) ?? "FAIL_CLOSE";
  const pluginConfig = spec.pluginConfig === undefined ? "" : JSON.stringify(r.object(spec.pluginConfig, ["spec", "pluginConfig"], Object.keys((spec.pluginConfig as Obj | null) ?? {})) ?? {});
  const match = r.list(spec.match, ["spec", "match"]).map((m, i) => {
    const o = r.object(m, ["spec", "match", i], ["mode", "ports"]) ?? {};
    const mode = r.oneOf(o.mode, ["spec", "match", i, "mode"], ["CLIENT", "SERVER", "CLIENT_AND_SERVER", "UNDEFINED"] as const) ?? "CLIENT_AND_SERVER";
    const ports = r.list(o.ports, ["spec", "match", i, "ports"]).map((p, j) => {
      const po = r.object(p, ["spec", "match", i, "ports", j], ["number"]) ?? {};
      return r.integer(po.number, ["spec", "match", i, "ports", j, "number"], 1, 65535, true) ?? 0;
    });
    return { mode: mode === "UNDEFINED" ? "CLIENT_AND_SERVER" : mode, ports };
  });
  const env: [string, string][] = [];
  const vm = r.object(spec.vmConfig, ["spec", "vmConfig"], ["env"]);
  r.list(vm?.env, ["spec", "vmConfig", "env"]).forEach((e, i) => {
    const path = ["spec", "vmConfig", "env", i];
    const o = r.object(e, path, ["name", "valueFrom", "value"]) ?? {};
    const name = r.string(o.name, [...path, "name"], true);
    const from = r.oneOf(o.valueFrom, [...path, "valueFrom"], ["INLINE", "HOST"] as const) ?? "INLINE";
    const value = from === "HOST" ? process.env[name ?? ""] : r.string(o.value, [...path, "value"]);
    if (name !== undefined && value !== undefined) env.push([name, value]);
  });
  if (!code || url === undefined) return undefined;
  return {
    ...meta,
    selector: readSelector(r, spec),
    url,
    file: code.file,
    code: code.bytes,
    sha256: code.sha256,
    pluginName: r.string(spec.pluginName, ["spec", "pluginName"]) ?? "",
    pluginConfig,
    phase,
    priority,
    failStrategy,
    match,
    env,
    created: created ?? order,
  };
}

/** A module's bytes, validated and digested; `path` (a file, or undefined for inline bytes) names it in the error. Throws with the reason. */
export function checkedModule(bytes: Uint8Array, path = "the inline module"): { bytes: Uint8Array; sha256: string } {
  if (!WebAssembly.validate(new Uint8Array(bytes))) throw new Error(`${path} is not a valid WebAssembly module`);
  return { bytes: new Uint8Array(bytes), sha256: createHash("sha256").update(bytes).digest("hex") };
}

/** A module file: read (bounded), validated, digested. Throws with the reason. */
export function loadModuleFile(path: string): { bytes: Uint8Array; sha256: string } {
  return checkedModule(readBounded(path, MAX_MODULE_BYTES), path);
}

/** file:// only: no registry can be reached from here (oci:// and http[s]:// are refused with that reason). */
function readModule(r: FieldReader, url: string, sha256: string | undefined): { file: string; bytes: Uint8Array; sha256: string } | undefined {
  if (!url.startsWith("file://")) {
    const scheme = /^[a-z0-9+.-]+:\/\//i.exec(url)?.[0] ?? "oci:// (the default)";
    r.error(["spec", "url"], `${scheme} modules are not supported: instio loads file:// URLs only (fetch the module beside the proxy, as istio-agent does, and name its path)`);
    return undefined;
  }
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch (err) {
    r.error(["spec", "url"], `not a usable file URL: ${(err as Error).message}`);
    return undefined;
  }
  let module: { bytes: Uint8Array; sha256: string };
  try {
    module = loadModuleFile(path);
  } catch (err) {
    r.error(["spec", "url"], `cannot load the module: ${(err as Error).message}`);
    return undefined;
  }
  if (sha256 !== undefined && module.sha256 !== sha256) {
    r.error(["spec", "sha256"], `the module at ${path} has sha256 ${module.sha256}, not ${sha256}`);
    return undefined;
  }
  return { file: path, ...module };
}

/** A plugin as this proxy runs it: the resource's fields plus where it runs. */
export interface WasmPluginConfig {
  /** Envoy's PluginConfig name: NAMESPACE.NAME. */
  name: string;
  source: ResourceMeta["source"];
  rootId: string;
  /** Where the module was read from (what goes to Envoy as vm_config.code.local.filename). */
  file: string;
  code: Uint8Array;
  sha256: string;
  /** The plugin configuration as the plugin reads it: pluginConfig's JSON, or an Envoy config's bytes. */
  configuration: string | Uint8Array;
  phase: WasmPhase;
  failStrategy: FailStrategy;
  match: WasmPluginModel["match"];
  env: [string, string][];
}

/** The plugins for this proxy, in istiod's order. */
export function wasmPluginsFor(model: { settings: { rootNamespace: string; namespace: string; labels: Record<string, string> }; wasmPlugins: readonly WasmPluginModel[] }): WasmPluginConfig[] {
  const { rootNamespace, namespace, labels } = model.settings;
  const byCreation = (a: WasmPluginModel, b: WasmPluginModel): number => a.created - b.created || a.name.localeCompare(b.name) || a.namespace.localeCompare(b.namespace);
  // The proxy's namespace first, then the root namespace, each by creation; then a stable sort per phase by priority.
  const own = model.wasmPlugins.filter((p) => p.namespace === namespace && selects(p.selector, labels)).sort(byCreation);
  const root = namespace === rootNamespace ? [] : model.wasmPlugins.filter((p) => p.namespace === rootNamespace && selects(p.selector, labels)).sort(byCreation);
  const priority = (p: WasmPluginModel): number => p.priority ?? -(2 ** 31);
  const ordered = [...own, ...root].sort((a, b) => PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase) || priority(b) - priority(a));
  return ordered.map((p) => ({
    name: `${p.namespace}.${p.name}`,
    source: p.source,
    rootId: p.pluginName,
    file: p.file,
    code: p.code,
    sha256: p.sha256,
    configuration: p.pluginConfig,
    phase: p.phase,
    failStrategy: p.failStrategy,
    match: p.match,
    env: p.env,
  }));
}

/**
 * What makes two plugin configs the same running plugin: its name, module,
 * root id, configuration, fail strategy and environment (not where it matches,
 * which only says which requests it sees).
 */
export function pluginIdentity(c: WasmPluginConfig): string {
  const configuration = typeof c.configuration === "string" ? Buffer.from(c.configuration) : c.configuration;
  return createHash("sha256").update(JSON.stringify([c.name, c.sha256, c.rootId, c.failStrategy, c.env])).update(configuration).digest("hex");
}

/** Whether the plugin's match selects traffic of this direction and port (outbound is Istio's CLIENT, inbound SERVER). */
export function matchesTraffic(match: WasmPluginConfig["match"], direction: "outbound" | "inbound", port: number): boolean {
  if (match.length === 0) return true;
  const mode = direction === "outbound" ? "CLIENT" : "SERVER";
  return match.some((m) => (m.mode === "CLIENT_AND_SERVER" || m.mode === mode) && (m.ports.length === 0 || m.ports.includes(port)));
}
