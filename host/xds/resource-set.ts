// The Envoy resources a sidecar holds, translated as they arrive. A resource
// that cannot be served rejects the whole update of its type (the response is
// NACKed with the resource's name and the field's path, and the previous
// resources stay, as Envoy keeps its config). A sidecar's set lives on the
// translator worker (translate-worker.ts), so none of this runs on the thread
// that serves requests; an Envoy bootstrap's static resources use one at start.

import type { ClusterEndpoint, CompiledConfig } from "../config/compile.js";
import type { Settings } from "../config/model.js";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, type AnyMessage } from "../envoy/protos.js";
import { assembleConfig, endpointPatches, type EndpointPatch, type XdsResources } from "../envoy/translate/assemble.js";
import { readCluster, readLoadAssignment, type XdsCluster } from "../envoy/translate/clusters.js";
import { readListener, type XdsListener } from "../envoy/translate/listeners.js";
import { MessageReader, Unsupported } from "../envoy/translate/reader.js";
import { readRouteConfiguration, type XdsRouteConfiguration } from "../envoy/translate/routes.js";

/** The types a sidecar subscribes to, in the order Envoy warms them: clusters and their endpoints before listeners and routes. */
export const SIDECAR_TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
export type SidecarType = (typeof SIDECAR_TYPES)[number];

/** A response that cannot be served, for the NACK's error_detail: the resource, and where in it and why. */
export class Rejected extends Error {
  constructor(
    message: string,
    /** The resource's index in the response, and the field's path in it ("" for the whole resource). */
    readonly index?: number,
    readonly path?: string,
    readonly reason?: string,
  ) {
    super(message);
  }
}

interface Translated {
  name: string;
  value: XdsListener | XdsRouteConfiguration | XdsCluster | ClusterEndpoint[];
}

function translate(typeUrl: string, any: AnyMessage, index: number): Translated {
  let name = `#${index}`;
  try {
    const r = MessageReader.ofAny(any, "", [typeUrl]);
    name = r.peek("name") ?? r.peek("cluster_name") ?? name;
    switch (typeUrl) {
      case LISTENER_TYPE:
        return { name, value: readListener(r) };
      case ROUTE_TYPE:
        return { name, value: readRouteConfiguration(r) };
      case CLUSTER_TYPE:
        return { name, value: readCluster(r) };
      default:
        return { name, value: readLoadAssignment(r).endpoints };
    }
  } catch (err) {
    if (err instanceof Unsupported) throw new Rejected(`${name}: ${err.message}`, index, err.path, err.reason);
    throw err;
  }
}

export class ResourceSet implements XdsResources {
  readonly listeners = new Map<string, XdsListener>();
  readonly routes = new Map<string, XdsRouteConfiguration>();
  readonly clusters = new Map<string, XdsCluster>();
  readonly endpoints = new Map<string, ClusterEndpoint[]>();
  /** The proxy's DNS answers for the names STRICT_DNS and LOGICAL_DNS clusters resolve (set by the proxy). */
  resolved: ReadonlyMap<string, readonly string[]> = new Map();
  /** Types received at least once (a wildcard type may legitimately be empty). */
  readonly received = new Set<string>();

  private mapOf(typeUrl: string): Map<string, unknown> {
    if (typeUrl === LISTENER_TYPE) return this.listeners;
    if (typeUrl === ROUTE_TYPE) return this.routes;
    if (typeUrl === CLUSTER_TYPE) return this.clusters;
    return this.endpoints;
  }

  /** Names the control plane said it does not have (delta's removed_resources): known to be missing, not awaited. */
  private readonly absent = new Map<string, Set<string>>();

  private absentOf(typeUrl: string): Set<string> {
    let set = this.absent.get(typeUrl);
    if (!set) this.absent.set(typeUrl, (set = new Set()));
    return set;
  }

  /**
   * Applies one response: `resources` added or updated; `removed` names gone
   * (`replaceAll`: state of the world, where listeners and clusters not listed
   * are gone). Translates everything before changing anything: throws Rejected,
   * and keeps the previous resources, when one cannot be served. Returns the
   * resources' names, in order, and what puts the previous resources back (the
   * proxy may still refuse the result).
   */
  apply(typeUrl: string, resources: readonly AnyMessage[], removed: readonly string[], replaceAll: boolean): { names: string[]; undo: () => void } {
    const translated = resources.map((any, i) => translate(typeUrl, any, i));
    const seen = new Set<string>();
    for (const t of translated) {
      if (seen.has(t.name)) throw new Rejected(`${t.name}: sent twice in one response`);
      seen.add(t.name);
    }
    const map = this.mapOf(typeUrl);
    const before = { map: new Map(map), absent: new Set(this.absentOf(typeUrl)), received: this.received.has(typeUrl) };
    const gone = replaceAll && (typeUrl === LISTENER_TYPE || typeUrl === CLUSTER_TYPE) ? [...map.keys()].filter((n) => !seen.has(n)) : removed;
    const absent = this.absentOf(typeUrl);
    for (const name of gone) {
      map.delete(name);
      absent.add(name);
    }
    for (const t of translated) {
      map.set(t.name, t.value);
      absent.delete(t.name);
    }
    this.received.add(typeUrl);
    const undo = (): void => {
      map.clear();
      for (const [k, v] of before.map) map.set(k, v);
      this.absent.set(typeUrl, before.absent);
      if (!before.received) this.received.delete(typeUrl);
    };
    return { names: translated.map((t) => t.name), undo };
  }

  /** Resources no longer subscribed to: dropped (a SotW server does not say they are gone). */
  forget(typeUrl: string, names: readonly string[]): void {
    const map = this.mapOf(typeUrl);
    for (const n of names) {
      map.delete(n);
      this.absent.get(typeUrl)?.delete(n);
    }
  }

  /** The route configurations the listeners use (RDS names to subscribe to). */
  routeNames(): string[] {
    const names = new Set<string>();
    for (const l of this.listeners.values()) if (l.kind === "http" && l.rds !== undefined) names.add(l.rds);
    return [...names];
  }

  /** The load assignments the EDS clusters use. */
  endpointNames(): string[] {
    const names = new Set<string>();
    for (const c of this.clusters.values()) if (c.edsName !== undefined) names.add(c.edsName);
    return [...names];
  }

  /**
   * Warm: clusters with every endpoint assignment they name, and listeners with
   * every route configuration they name (Envoy's warming, so that no listener
   * serves with a route or cluster missing because it has not arrived yet).
   */
  warm(): boolean {
    if (!this.received.has(CLUSTER_TYPE) || !this.received.has(LISTENER_TYPE)) return false;
    const known = (type: string, map: ReadonlyMap<string, unknown>) => (n: string) => map.has(n) || this.absent.get(type)?.has(n) === true;
    return this.endpointNames().every(known(ENDPOINT_TYPE, this.endpoints)) && this.routeNames().every(known(ROUTE_TYPE, this.routes));
  }

  build(settings: Settings): CompiledConfig {
    return assembleConfig(this, settings);
  }

  /** What an update that changed only EDS changes in the serving config: the clusters with new endpoints. */
  endpointPatches(config: CompiledConfig): EndpointPatch[] {
    return endpointPatches(config, this);
  }
}
