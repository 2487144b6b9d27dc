// AuthorizationPolicy as Istio documents it, against instio's reader,
// composition and Authorizer: random policies (ALLOW, DENY, AUDIT; from, to,
// when with their not-forms and Istio's value forms; in the workload's
// namespace, the root namespace or another one; with and without a selector)
// are written as YAML, loaded like any config, and every random request is
// decided the same as a plain interpreter of the documented rules decides it.
// Path normalization's laws are checked on the side: it is what the policy sees.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfigText, requireConfig } from "../../host/config/load.js";
import { normalizePath } from "../../host/http/path.js";
import { Authorizer, type AuthzCounters, type AuthzRequest } from "../../host/security/authorization.js";
import "../support/fast-check-seed.js";
import { settingsYaml } from "../support/proxy.js";

// The small universes both sides draw from, so that matches are frequent.
const PRINCIPALS = ["cluster.local/ns/default/sa/a", "cluster.local/ns/default/sa/b", "cluster.local/ns/prod/sa/a", "*", "cluster.local/ns/default/*", "*/sa/a"];
const NAMESPACES = ["default", "prod", "*", "pro*"];
const PATHS = ["/a", "/a/*", "*/b", "/admin", "*"];
const METHODS = ["GET", "POST"];
const USERS = ["alice", "bo*", "*"];
const CIDRS = ["10.0.0.0/8", "10.1.2.3", "192.168.0.0/16"];

interface Source { principals?: string[]; notPrincipals?: string[]; namespaces?: string[]; notNamespaces?: string[]; ipBlocks?: string[]; notIpBlocks?: string[] }
interface Operation { paths?: string[]; notPaths?: string[]; methods?: string[]; notMethods?: string[] }
interface Condition { key: string; values?: string[]; notValues?: string[] }
interface Rule { from?: { source: Source }[]; to?: { operation: Operation }[]; when?: Condition[] }
interface Policy { namespace: string; selector: boolean; action: "ALLOW" | "DENY" | "AUDIT"; rules: Rule[] | undefined; dryRun: boolean }

const some = <T>(values: readonly T[]) => fc.uniqueArray(fc.constantFrom(...values), { minLength: 1, maxLength: 2 });
/** A record whose every key is optional, at least one present (Istio refuses an empty source or operation). */
const fields = <T extends object>(arbs: { [K in keyof T]: fc.Arbitrary<T[K]> }) => fc.record(arbs, { requiredKeys: [] }).filter((o) => Object.keys(o).length > 0) as fc.Arbitrary<T>;
const source = fields<Source>({ principals: some(PRINCIPALS), notPrincipals: some(PRINCIPALS), namespaces: some(NAMESPACES), notNamespaces: some(NAMESPACES), ipBlocks: some(CIDRS), notIpBlocks: some(CIDRS) });
const operation = fields<Operation>({ paths: some(PATHS), notPaths: some(PATHS), methods: some(METHODS), notMethods: some(METHODS) });
const condition: fc.Arbitrary<Condition> = fc.oneof(
  fc.record({ key: fc.constant("request.headers[x-user]"), values: some(USERS) }),
  fc.record({ key: fc.constant("request.headers[x-user]"), notValues: some(USERS) }),
  fc.record({ key: fc.constant("source.namespace"), values: some(["default", "prod"]) }),
);
const rule: fc.Arbitrary<Rule> = fc.record({ from: fc.array(source.map((s) => ({ source: s })), { minLength: 1, maxLength: 2 }), to: fc.array(operation.map((o) => ({ operation: o })), { minLength: 1, maxLength: 2 }), when: fc.array(condition, { minLength: 1, maxLength: 2 }) }, { requiredKeys: [] });
const policy: fc.Arbitrary<Policy> = fc.record({
  namespace: fc.constantFrom("default", "default", "istio-system", "prod"),
  selector: fc.boolean(),
  action: fc.constantFrom("ALLOW", "ALLOW", "DENY", "AUDIT"),
  // undefined: no rules at all (an ALLOW policy then matches nothing; `rules: [{}]` matches everything).
  rules: fc.option(fc.array(rule, { maxLength: 3 }), { nil: undefined }),
  dryRun: fc.constantFrom(false, false, false, true),
});

interface Req { principal: string; source: string; path: string; method: string; user: string | undefined }
const request: fc.Arbitrary<Req> = fc.record({
  principal: fc.constantFrom("spiffe://cluster.local/ns/default/sa/a", "spiffe://cluster.local/ns/default/sa/b", "spiffe://cluster.local/ns/prod/sa/a", ""),
  source: fc.constantFrom("10.1.2.3", "10.9.9.9", "192.168.1.1", "127.0.0.1"),
  path: fc.constantFrom("/a", "/a/b", "/admin", "/c/b", "/", "/a/"),
  method: fc.constantFrom("GET", "POST", "PUT"),
  user: fc.constantFrom("alice", "bob", "carol", undefined),
});

// ---- The interpreter of Istio's documented semantics ----

/** Istio's value forms as regular expressions: exact, "x*" prefix, "*x" suffix, "*" any non-empty value. */
function matchesForm(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  const escaped = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const re = pattern === "*" ? /^.+$/ : pattern.endsWith("*") ? new RegExp(`^${escaped(pattern.slice(0, -1))}`) : pattern.startsWith("*") ? new RegExp(`${escaped(pattern.slice(1))}$`) : new RegExp(`^${escaped(pattern)}$`);
  return re.test(value);
}

function inCidr(cidr: string, ip: string): boolean {
  const n = (a: string) => a.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const [base, bits = "32"] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(base!) / size);
}

/** A field present with `values` must match one; with `notValues` must match none. Absent: no constraint. */
function field(values: string[] | undefined, notValues: string[] | undefined, test: (v: string) => boolean): boolean {
  if (values && !values.some(test)) return false;
  if (notValues && notValues.some(test)) return false;
  return true;
}

function ruleMatches(rule: Rule, req: Req): boolean {
  const principal = req.principal ? req.principal.slice("spiffe://".length) : undefined;
  const namespace = req.principal ? req.principal.split("/")[4] : undefined;
  const sourceMatches = (s: Source) =>
    field(s.principals, s.notPrincipals, (p) => matchesForm(p, principal)) &&
    field(s.namespaces, s.notNamespaces, (p) => matchesForm(p, namespace)) &&
    field(s.ipBlocks, s.notIpBlocks, (c) => inCidr(c, req.source));
  const operationMatches = (o: Operation) => field(o.paths, o.notPaths, (p) => matchesForm(p, req.path)) && field(o.methods, o.notMethods, (m) => m === req.method);
  const conditionMatches = (c: Condition) => {
    const value = c.key === "source.namespace" ? namespace : req.user;
    return field(c.values, c.notValues, (v) => matchesForm(v, value));
  };
  return (rule.from === undefined || rule.from.some((f) => sourceMatches(f.source))) && (rule.to === undefined || rule.to.some((t) => operationMatches(t.operation))) && (rule.when ?? []).every(conditionMatches);
}

/**
 * The policies that apply to the workload (app: reviews in default): its namespace's, and the root namespace's,
 * whose selector picks workloads in every namespace (the generated selector matches).
 */
const applies = (p: Policy): boolean => p.namespace === "default" || p.namespace === "istio-system";

/** Istio's order for the policies that apply to the workload: DENY first, then ALLOW (none: allow). Dry-run and AUDIT decide nothing. */
function oracle(policies: Policy[], req: Req): boolean {
  const applying = policies.filter((p) => !p.dryRun && applies(p));
  const matches = (p: Policy) => (p.rules ?? []).some((r) => ruleMatches(r, req));
  if (applying.some((p) => p.action === "DENY" && matches(p))) return false;
  const allow = applying.filter((p) => p.action === "ALLOW");
  return allow.length === 0 || allow.some(matches);
}

function yaml(policies: Policy[]): string {
  return policies.map((p, i) => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p${i}, namespace: ${p.namespace}${p.dryRun ? ', annotations: {istio.io/dry-run: "true"}' : ""}}
spec: ${JSON.stringify({ ...(p.selector ? { selector: { matchLabels: { app: "reviews" } } } : {}), action: p.action, ...(p.rules ? { rules: p.rules } : {}) })}
`).join("");
}

const NO_COUNTS: AuthzCounters = { allowed() {}, denied() {}, shadowAllowed() {}, shadowDenied() {}, logged() {} };

function authzRequest(req: Req): AuthzRequest {
  return { principal: req.principal, sourceAddress: req.source, destinationAddress: "10.0.0.9", destinationPort: 9080, authority: "reviews:9080", method: req.method, path: req.path, sni: "", header: (name) => (name === "x-user" ? req.user : undefined) };
}

describe("AuthorizationPolicy", () => {
  it("decides every request as Istio's documented semantics do", () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 4 }), fc.array(request, { minLength: 1, maxLength: 12 }), (policies, requests) => {
        const config = requireConfig(loadConfigText("policies.yaml", `${settingsYaml("h1", "  labels: {app: reviews}")}${yaml(policies)}`));
        const authorizer = new Authorizer(config.inboundSecurity.authorization);
        for (const req of requests) expect(authorizer.decide(authzRequest(req), NO_COUNTS).allowed, JSON.stringify(req)).toBe(oracle(policies, req));
      }),
      { numRuns: 300 },
    );
  });

  it("counts a request once as allowed or denied, and a dry-run policy only in the shadow counters", () => {
    fc.assert(
      fc.property(fc.array(policy, { minLength: 1, maxLength: 4 }), request, (policies, req) => {
        const config = requireConfig(loadConfigText("policies.yaml", `${settingsYaml("h1", "  labels: {app: reviews}")}${yaml(policies)}`));
        const counts = { allowed: 0, denied: 0, shadow: 0 };
        const decision = new Authorizer(config.inboundSecurity.authorization).decide(authzRequest(req), { allowed: () => counts.allowed++, denied: () => counts.denied++, shadowAllowed: () => counts.shadow++, shadowDenied: () => counts.shadow++, logged() {} });
        expect(counts.allowed + counts.denied).toBeLessThanOrEqual(1);
        if (!decision.allowed) expect(counts.denied).toBe(1);
        const shadowApplies = policies.some((p) => p.dryRun && p.action !== "AUDIT" && applies(p));
        expect(counts.shadow).toBe(shadowApplies ? 1 : 0);
      }),
      { numRuns: 200 },
    );
  });
});

describe("path normalization", () => {
  const segment = fc.oneof(fc.constantFrom(".", "..", "%2E", "%2e%2E", "a", "%61", "b%2Fc", "%7e", "%zz", ""), fc.stringMatching(/^[a-z0-9%.~-]{0,4}$/));
  const path = fc.array(segment, { maxLength: 8 }).map((s) => `/${s.join("/")}`);

  it("leaves no dot segment and no escaped unreserved character, keeps the leading slash, and is idempotent", () => {
    fc.assert(
      fc.property(path, (p) => {
        const n = normalizePath(p);
        if (n === undefined) {
          // Only a malformed escape is refused.
          expect(/%(?![0-9A-Fa-f]{2})/.test(p)).toBe(true);
          return;
        }
        expect(n.startsWith("/")).toBe(true);
        expect(n.split("/").some((s) => s === "." || s === "..")).toBe(false);
        expect(/%(2[DEde]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/.test(n)).toBe(false);
        expect(normalizePath(n)).toBe(n);
      }),
      { numRuns: 1000 },
    );
  });

  it("agrees with the WHATWG URL parser's dot-segment removal on plain paths", () => {
    const plain = fc.array(fc.constantFrom(".", "..", "a", "b", "c.d", ""), { maxLength: 8 }).map((s) => `/${s.join("/")}`);
    fc.assert(fc.property(plain, (p) => {
      const url = new URL("http://h");
      url.pathname = p;
      expect(normalizePath(p)).toBe(url.pathname);
    }), { numRuns: 1000 });
  });
});
