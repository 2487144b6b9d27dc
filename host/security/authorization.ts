// AuthorizationPolicy on the inbound side, as Envoy's RBAC filters under Istio
// evaluate it: AUDIT policies are logged, then any matching DENY denies, then,
// when the workload has ALLOW policies, one of them must match. Dry-run
// policies (istio.io/dry-run) are evaluated as Envoy's shadow rules: counted,
// never enforced.
//
// Why here and not in the Wasm route core: the decision reads the connection
// (the peer's certificate, the source address), not the request fields the core
// is given, and it runs only on inbound requests, where the core is not
// consulted at all (Istio's inbound route is a catch-all). Copying the
// principal and headers into Wasm memory for one more boundary crossing would
// cost more than these few string comparisons, which are compiled once per
// config version into the predicates below.

import { BlockList, isIPv4 } from "node:net";
import type { AuthorizationPolicyModel, AuthzRule, Predicate } from "../config/security-policy.js";

/** What a policy can read of one inbound request. */
export interface AuthzRequest {
  /** The peer's SPIFFE id from its verified certificate ("spiffe://td/ns/NS/sa/SA"); "" for plaintext. */
  readonly principal: string;
  readonly sourceAddress: string;
  readonly destinationAddress: string;
  readonly destinationPort: number;
  readonly authority: string;
  readonly method: string;
  /** The normalized path, without the query. */
  readonly path: string;
  readonly sni: string;
  header(name: string): string | undefined;
}

export interface AuthzDecision {
  allowed: boolean;
  /** The policy that decided, as Envoy names it (ns[NS]-policy[NAME]-rule[I]), or "none" when no ALLOW policy matched. */
  policy: string;
}

/** Counts as Envoy's RBAC filter keeps them: allowed, denied, and the same for dry-run (shadow) policies. */
export interface AuthzCounters {
  allowed(): void;
  denied(): void;
  shadowAllowed(): void;
  shadowDenied(): void;
  /** An AUDIT policy matched (Istio's AUDIT only marks the request for audit logging). */
  logged(): void;
}

const ALLOWED: AuthzDecision = { allowed: true, policy: "" };

/** The policies of one config version, ready to evaluate. */
export class Authorizer {
  private readonly deny: AuthorizationPolicyModel[];
  private readonly allow: AuthorizationPolicyModel[];
  private readonly audit: AuthorizationPolicyModel[];
  private readonly shadowDeny: AuthorizationPolicyModel[];
  private readonly shadowAllow: AuthorizationPolicyModel[];
  /** IP predicates' blocks, built once. */
  private readonly blocks = new Map<Predicate, BlockList>();

  constructor(policies: readonly AuthorizationPolicyModel[]) {
    const enforced = policies.filter((p) => !p.dryRun);
    this.deny = enforced.filter((p) => p.action === "DENY");
    this.allow = enforced.filter((p) => p.action === "ALLOW");
    this.audit = enforced.filter((p) => p.action === "AUDIT");
    this.shadowDeny = policies.filter((p) => p.dryRun && p.action === "DENY");
    this.shadowAllow = policies.filter((p) => p.dryRun && p.action === "ALLOW");
    for (const p of policies) for (const rule of p.rules) for (const pred of predicatesOf(rule)) if (pred.field.endsWith("Ip")) this.blocks.set(pred, blockList(pred.values));
  }

  /** Whether any policy applies: without one, requests skip the filter entirely. */
  get empty(): boolean {
    return this.deny.length + this.allow.length + this.audit.length + this.shadowDeny.length + this.shadowAllow.length === 0;
  }

  decide(req: AuthzRequest, counters: AuthzCounters): AuthzDecision {
    if (this.shadowDeny.length + this.shadowAllow.length > 0) this.shadowDecide(req, counters);
    if (this.audit.some((p) => this.matchingRule(p, req))) counters.logged();
    for (const p of this.deny) {
      const id = this.matchingRule(p, req);
      if (id) {
        counters.denied();
        return { allowed: false, policy: id };
      }
    }
    if (this.allow.length === 0) {
      if (this.deny.length > 0) counters.allowed();
      return ALLOWED;
    }
    for (const p of this.allow) {
      const id = this.matchingRule(p, req);
      if (id) {
        counters.allowed();
        return { allowed: true, policy: id };
      }
    }
    counters.denied();
    return { allowed: false, policy: "none" };
  }

  private shadowDecide(req: AuthzRequest, counters: AuthzCounters): void {
    const deny = this.shadowDeny;
    const allow = this.shadowAllow;
    const denied = deny.some((p) => this.matchingRule(p, req)) || (allow.length > 0 && !allow.some((p) => this.matchingRule(p, req)));
    if (denied) counters.shadowDenied();
    else counters.shadowAllowed();
  }

  /** The id of the policy's first matching rule; undefined when none matches (a policy without rules matches nothing). */
  private matchingRule(p: AuthorizationPolicyModel, req: AuthzRequest): string | undefined {
    for (let i = 0; i < p.rules.length; i++) if (this.ruleMatches(p.rules[i]!, req)) return `ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`;
    return undefined;
  }

  private ruleMatches(rule: AuthzRule, req: AuthzRequest): boolean {
    if (rule.from && !rule.from.some((all) => all.every((pred) => this.predicate(pred, req)))) return false;
    if (rule.to && !rule.to.some((all) => all.every((pred) => this.predicate(pred, req)))) return false;
    return rule.when.every((pred) => this.predicate(pred, req));
  }

  private predicate(pred: Predicate, req: AuthzRequest): boolean {
    const blocks = this.blocks.get(pred);
    const hit = blocks ? inBlocks(blocks, fieldValue(pred, req)) : pred.values.some((v) => valueMatches(pred, v, req));
    return hit !== pred.negate;
  }
}

function predicatesOf(rule: AuthzRule): Predicate[] {
  return [...(rule.from ?? []).flat(), ...(rule.to ?? []).flat(), ...rule.when];
}

/** The SPIFFE path's parts: spiffe://TD/ns/NS/sa/SA. */
function spiffeParts(principal: string): { trustDomain: string; namespace: string; serviceAccount: string } | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
  return m ? { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! } : undefined;
}

function fieldValue(pred: Predicate, req: AuthzRequest): string | undefined {
  switch (pred.field) {
    case "principal":
      // Policies name principals without the scheme ("cluster.local/ns/default/sa/x").
      return req.principal.startsWith("spiffe://") ? req.principal.slice("spiffe://".length) : undefined;
    case "namespace":
      return spiffeParts(req.principal)?.namespace;
    case "serviceAccount": {
      const p = spiffeParts(req.principal);
      return p ? `${p.namespace}/${p.serviceAccount}` : undefined;
    }
    case "trustDomain":
      return spiffeParts(req.principal)?.trustDomain;
    case "sourceIp":
    case "remoteIp":
      return req.sourceAddress;
    case "destinationIp":
      return req.destinationAddress;
    case "host":
      return req.authority.toLowerCase();
    case "port":
    case "destinationPort":
      return String(req.destinationPort);
    case "method":
      return req.method;
    case "path":
      return req.path;
    case "header":
      return req.header(pred.header!);
    case "sni":
      return req.sni === "" ? undefined : req.sni;
  }
}

function valueMatches(pred: Predicate, pattern: string, req: AuthzRequest): boolean {
  const value = fieldValue(pred, req);
  if (value === undefined) return false;
  if (pred.field === "path" && pattern.includes("{*")) return templateMatches(pattern, value);
  return stringMatches(pred.field === "host" ? pattern.toLowerCase() : pattern, value);
}

/** Istio's value forms: exact, prefix "abc*", suffix "*abc", presence "*" (any non-empty value). */
export function stringMatches(pattern: string, value: string): boolean {
  if (pattern === "*") return value !== "";
  if (pattern.endsWith("*")) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith("*")) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

/** Path templates: "{*}" is one whole segment, a final "{**}" any remaining path (one segment at least). */
function templateMatches(template: string, path: string): boolean {
  const want = template.split("/");
  const got = path.split("/");
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    if (w === "{**}") return got.length > i && got.slice(i).join("/") !== "";
    if (i >= got.length) return false;
    if (w === "{*}" ? got[i] === "" : w !== got[i]) return false;
  }
  return want.length === got.length;
}

function blockList(values: readonly string[]): BlockList {
  const list = new BlockList();
  for (const v of values) {
    const [ip, bits] = v.split("/");
    const family = isIPv4(ip!) ? "ipv4" : "ipv6";
    if (bits === undefined) list.addAddress(ip!, family);
    else list.addSubnet(ip!, Number(bits), family);
  }
  return list;
}

function inBlocks(list: BlockList, address: string | undefined): boolean {
  if (!address) return false;
  // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
  const ip = address.startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : address;
  return list.check(ip, isIPv4(ip) ? "ipv4" : "ipv6");
}
