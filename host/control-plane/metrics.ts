// The control plane's metrics, under istiod's names and labels
// (pilot/pkg/xds/monitoring.go), so dashboards written for istiod read them.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  constructor() {
    // The process's own (istiod exports Go's): heap, external memory, event-loop lag, CPU.
    collectDefaultMetrics({ register: this.registry });
  }
  /** Connected proxies by Istio version. */
  readonly connected = new Gauge({ name: "pilot_xds", help: "Number of endpoints connected to this pilot using XDS.", labelNames: ["version"], registers: [this.registry] });
  readonly pushes = new Counter({ name: "pilot_xds_pushes", help: "Pilot build and send errors for lds, rds, cds and eds.", labelNames: ["type"], registers: [this.registry] });
  readonly pushTime = new Histogram({ name: "pilot_xds_push_time", help: "Total time in seconds Pilot takes to push lds, rds, cds and eds.", labelNames: ["type"], buckets: [0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30], registers: [this.registry] });
  readonly configSize = new Histogram({ name: "pilot_xds_config_size_bytes", help: "Distribution of configuration sizes pushed to clients", labelNames: ["type"], buckets: [1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000], registers: [this.registry] });
  readonly convergence = new Histogram({ name: "pilot_proxy_convergence_time", help: "Delay in seconds between config change and a proxy receiving all required configuration.", buckets: [0.1, 0.5, 1, 3, 5, 10, 20, 30], registers: [this.registry] });
  readonly rejects = new Counter({ name: "pilot_total_xds_rejects", help: "Total number of XDS responses from pilot rejected by proxy.", labelNames: ["type"], registers: [this.registry] });
  readonly expiredNonce = new Counter({ name: "pilot_xds_expired_nonce", help: "Total number of XDS requests with an expired nonce.", labelNames: ["type"], registers: [this.registry] });
  /** istiod's CA metrics (security/pkg/server/ca/monitoring.go). */
  readonly csrs = new Counter({ name: "citadel_server_csr_count", help: "The number of CSRs received by Citadel server.", registers: [this.registry] });
  readonly certsIssued = new Counter({ name: "citadel_server_success_cert_issuance_count", help: "The number of certificates issuances that have succeeded.", registers: [this.registry] });
  readonly authnErrors = new Counter({ name: "citadel_server_authentication_failure_count", help: "The number of authentication failures.", registers: [this.registry] });
  readonly csrErrors = new Counter({ name: "citadel_server_csr_parsing_err_count", help: "The number of errors occurred when parsing the CSR.", registers: [this.registry] });
  /** istiod's injection webhook metrics (pkg/kube/inject/monitoring.go). */
  readonly injectionRequests = new Counter({ name: "sidecar_injection_requests_total", help: "Total number of sidecar injection requests.", registers: [this.registry] });
  readonly injectionSuccess = new Counter({ name: "sidecar_injection_success_total", help: "Total number of successful sidecar injection requests.", registers: [this.registry] });
  readonly injectionSkips = new Counter({ name: "sidecar_injection_skip_total", help: "Total number of skipped sidecar injection requests.", registers: [this.registry] });
  readonly injectionFailures = new Counter({ name: "sidecar_injection_failure_total", help: "Total number of failed sidecar injection requests.", registers: [this.registry] });
  readonly internalErrors = new Counter({ name: "pilot_total_xds_internal_errors", help: "Total number of internal XDS errors in pilot.", registers: [this.registry] });
  readonly pushTriggers = new Counter({ name: "pilot_push_triggers", help: "Total number of times a push was triggered, labeled by reason for the push.", labelNames: ["type"], registers: [this.registry] });
  readonly inboundUpdates = new Counter({ name: "pilot_inbound_updates", help: "Total number of updates received by pilot.", labelNames: ["type"], registers: [this.registry] });
  readonly configRejected = new Counter({ name: "pilot_config_rejected", help: "Config changes that failed validation; the last good config keeps serving.", registers: [this.registry] });
  /** Live-cluster informer events: Kubernetes registry kinds, and Istio's config kinds. */
  readonly registryEvents = new Counter({ name: "pilot_k8s_reg_events", help: "Events from k8s registry.", labelNames: ["type", "event"], registers: [this.registry] });
  readonly configEvents = new Counter({ name: "pilot_k8s_cfg_events", help: "Events from k8s config.", labelNames: ["type", "event"], registers: [this.registry] });
  readonly services = new Gauge({ name: "pilot_services", help: "Total services known to pilot.", registers: [this.registry] });
  readonly virtualServices = new Gauge({ name: "pilot_virt_services", help: "Total virtual services known to pilot.", registers: [this.registry] });
  readonly debounceTime = new Histogram({ name: "pilot_debounce_time", help: "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.", buckets: [0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30], registers: [this.registry] });
}
