// The per-request cost of Istio metrics: instio's per-snapshot bound children
// against the straightforward prom-client use (a label object per request),
// in one process and one run.
//
//   npm run bench:telemetry

import { Bench } from "tinybench";
import { loadConfigPath, requireConfig } from "../host/config/load.js";
import type { Downstream } from "../host/listeners/downstream.js";
import { Exchange } from "../host/pipeline/exchange.js";
import type { ListenerRuntime } from "../host/listeners/listener-runtime.js";
import type { PipelineOptions } from "../host/pipeline/options.js";
import { SnapshotHolder } from "../host/proxy/snapshot.js";
import { QUICKSTART_CONFIG } from "../host/quickstart.js";
import { Counter, Histogram, Registry } from "prom-client";
import { ENVOY_BUCKETS, ISTIO_LABELS } from "../host/telemetry/metrics.js";
import { Telemetry } from "../host/telemetry/telemetry.js";

const BATCH = 1000;

const config = requireConfig(loadConfigPath(QUICKSTART_CONFIG));
const listener: ListenerRuntime = { direction: "outbound", inFlight: 0, draining: false };
const telemetry: Telemetry = new Telemetry(config.settings, () => holder.current, [listener]);
const holder: SnapshotHolder = new SnapshotHolder(config, (config) => telemetry.statsFor(config));
const ds = { method: "GET", path: "/reviews/1", query: undefined, headers: ["host", "reviews:9080", "user-agent", "curl/8", "accept", "*/*"], bodyBytes: 0 } as unknown as Downstream;
const ex = new Exchange({ observer: telemetry } as unknown as PipelineOptions, listener, holder.current, ds);
ex.cluster = 0;
ex.upstreamEndpoint = holder.current.endpoints[0];
ex.status = 200;
ex.headerBytesSent = 180;
ex.bytesSent = 120;

// The straightforward prom-client way, for comparison: children looked up per request.
const registry = new Registry();
const labelNames = [...ISTIO_LABELS];
const naive = {
  requests: new Counter({ name: "naive_requests_total", help: "-", labelNames, registers: [registry] }),
  duration: new Histogram({ name: "naive_duration", help: "-", labelNames, buckets: ENVOY_BUCKETS, registers: [registry] }),
  requestBytes: new Histogram({ name: "naive_request_bytes", help: "-", labelNames, buckets: ENVOY_BUCKETS, registers: [registry] }),
  responseBytes: new Histogram({ name: "naive_response_bytes", help: "-", labelNames, buckets: ENVOY_BUCKETS, registers: [registry] }),
};
const naiveLabels = Object.fromEntries(ISTIO_LABELS.map((l) => [l, "x"]));

const bench = new Bench({ time: 500, warmup: true });
bench.add("instio: series bound per snapshot", () => {
  for (let i = 0; i < BATCH; i++) telemetry.complete(ex);
});
bench.add("prom-client labels(object) per request", () => {
  for (let i = 0; i < BATCH; i++) {
    const labels = { ...naiveLabels, response_code: String(200), response_flags: "-" };
    naive.requests.labels(labels).inc();
    naive.duration.labels(labels).observe(3);
    naive.requestBytes.labels(labels).observe(120);
    naive.responseBytes.labels(labels).observe(300);
  }
});
await bench.run();
console.log("Istio metrics: cost of recording one request (4 series: a counter and 3 histograms)\n");
console.log("| approach | ns per request |");
console.log("|---|---:|");
for (const t of bench.tasks) {
  const period = (t.result as { period?: number }).period ?? NaN;
  console.log(`| ${t.name} | ${((period * 1e6) / BATCH).toFixed(0)} |`);
}
