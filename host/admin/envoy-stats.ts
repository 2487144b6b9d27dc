// Envoy's /stats in its own text form (`cluster.outbound|8000||httpbin….upstream_rq_pending_overflow: 21`),
// the names Istio's tasks grep for, built from the same series as the
// Prometheus form. ?filter= is RE2, run by the route core's regex engine (as
// Envoy runs RE2 there): linear time whatever the pattern, no backtracking.

import { RouteCore } from "../core/route-core.js";
import { compilePattern } from "../core/regex/program.js";
import { BREAKER_GAUGES } from "../telemetry/metrics.js";

export interface Stat {
  name: string;
  value: number;
}

/** Prometheus names of per-cluster series and their Envoy stat names under `cluster.<name>.`. */
const CLUSTER_STATS: Record<string, string> = {
  envoy_cluster_upstream_rq_total: "upstream_rq_total",
  envoy_cluster_upstream_rq_retry: "upstream_rq_retry",
  envoy_cluster_upstream_rq_timeout: "upstream_rq_timeout",
  envoy_cluster_upstream_rq_pending_overflow: "upstream_rq_pending_overflow",
  envoy_cluster_upstream_rq_pending_active: "upstream_rq_pending_active",
  envoy_cluster_upstream_rq_pending_total: "upstream_rq_pending_total",
  envoy_cluster_upstream_rq_active: "upstream_rq_active",
  envoy_cluster_upstream_cx_connect_fail: "upstream_cx_connect_fail",
  envoy_cluster_retry_or_shadow_abandoned: "retry_or_shadow_abandoned",
  envoy_cluster_membership_healthy: "membership_healthy",
  envoy_cluster_membership_total: "membership_total",
  envoy_cluster_outlier_detection_ejections_active: "outlier_detection.ejections_active",
  ...Object.fromEntries(BREAKER_GAUGES.map((g) => [`envoy_cluster_circuit_breakers_default_${g}`, `circuit_breakers.default.${g}`])),
};

/** Envoy reports the high priority's open flags too (Istio sets no high thresholds, so nothing is ever open there). */
const HIGH_PRIORITY_OPEN = ["cx_open", "cx_pool_open", "rq_open", "rq_pending_open", "rq_retry_open"];

interface Series {
  name: string;
  type: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/** Every series under its Envoy name where Envoy has one (else `name{labels}`), sorted by name as Envoy sorts. */
export function envoyStats(metrics: Series[]): Stat[] {
  const out: Stat[] = [];
  const clusters = new Set<string>();
  for (const metric of metrics) {
    const envoy = CLUSTER_STATS[metric.name];
    for (const v of metric.values) {
      const base = v.metricName ?? metric.name;
      if (metric.type === "histogram" && base.endsWith("_bucket")) continue;
      const cluster = v.labels.cluster_name;
      if (envoy !== undefined && cluster !== undefined) {
        clusters.add(String(cluster));
        out.push({ name: `cluster.${cluster}.${envoy}`, value: v.value });
      } else if (metric.name === "envoy_http_downstream_rq_active" && v.labels.listener !== undefined) {
        out.push({ name: `http.${v.labels.listener}.downstream_rq_active`, value: v.value });
      } else {
        const labels = Object.entries(v.labels).map(([k, x]) => `${k}="${x}"`).join(",");
        out.push({ name: labels ? `${base}{${labels}}` : base, value: v.value });
      }
    }
  }
  for (const c of clusters) for (const g of HIGH_PRIORITY_OPEN) out.push({ name: `cluster.${c}.circuit_breakers.high.${g}`, value: 0 });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * A stats filter: an RE2 pattern that may match anywhere in a name (Envoy's PartialMatch).
 * Throws on a pattern RE2 rejects.
 */
export function statsFilter(pattern: string): (name: string) => boolean {
  compilePattern(pattern, "search"); // reports a syntax error with its position before a core is built
  const core = new RouteCore({ virtualHosts: [], entries: [], routes: [], clusters: [], headerNames: [], hostRegexes: [{ pattern, mode: "search" }] });
  return (name) => core.regexMatches(0, name);
}
