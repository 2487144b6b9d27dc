// Istio's security resources (security.istio.io v1, v1beta1) → validated model:
// PeerAuthentication (which mTLS a workload's inbound ports accept) and
// AuthorizationPolicy (who may call it). Both are selected for this proxy and
// composed in compile.ts; the inbound listener and the authorization filter
// apply them (host/security/).
//
// Every field of a Source, Operation and Condition becomes one Predicate: a
// field of the request, the values to look for and whether the field is a
// `not…` one. A rule is then plain data (it crosses the config worker) that one
// small evaluator reads (host/security/authorization.ts).

import { isIP } from "node:net";
import type { FieldReader, Obj } from "./fields.js";
import type { ResourceMeta } from "./resource.js";
import type { FieldPath } from "./source.js";

export const SECURITY_GROUP = "security.istio.io/";
export const SECURITY_VERSIONS = ["v1beta1", "v1"];

/** UNSET is undefined: inherit from the level above (PERMISSIVE at the top). */
export type MtlsMode = "STRICT" | "PERMISSIVE" | "DISABLE";

export interface PeerAuthenticationModel extends ResourceMeta {
  /** selector.matchLabels; undefined: the whole namespace (the mesh, in the root namespace). */
  selector: Record<string, string> | undefined;
  mode: MtlsMode | undefined;
  /** portLevelMtls by workload port. */
  portLevel: [number, MtlsMode | undefined][];
  /** metadata.creationTimestamp in ms (the oldest wins a tie); the document order stands in when absent. */
  created: number;
}

/** What a predicate reads of a request (Istio's Source, Operation and Condition keys). */
export type AuthzField =
  | "principal" | "namespace" | "serviceAccount" | "trustDomain" | "sourceIp" | "remoteIp"
  | "host" | "port" | "method" | "path" | "header" | "destinationIp" | "destinationPort" | "sni";

/** One field: matches when any value matches (`negate`: when none does). */
export interface Predicate {
  field: AuthzField;
  /** request.headers[NAME]: the lower-case header name. */
  header?: string;
  values: string[];
  negate: boolean;
}

export interface AuthzRule {
  /** Alternatives (OR), each a conjunction (AND) of predicates; undefined: any source. */
  from: Predicate[][] | undefined;
  to: Predicate[][] | undefined;
  when: Predicate[];
}

export type AuthzAction = "ALLOW" | "DENY" | "AUDIT";

export interface AuthorizationPolicyModel extends ResourceMeta {
  selector: Record<string, string> | undefined;
  action: AuthzAction;
  /** Annotation istio.io/dry-run: "true": evaluated and counted, never enforced. */
  dryRun: boolean;
  rules: AuthzRule[];
}

/** metadata of a selector-scoped resource (security policies, WasmPlugin): name, namespace, annotations, creation time. */
export function readPolicyMeta(r: FieldReader, top: Obj, kind: string): { meta: ResourceMeta; annotations: Record<string, string>; created: number | undefined } {
  const m = r.object(top.metadata, ["metadata"], ["name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp"]) ?? {};
  const name = r.string(m.name, ["metadata", "name"], true) ?? "";
  const namespace = r.string(m.namespace, ["metadata", "namespace"]) || "default";
  const stamp = r.string(m.creationTimestamp, ["metadata", "creationTimestamp"]);
  let created: number | undefined;
  if (stamp !== undefined) {
    created = Date.parse(stamp);
    if (Number.isNaN(created)) {
      r.error(["metadata", "creationTimestamp"], `must be an RFC 3339 time such as "2026-01-02T03:04:05Z", got "${stamp}"`);
      created = undefined;
    }
  }
  return { meta: { kind, name, namespace, exportTo: [], source: r.doc.locate([]) }, annotations: r.stringMap(m.annotations, ["metadata", "annotations"]), created };
}

/** spec.selector.matchLabels; undefined without a selector. */
export function readSelector(r: FieldReader, spec: Obj): Record<string, string> | undefined {
  const s = r.object(spec.selector, ["spec", "selector"], ["matchLabels"]);
  return s ? r.stringMap(s.matchLabels, ["spec", "selector", "matchLabels"]) : undefined;
}

const MODES = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"] as const;

function mtlsMode(r: FieldReader, value: unknown, path: FieldPath): MtlsMode | undefined {
  const m = r.object(value, path, ["mode"]);
  if (!m) return undefined;
  const mode = r.oneOf(m.mode, [...path, "mode"], MODES);
  return mode === "UNSET" ? undefined : mode;
}

/** `order`: the document's place in the config, standing in for a missing creationTimestamp. */
export function readPeerAuthentication(r: FieldReader, top: Obj, order: number): PeerAuthenticationModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["selector", "mtls", "portLevelMtls"]) ?? {};
  const { meta: m, created } = readPolicyMeta(r, top, "PeerAuthentication");
  const sel = readSelector(r, spec);
  const portLevel: [number, MtlsMode | undefined][] = [];
  const ports = r.object(spec.portLevelMtls, ["spec", "portLevelMtls"], Object.keys((spec.portLevelMtls as Obj | null) ?? {}));
  if (ports) {
    if (!sel) r.error(["spec", "portLevelMtls"], "needs a selector: port-level mTLS applies to the ports of selected workloads");
    for (const [key, value] of Object.entries(ports)) {
      const port = Number(key);
      if (!/^\d+$/.test(key) || port < 1 || port > 65535) {
        r.error(["spec", "portLevelMtls", key], `port must be between 1 and 65535, got "${key}"`);
        continue;
      }
      portLevel.push([port, mtlsMode(r, value, ["spec", "portLevelMtls", key])]);
    }
  }
  return { ...m, selector: sel, mode: mtlsMode(r, spec.mtls, ["spec", "mtls"]), portLevel, created: created ?? order };
}

const ACTIONS = ["ALLOW", "DENY", "AUDIT"] as const;

export function readAuthorizationPolicy(r: FieldReader, top: Obj): AuthorizationPolicyModel | undefined {
  const spec =
    r.object(top.spec, ["spec"], ["selector", "action", "rules", "provider"], {
      targetRef: "targetRef binds a policy to a Gateway API resource or a waypoint; instio applies policies to sidecars (use selector)",
      targetRefs: "targetRefs binds a policy to a Gateway API resource or a waypoint; instio applies policies to sidecars (use selector)",
    }) ?? {};
  const { meta: m, annotations } = readPolicyMeta(r, top, "AuthorizationPolicy");
  const action = (r.oneOf(spec.action, ["spec", "action"], ACTIONS, ["CUSTOM"]) ?? "ALLOW") as AuthzAction;
  if (spec.provider !== undefined) r.error(["spec", "provider"], "not supported yet: provider goes with action CUSTOM (external authorization)");
  const rules = r.list(spec.rules, ["spec", "rules"]);
  if (rules.length > 512) r.error(["spec", "rules"], `at most 512 rules, got ${rules.length}`);
  const dryRun = annotations["istio.io/dry-run"];
  if (dryRun !== undefined && dryRun !== "true" && dryRun !== "false") r.error(["metadata", "annotations", "istio.io/dry-run"], `must be "true" or "false", got "${dryRun}"`);
  return {
    ...m,
    selector: readSelector(r, spec),
    action,
    dryRun: dryRun === "true",
    rules: rules.map((rule, i) => readRule(r, rule, ["spec", "rules", i], m.namespace)),
  };
}

/** Source fields: the request field each reads, and whether it is the `not…` form. */
const SOURCE_FIELDS: Record<string, [AuthzField, boolean]> = {
  principals: ["principal", false], notPrincipals: ["principal", true],
  namespaces: ["namespace", false], notNamespaces: ["namespace", true],
  serviceAccounts: ["serviceAccount", false], notServiceAccounts: ["serviceAccount", true],
  ipBlocks: ["sourceIp", false], notIpBlocks: ["sourceIp", true],
  remoteIpBlocks: ["remoteIp", false], notRemoteIpBlocks: ["remoteIp", true],
};
const OPERATION_FIELDS: Record<string, [AuthzField, boolean]> = {
  hosts: ["host", false], notHosts: ["host", true],
  ports: ["port", false], notPorts: ["port", true],
  methods: ["method", false], notMethods: ["method", true],
  paths: ["path", false], notPaths: ["path", true],
};
const JWT = "not supported yet: request principals come from RequestAuthentication (JWT), which instio does not read";
const CONDITION_KEYS: Record<string, AuthzField> = {
  "source.ip": "sourceIp", "remote.ip": "remoteIp", "source.namespace": "namespace", "source.principal": "principal",
  "source.serviceAccount": "serviceAccount", "source.trustDomain": "trustDomain", "destination.ip": "destinationIp",
  "destination.port": "destinationPort", "connection.sni": "sni",
};

function readRule(r: FieldReader, value: unknown, path: FieldPath, namespace: string): AuthzRule {
  const rule = r.object(value, path, ["from", "to", "when"]) ?? {};
  const clauses = (key: "from" | "to", inner: "source" | "operation", fields: Record<string, [AuthzField, boolean]>, notYet: Record<string, string>): Predicate[][] | undefined => {
    if (rule[key] === undefined) return undefined;
    return r.list(rule[key], [...path, key]).map((c, i) => {
      const at = [...path, key, i];
      const o = r.object(c, at, [inner]);
      const body = r.object(o?.[inner], [...at, inner], Object.keys(fields), notYet) ?? {};
      const predicates: Predicate[] = [];
      for (const [name, [field, negate]] of Object.entries(fields)) {
        if (body[name] === undefined) continue;
        const values = r.stringList(body[name], [...at, inner, name]);
        values.forEach((v, j) => checkValue(r, field, v, [...at, inner, name, j]));
        predicates.push({ field, values: field === "serviceAccount" ? values.map((v) => (v.includes("/") ? v : `${namespace}/${v}`)) : values, negate });
      }
      if ((body.serviceAccounts !== undefined || body.notServiceAccounts !== undefined) && (body.principals !== undefined || body.notPrincipals !== undefined || body.namespaces !== undefined || body.notNamespaces !== undefined)) {
        r.error([...at, inner], "serviceAccounts cannot be combined with principals or namespaces");
      }
      return predicates;
    });
  };
  const from = clauses("from", "source", SOURCE_FIELDS, { requestPrincipals: JWT, notRequestPrincipals: JWT });
  const to = clauses("to", "operation", OPERATION_FIELDS, {});
  const when = r.list(rule.when, [...path, "when"]).flatMap((c, i): Predicate[] => {
    const at = [...path, "when", i];
    const cond = r.object(c, at, ["key", "values", "notValues"]);
    const key = r.string(cond?.key, [...at, "key"], true);
    if (!cond || key === undefined) return [];
    const header = /^request\.headers\[(.+)\]$/.exec(key);
    const field: AuthzField | undefined = header ? "header" : CONDITION_KEYS[key];
    if (!field) {
      r.error([...at, "key"], key.startsWith("request.auth.") ? JWT : `unknown condition key "${key}"`);
      return [];
    }
    const out: Predicate[] = [];
    for (const [name, negate] of [["values", false], ["notValues", true]] as const) {
      if (cond[name] === undefined) continue;
      const values = r.stringList(cond[name], [...at, name]);
      values.forEach((v, j) => checkValue(r, field, v, [...at, name, j]));
      out.push({ field, ...(header ? { header: header[1]!.toLowerCase() } : {}), values, negate });
    }
    if (out.length === 0) r.error(at, "a condition needs values or notValues");
    return out;
  });
  return { from, to, when };
}

/** Values that cannot match anything are config errors, as Istio's validation makes them. */
function checkValue(r: FieldReader, field: AuthzField, value: string, path: FieldPath): void {
  if (field === "sourceIp" || field === "remoteIp" || field === "destinationIp") {
    if (!isCidr(value)) r.error(path, `must be an IP address or a CIDR block such as "10.0.0.0/8", got "${value}"`);
  } else if (field === "port" || field === "destinationPort") {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < 1 || n > 65535) r.error(path, `must be a port between 1 and 65535, got "${value}"`);
  } else if (field === "path" && (value.includes("{*}") || value.includes("{**}"))) {
    const bad = pathTemplateProblem(value);
    if (bad) r.error(path, bad);
  } else if (field === "serviceAccount" && (value.includes("*") || value.split("/").length > 2)) {
    r.error(path, `must be "namespace/name" or "name" without wildcards, got "${value}"`);
  } else if (value.length > 1 && value.indexOf("*", 1) >= 0 && value.indexOf("*", 1) < value.length - 1) {
    r.error(path, `"*" may only begin or end a value (prefix "abc*", suffix "*abc", presence "*"), got "${value}"`);
  }
}

export function isCidr(value: string): boolean {
  const slash = value.indexOf("/");
  const ip = slash < 0 ? value : value.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) return false;
  if (slash < 0) return true;
  const bits = value.slice(slash + 1);
  return /^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

/** Istio's path templates: `{*}` one whole segment, `{**}` the rest, at the end only. */
function pathTemplateProblem(value: string): string | undefined {
  if (!value.startsWith("/")) return `a path template must start with "/", got "${value}"`;
  const segments = value.split("/").slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if ((s.includes("{*}") || s.includes("{**}")) && s !== "{*}" && s !== "{**}") return `"{*}" and "{**}" must be a whole path segment, got "${value}"`;
    if (s === "{**}" && i !== segments.length - 1) return `"{**}" may only be the last segment, got "${value}"`;
  }
  return undefined;
}

/** What this proxy's inbound side enforces, selected and composed for its workload (namespace and labels). */
export interface InboundSecurity {
  /** The composed mode for every port, and portLevelMtls's overrides by workload port. */
  mtls: { mode: MtlsMode; ports: [number, MtlsMode][] };
  /** The policies that select this workload, in Istio's evaluation order: DENY, then ALLOW; AUDIT apart. */
  authorization: AuthorizationPolicyModel[];
}

export function selects(policySelector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return policySelector === undefined || Object.entries(policySelector).every(([k, v]) => labels[k] === v);
}

/**
 * Istio's ComposePeerAuthentication: PERMISSIVE, then the mesh policy (root namespace, no selector),
 * the namespace's (no selector), the workload's (a selector, not in the root namespace), each set
 * mode overriding; the oldest wins among competitors at one level; port-level modes come from the
 * workload policy, UNSET there inheriting the workload's result.
 */
function composeMtls(policies: readonly PeerAuthenticationModel[], rootNamespace: string, namespace: string, labels: Record<string, string>): InboundSecurity["mtls"] {
  const oldest = (list: PeerAuthenticationModel[]): PeerAuthenticationModel | undefined => list.sort((a, b) => a.created - b.created)[0];
  const mesh = oldest(policies.filter((p) => p.namespace === rootNamespace && !p.selector));
  const ns = namespace === rootNamespace ? undefined : oldest(policies.filter((p) => p.namespace === namespace && !p.selector));
  const workload = namespace === rootNamespace ? undefined : oldest(policies.filter((p) => p.namespace === namespace && p.selector && selects(p.selector, labels)));
  let mode: MtlsMode = "PERMISSIVE";
  for (const level of [mesh, ns, workload]) if (level?.mode) mode = level.mode;
  const ports = (workload?.portLevel ?? []).map(([port, m]): [number, MtlsMode] => [port, m ?? mode]);
  return { mode, ports };
}

export function inboundSecurity(model: { settings: { rootNamespace: string; namespace: string; labels: Record<string, string> }; peerAuthentications: readonly PeerAuthenticationModel[]; authorizationPolicies: readonly AuthorizationPolicyModel[] }): InboundSecurity {
  const { rootNamespace, namespace, labels } = model.settings;
  // Root-namespace policies apply mesh-wide (with a selector, to the workloads it selects in every namespace).
  const applies = model.authorizationPolicies.filter((p) => (p.namespace === rootNamespace || p.namespace === namespace) && selects(p.selector, labels));
  const order: Record<AuthzAction, number> = { DENY: 0, ALLOW: 1, AUDIT: 2 };
  return {
    mtls: composeMtls(model.peerAuthentications, rootNamespace, namespace, labels),
    authorization: applies.sort((a, b) => order[a.action] - order[b.action]),
  };
}

/** The mode a connection to workload port `port` gets. */
export function mtlsModeFor(mtls: InboundSecurity["mtls"], port: number): MtlsMode {
  for (const [p, m] of mtls.ports) if (p === port) return m;
  return mtls.mode;
}

/** Nothing configured: PERMISSIVE and no policies (what a proxy translated from Envoy resources enforces itself). */
export const OPEN_INBOUND: InboundSecurity = { mtls: { mode: "PERMISSIVE", ports: [] }, authorization: [] };
