// Counter and histogram families whose series are plain objects, bound once and
// updated with a field increment. prom-client's own children re-validate and
// re-hash every label on every update (25 labels for Istio's metrics: ~10 µs a
// request); these are read only when Prometheus scrapes, through prom-client's
// registry and exposition code.

import type { Registry } from "prom-client";

type Labels = Record<string, string>;

interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

function seriesKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class HistogramSeries {
  /** counts[i] = observations in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  // HOT PATH: once per request per histogram.
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

abstract class Family<S extends { labels: Labels }> {
  readonly aggregator = "sum";
  private readonly series = new Map<string, S>();

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "histogram",
  ) {
    registry.registerMetric(this as never);
  }

  /** The series for `labels`, created on first use (off the hot path: bind once, keep the object). */
  bind(labels: Labels): S {
    const key = seriesKey(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = this.create(labels)));
    return s;
  }

  protected abstract create(labels: Labels): S;
  protected abstract export(s: S, out: ExportedValue[]): void;

  /** prom-client's Metric interface, called at scrape time. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: ExportedValue[] }> {
    const values: ExportedValue[] = [];
    for (const s of this.series.values()) this.export(s, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }
}

export class CounterFamily extends Family<CounterSeries> {
  constructor(registry: Registry, name: string, help: string) {
    super(registry, name, help, "counter");
  }
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  protected export(s: CounterSeries, out: ExportedValue[]): void {
    out.push({ labels: s.labels, value: s.value });
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  constructor(
    registry: Registry,
    name: string,
    help: string,
    private readonly bounds: readonly number[],
  ) {
    super(registry, name, help, "histogram");
  }
  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  protected export(s: HistogramSeries, out: ExportedValue[]): void {
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += s.counts[i]!;
      out.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
    });
    out.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, metricName: `${this.name}_bucket` });
    out.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
    out.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
  }
}
