// Istio's Sidecar resource, the part a sidecar proxy applies to itself:
// egress.hosts limits which services, VirtualServices and DestinationRules the
// proxy loads ("namespace/dnsName", with "*" for any namespace, "." for the
// proxy's own and "~" for none), and outboundTrafficPolicy overrides the
// mesh's. The Sidecar in the proxy's namespace whose workloadSelector matches
// the proxy's labels wins over the namespace's Sidecar without a selector.

import type { FieldReader, Obj } from "./fields.js";
import { hostMatches } from "./hosts.js";
import type { OutboundTrafficPolicy, ResourceMeta } from "./resource.js";

export interface SidecarModel extends ResourceMeta {
  workloadSelector: Record<string, string> | undefined;
  /** egress[].hosts, every listener's together: [namespace, host] pairs. */
  egressHosts: [string, string][] | undefined;
  /** egress listeners with a TCP port: instio binds them (at `bind`, else the outbound address) as TCP proxies. */
  tcpListeners: { port: number; bind: string | undefined; tls: boolean }[];
  outboundTrafficPolicy: OutboundTrafficPolicy | undefined;
}

export function readSidecar(r: FieldReader, top: Obj, meta: (spec: Obj) => ResourceMeta): SidecarModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["workloadSelector", "egress", "outboundTrafficPolicy"], {
    ingress: "Sidecar ingress listeners (the inbound listener is configured in the instio settings)",
    inboundConnectionPool: "Sidecar inboundConnectionPool",
  });
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const m = meta(spec);
  const selector = r.object(spec.workloadSelector, ["spec", "workloadSelector"], ["labels"]);
  let egressHosts: [string, string][] | undefined;
  const tcpListeners: { port: number; bind: string | undefined; tls: boolean }[] = [];
  if (spec.egress !== undefined) {
    egressHosts = [];
    r.list(spec.egress, ["spec", "egress"]).forEach((e, i) => {
      const at = ["spec", "egress", i];
      const eg = r.object(e, at, ["hosts", "port", "bind", "captureMode"]);
      if (!eg) return;
      const port = r.object(eg.port, [...at, "port"], ["number", "protocol", "name", "targetPort"]);
      const protocol = port ? (r.string(port.protocol, [...at, "port", "protocol"]) ?? "").toUpperCase() : "";
      const number = port ? r.integer(port.number, [...at, "port", "number"], 1, 65535, true) : undefined;
      const bind = r.string(eg.bind, [...at, "bind"]);
      const capture = r.string(eg.captureMode, [...at, "captureMode"]);
      if (capture !== undefined && capture !== "DEFAULT" && capture !== "NONE") r.error([...at, "captureMode"], `not supported: ${capture}; instio does not capture traffic (NONE: applications connect to its listeners)`);
      if (["TCP", "MONGO", "TLS", "HTTPS"].includes(protocol) && number !== undefined) tcpListeners.push({ port: number, bind, tls: protocol === "TLS" || protocol === "HTTPS" });
      else if (port || bind !== undefined) r.warn(at, "egress port and bind apply to TCP ports only: one outbound listener serves every HTTP port; hosts are applied");
      const hosts = r.stringList(eg.hosts, [...at, "hosts"]);
      if (hosts.length === 0) r.error([...at, "hosts"], "at least one host is required");
      hosts.forEach((h, j) => {
        const slash = h.indexOf("/");
        if (slash <= 0 || slash === h.length - 1) {
          r.error([...at, "hosts", j], `must be "namespace/host" (namespace may be "*", "." or "~"), got "${h}"`);
          return;
        }
        const ns = h.slice(0, slash);
        egressHosts!.push([ns === "." ? m.namespace : ns, h.slice(slash + 1).toLowerCase()]);
      });
    });
  }
  const otp = r.object(spec.outboundTrafficPolicy, ["spec", "outboundTrafficPolicy"], ["mode"], { egressProxy: "egressProxy is not supported" });
  const outboundTrafficPolicy = otp ? r.oneOf<OutboundTrafficPolicy>(otp.mode, ["spec", "outboundTrafficPolicy", "mode"], ["ALLOW_ANY", "REGISTRY_ONLY"]) : undefined;
  return { ...m, workloadSelector: selector ? r.stringMap(selector.labels, ["spec", "workloadSelector", "labels"]) : undefined, egressHosts, tcpListeners, outboundTrafficPolicy };
}

/** The Sidecar that applies to a proxy with `labels` in `namespace`, if any. */
export function sidecarFor(sidecars: readonly SidecarModel[], namespace: string, labels: Record<string, string>): SidecarModel | undefined {
  const local = sidecars.filter((s) => s.namespace === namespace);
  return (
    local.find((s) => s.workloadSelector && Object.entries(s.workloadSelector).every(([k, v]) => labels[k] === v)) ??
    local.find((s) => !s.workloadSelector)
  );
}

/** Whether a resource in `namespace` for `hosts` is imported by the Sidecar's egress hosts. */
export function egressAllows(sidecar: SidecarModel | undefined, namespace: string, hosts: readonly string[]): boolean {
  if (!sidecar?.egressHosts) return true;
  return sidecar.egressHosts.some(([ns, pattern]) => ns !== "~" && (ns === "*" || ns === namespace) && hosts.some((h) => hostMatches(pattern, h) || hostMatches(h, pattern)));
}

