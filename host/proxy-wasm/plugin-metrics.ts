// Metrics a plugin defines (proxy_define_metric), exported with the proxy's own.
// Envoy files them under its "wasmcustom" stat namespace and exports them to
// Prometheus under their own sanitized names, without the "envoy_" prefix
// (source/server/admin/prometheus_stats.cc, metricName). A metric is known by
// name across VMs, restarts and reloads: a new VM that defines it again adds
// to the same series.

import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { MetricType, Status } from "./abi.js";
import { ENVOY_BUCKETS } from "../telemetry/metrics.js";

type Metric = { type: MetricType; counter?: Counter; gauge?: Gauge; histogram?: Histogram; value: number };

/** Prometheus's name rules: [a-zA-Z_:][a-zA-Z0-9_:]*; Envoy drops a name that would start with a digit. */
function sanitize(name: string): string | undefined {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, "_");
  return s === "" || /^[0-9]/.test(s) ? undefined : s;
}

export class PluginMetrics {
  private readonly byId: Metric[] = [];
  private readonly byName = new Map<string, number>();

  constructor(private readonly registry: Registry) {}

  /** The id of metric `name` (defined now if new); a name of another type gets its own id, unexported. */
  define(type: MetricType, name: string): number {
    const key = `${type}\0${name}`;
    const known = this.byName.get(key);
    if (known !== undefined) return known;
    const metric: Metric = { type, value: 0 };
    const exported = sanitize(name);
    if (exported !== undefined && this.registry.getSingleMetric(exported) === undefined) {
      const help = `Proxy-Wasm plugin metric ${name}`;
      if (type === MetricType.COUNTER) metric.counter = new Counter({ name: exported, help, registers: [this.registry] });
      else if (type === MetricType.GAUGE) metric.gauge = new Gauge({ name: exported, help, registers: [this.registry] });
      else metric.histogram = new Histogram({ name: exported, help, buckets: ENVOY_BUCKETS, registers: [this.registry] });
    }
    this.byId.push(metric);
    this.byName.set(key, this.byId.length - 1);
    return this.byId.length - 1;
  }

  add(id: number, delta: number): Status {
    const m = this.byId[id];
    if (!m) return Status.NOT_FOUND;
    if (m.type === MetricType.HISTOGRAM || (m.type === MetricType.COUNTER && delta < 0)) return Status.BAD_ARGUMENT;
    m.value += delta;
    m.counter?.inc(delta);
    m.gauge?.set(m.value);
    return Status.OK;
  }

  record(id: number, value: number): Status {
    const m = this.byId[id];
    if (!m) return Status.NOT_FOUND;
    if (m.type === MetricType.HISTOGRAM) {
      m.histogram?.observe(value);
      return Status.OK;
    }
    if (m.type === MetricType.COUNTER) {
      if (value < m.value) return Status.BAD_ARGUMENT;
      m.counter?.inc(value - m.value);
    }
    m.value = value;
    m.gauge?.set(value);
    return Status.OK;
  }

  value(id: number): number | undefined {
    const m = this.byId[id];
    return m === undefined || m.type === MetricType.HISTOGRAM ? undefined : m.value;
  }
}
