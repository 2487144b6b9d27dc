// The instio settings document: what Istio keeps in MeshConfig, ProxyConfig and
// the pod spec, for a proxy that runs from files.
//
//   apiVersion: instio.dev/v1alpha1
//   kind: ProxySettings
//   spec:
//     namespace: default
//     labels: {app: productpage, version: v1}
//     outboundTrafficPolicy: {mode: ALLOW_ANY}
//     listeners:
//       outbound: {address: 127.0.0.1, port: 15001, engine: uws}
//       inbound:  {address: 0.0.0.0, port: 15006, appPort: 9080}
//     admin: {address: 127.0.0.1, port: 15000}

import { isIP } from "node:net";
import type { FieldReader, Obj } from "./fields.js";
import type { ListenerEngine, ListenerSettings, OutboundTrafficPolicy, Settings } from "./model.js";

export const SETTINGS_API_VERSION = "instio.dev/v1alpha1";
export const SETTINGS_KIND = "ProxySettings";

export function defaultSettings(): Settings {
  return {
    namespace: "default",
    labels: {},
    outboundTrafficPolicy: "ALLOW_ANY",
    outbound: { address: "127.0.0.1", port: 15001, engine: "uws" },
    inbound: undefined,
    admin: { address: "127.0.0.1", port: 15000 },
    source: undefined,
  };
}

export function readSettings(r: FieldReader, top: Obj): Settings {
  const s = defaultSettings();
  s.source = r.doc.locate([]);
  r.object(top.metadata, ["metadata"], ["name", "namespace", "labels", "annotations"]);
  const spec = r.object(top.spec, ["spec"], ["namespace", "labels", "outboundTrafficPolicy", "listeners", "admin"]);
  if (!spec) return s;
  s.namespace = r.string(spec.namespace, ["spec", "namespace"]) || s.namespace;
  s.labels = r.stringMap(spec.labels, ["spec", "labels"]);
  const otp = r.object(spec.outboundTrafficPolicy, ["spec", "outboundTrafficPolicy"], ["mode"]);
  if (otp) s.outboundTrafficPolicy = r.oneOf<OutboundTrafficPolicy>(otp.mode, ["spec", "outboundTrafficPolicy", "mode"], ["ALLOW_ANY", "REGISTRY_ONLY"]) ?? s.outboundTrafficPolicy;
  const listeners = r.object(spec.listeners, ["spec", "listeners"], ["outbound", "inbound"]);
  if (listeners) {
    s.outbound = readListener(r, listeners.outbound, ["spec", "listeners", "outbound"], s.outbound, []);
    if (listeners.inbound !== undefined) {
      const base = readListener(r, listeners.inbound, ["spec", "listeners", "inbound"], { address: "0.0.0.0", port: 15006, engine: "uws" }, ["appAddress", "appPort"]);
      const inbound = (listeners.inbound ?? {}) as Obj;
      const appPort = r.integer(inbound.appPort, ["spec", "listeners", "inbound", "appPort"], 1, 65535, true);
      const appAddress = address(r, inbound.appAddress, ["spec", "listeners", "inbound", "appAddress"]) ?? "127.0.0.1";
      if (appPort !== undefined) s.inbound = { ...base, appAddress, appPort };
    }
  }
  const admin = r.object(spec.admin, ["spec", "admin"], ["address", "port"]);
  if (admin) {
    s.admin = {
      address: address(r, admin.address, ["spec", "admin", "address"]) ?? s.admin.address,
      port: r.integer(admin.port, ["spec", "admin", "port"], 0, 65535) ?? s.admin.port,
    };
  }
  return s;
}

function readListener(r: FieldReader, value: unknown, path: (string | number)[], defaults: ListenerSettings, extra: string[]): ListenerSettings {
  const l = r.object(value, path, ["address", "port", "engine", ...extra]);
  if (!l) return defaults;
  return {
    address: address(r, l.address, [...path, "address"]) ?? defaults.address,
    port: r.integer(l.port, [...path, "port"], 0, 65535) ?? defaults.port,
    engine: r.oneOf<ListenerEngine>(l.engine, [...path, "engine"], ["uws", "node"]) ?? defaults.engine,
  };
}

function address(r: FieldReader, value: unknown, path: (string | number)[]): string | undefined {
  const a = r.string(value, path);
  if (a !== undefined && isIP(a) === 0) {
    r.error(path, `must be an IP address, got "${a}"`);
    return undefined;
  }
  return a;
}
