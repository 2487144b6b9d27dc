// Host names as Istio resolves them.

import { isIP } from "node:net";

export const CLUSTER_DOMAIN = "cluster.local";

/** Istio's default trust domain (mesh trustDomain). */
export const TRUST_DOMAIN = "cluster.local";

/** A service account's SPIFFE identity, spiffe://TRUST_DOMAIN/ns/NS/sa/SA (an "@" in the trust domain becomes ".", as Istio's pkg/spiffe). */
export function spiffeId(trustDomain: string, id: { namespace: string; serviceAccount: string }): string {
  return `spiffe://${trustDomain.replace(/@/g, ".")}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Istio's canonical service of a workload: its label, else app.kubernetes.io/name, else app (undefined: none). */
export function canonicalService(labels: Record<string, string>): string | undefined {
  return labels["service.istio.io/canonical-name"] ?? labels["app.kubernetes.io/name"] ?? labels.app;
}

/** Istio's canonical revision of a workload: its label, else app.kubernetes.io/version, else version, else "latest". */
export function canonicalRevision(labels: Record<string, string>): string {
  return labels["service.istio.io/canonical-revision"] ?? labels["app.kubernetes.io/version"] ?? labels.version ?? "latest";
}

/** The first URI SAN of a certificate (node's subjectaltname text; Istio puts the SPIFFE id there), "" when none. */
export function spiffeOf(subjectAltName: string | undefined): string {
  for (const san of (subjectAltName ?? "").split(", ")) if (san.startsWith("URI:")) return san.slice(4);
  return "";
}

/**
 * Istio's ResolveShortnameToFQDN: a name without a dot is qualified with the
 * resource's namespace and the cluster domain; anything with a dot, "*" and IP
 * addresses stay as written.
 */
export function resolveHost(host: string, namespace: string): string {
  if (host === "" || host === "*" || isIP(host) !== 0 || host.includes(".")) return host.toLowerCase();
  return `${host}.${namespace}.svc.${CLUSTER_DOMAIN}`.toLowerCase();
}

/** Does `pattern` (possibly "*.example.com" or "*") cover `host`? */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === "*") return true;
  if (pattern.startsWith("*.")) {
    if (host.startsWith("*.")) return host.endsWith(pattern.slice(1));
    return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  }
  return pattern === host;
}

/** Of several patterns covering `host`, the most specific: exact, else the longest wildcard. */
export function mostSpecific<T>(host: string, items: readonly T[], patternOf: (item: T) => string): T | undefined {
  let best: T | undefined;
  let bestScore = -1;
  for (const item of items) {
    const p = patternOf(item);
    if (!hostMatches(p, host)) continue;
    const score = p === host ? Number.MAX_SAFE_INTEGER : p.length;
    if (score > bestScore) {
      best = item;
      bestScore = score;
    }
  }
  return best;
}

/**
 * The authorities Istio puts in a sidecar's virtual host for a service host and
 * port (GenerateVirtualHostDomains): the FQDN, and for cluster-local names the
 * shorter forms a client in `proxyNamespace` can use, each with and without ":port".
 */
export function virtualHostDomains(host: string, port: number, proxyNamespace: string): string[] {
  const names = [host];
  const suffix = `.svc.${CLUSTER_DOMAIN}`;
  if (host.endsWith(suffix)) {
    const [name, namespace] = host.slice(0, -suffix.length).split(".");
    if (name && namespace) {
      names.push(`${name}.${namespace}.svc`, `${name}.${namespace}`);
      if (namespace === proxyNamespace) names.push(name);
    }
  }
  const out: string[] = [];
  for (const n of names) out.push(n, `${n}:${port}`);
  return out;
}

/**
 * mostSpecific over many items, without a scan per lookup: exact patterns in a
 * map, wildcards (few, in practice) checked longest first. `best` returns every
 * item whose pattern is the most specific match, in input order.
 */
export class HostIndex<T> {
  private readonly exact = new Map<string, T[]>();
  private readonly wildcards: { pattern: string; item: T }[] = [];

  constructor(items: readonly T[], patternsOf: (item: T) => readonly string[]) {
    for (const item of items) {
      for (const p of patternsOf(item)) {
        if (p === "*" || p.startsWith("*.")) this.wildcards.push({ pattern: p, item });
        const list = this.exact.get(p);
        if (list === undefined) this.exact.set(p, [item]);
        else if (!list.includes(item)) list.push(item);
      }
    }
    // Longest first; a stable sort keeps input order among equals.
    this.wildcards.sort((a, b) => b.pattern.length - a.pattern.length);
  }

  best(host: string): { item: T; pattern: string }[] {
    const exact = this.exact.get(host);
    if (exact) return exact.map((item) => ({ item, pattern: host }));
    const out: { item: T; pattern: string }[] = [];
    for (const w of this.wildcards) {
      if (out.length > 0 && w.pattern.length < out[0]!.pattern.length) break;
      if (hostMatches(w.pattern, host) && !out.some((o) => o.item === w.item)) out.push(w);
    }
    return out;
  }
}
