// Delegate VirtualServices, merged into their roots as Istio does
// (pilot's mergeVirtualServicesIfNeeded): a root route with `delegate` is
// replaced by the delegate's routes, each match intersected with the root's
// matches, and the root's route settings filling what the delegate leaves unset.
// One level only; a delegate match that fits no root match drops that route.

import type { Condition, StringMatch } from "../core/route-table.js";
import type { Location } from "./diagnostics.js";
import type { HttpRouteModel, MatchModel, VirtualServiceModel } from "./model.js";

export type DelegateWarning = (where: Location | undefined, message: string) => void;

/** The root VirtualServices (those with hosts) with every delegating route expanded. */
export function resolveDelegates(virtualServices: VirtualServiceModel[], warn: DelegateWarning): VirtualServiceModel[] {
  const byName = new Map(virtualServices.map((vs) => [`${vs.namespace}/${vs.name}`, vs]));
  return virtualServices
    .filter((vs) => vs.hosts.length > 0)
    .map((root) => {
      if (!root.http.some((r) => r.delegate)) return root;
      const http = root.http.flatMap((route) => {
        if (!route.delegate) return [route];
        const key = `${route.delegate.namespace}/${route.delegate.name}`;
        const delegate = byName.get(key);
        if (!delegate || delegate.hosts.length > 0) {
          warn(route.source, `delegate VirtualService ${key} ${delegate ? "has hosts, so it is not a delegate" : "does not exist"}; the route is dropped, as Istio drops it`);
          return [];
        }
        return delegate.http.flatMap((leaf) => {
          const merged = mergeRoute(route, leaf);
          if (!merged) warn(leaf.source, `no match of this delegate route fits inside a match of the root route (${root.namespace}/${root.name}); the route is dropped, as Istio drops it`);
          return merged ? [merged] : [];
        });
      });
      return { ...root, http };
    });
}

function mergeRoute(root: HttpRouteModel, leaf: HttpRouteModel): HttpRouteModel | undefined {
  const matches = mergeMatches(root.matches, leaf.matches);
  if (!matches) return undefined;
  return {
    ...leaf,
    matches,
    name: leaf.name && root.name ? `${root.name}-${leaf.name}` : leaf.name ?? root.name,
    rewrite: leaf.rewrite ?? root.rewrite,
    timeoutMs: leaf.timeoutMs || root.timeoutMs,
    retries: leaf.retries ?? root.retries,
    fault: leaf.fault ?? root.fault,
    mirrors: leaf.mirrors.length > 0 ? leaf.mirrors : root.mirrors,
    cors: leaf.cors ?? root.cors,
    headers: leaf.headers ?? root.headers,
  };
}

/** Every (root, leaf) pair that does not conflict, merged; undefined when some leaf match fits no root match. */
function mergeMatches(root: MatchModel[], leaf: MatchModel[]): MatchModel[] | undefined {
  if (root.length === 0) return leaf;
  if (leaf.length === 0) return root;
  const out: MatchModel[] = [];
  for (const l of leaf) {
    const fits = root.filter((r) => !conflicts(r, l));
    if (fits.length === 0) return undefined;
    for (const r of fits) out.push(mergeMatch(r, l));
  }
  return out;
}

/** Whether `leaf` can not be a narrowing of `root`: the delegate must stay inside the root's match. */
function conflicts(root: MatchModel, leaf: MatchModel): boolean {
  if (stringConflict(root.uri, leaf.uri) || stringConflict(root.method, leaf.method)) return true;
  if (stringConflict(root.authority, leaf.authority) || stringConflict(root.scheme, leaf.scheme)) return true;
  if ((root.uri?.ignoreCase ?? false) !== (leaf.uri?.ignoreCase ?? false) && root.uri && leaf.uri) return true;
  for (const c of leaf.conditions) {
    const same = root.conditions.find((rc) => sameKey(rc, c));
    if (same && conditionConflict(same, c)) return true;
  }
  if (root.port !== undefined && leaf.port !== undefined && root.port !== leaf.port) return true;
  if (root.sourceNamespace !== undefined && leaf.sourceNamespace !== root.sourceNamespace) return true;
  for (const [k, v] of Object.entries(leaf.sourceLabels ?? {})) {
    const rv = root.sourceLabels?.[k];
    if (rv !== undefined && rv !== v) return true;
  }
  return false;
}

/**
 * Istio's rule: unset on either side never conflicts; a regex on either side
 * always does (Root and delegate may not both constrain a field by regex, nor
 * mix a regex with exact/prefix); an exact root needs the same exact leaf; a
 * prefix root needs a leaf exact or prefix that starts with it.
 */
function stringConflict(root: StringMatch | undefined, leaf: StringMatch | undefined): boolean {
  if (!root || !leaf) return false;
  if (root.kind === "regex" || leaf.kind === "regex") return true;
  if (root.kind === "exact") return leaf.kind !== "exact" || leaf.value !== root.value;
  return !leaf.value.startsWith(root.value);
}

function conditionConflict(root: Condition, leaf: Condition): boolean {
  if (root.kind === "present" || leaf.kind === "present") return true; // an empty StringMatch: Istio counts it as a conflict
  return stringConflict({ kind: root.kind, value: root.value }, { kind: leaf.kind, value: leaf.value });
}

function sameKey(a: Condition, b: Condition): boolean {
  return a.source === b.source && a.name === b.name && a.invert === b.invert;
}

function mergeMatch(root: MatchModel, leaf: MatchModel): MatchModel {
  return {
    name: leaf.name && root.name ? `${root.name}-${leaf.name}` : leaf.name ?? root.name,
    uri: leaf.uri ?? root.uri,
    method: leaf.method ?? root.method,
    authority: leaf.authority ?? root.authority,
    scheme: leaf.scheme ?? root.scheme,
    conditions: [...leaf.conditions, ...root.conditions.filter((rc) => !leaf.conditions.some((c) => sameKey(rc, c)))],
    port: leaf.port ?? root.port,
    sourceLabels: root.sourceLabels || leaf.sourceLabels ? { ...root.sourceLabels, ...leaf.sourceLabels } : undefined,
    sourceNamespace: leaf.sourceNamespace ?? root.sourceNamespace,
  };
}
