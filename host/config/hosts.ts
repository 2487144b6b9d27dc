// Host names as Istio resolves them.

import { isIP } from "node:net";

export const CLUSTER_DOMAIN = "cluster.local";

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
