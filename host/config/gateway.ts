// Istio's Gateway resource, for instio running as an ingress gateway: the
// Gateways whose selector matches the proxy's labels open their server ports,
// and only VirtualServices bound to them (spec.gateways) route there.
// HTTP servers (optionally redirecting to HTTPS); HTTPS servers terminating
// TLS from certificate files (serverCertificate / privateKey, as Istio reads
// file-mounted credentials), MUTUAL requiring client certificates signed by
// caCertificates, or PASSTHROUGH routing the untouched TLS by SNI through the
// bound VirtualServices' tls routes. Several servers on one port add
// certificates by SNI.

import type { FieldReader, Obj } from "./fields.js";
import type { ResourceMeta, TlsSettings } from "./resource.js";

export interface GatewayServerModel {
  port: number;
  /** Address to listen on; undefined: the settings' outbound address. */
  bind: string | undefined;
  protocol: "HTTP" | "HTTPS";
  hosts: string[];
  tls: { certFile: string; keyFile: string; clientCaFile?: string } | undefined;
  /** PASSTHROUGH: TLS is not terminated; connections go by SNI through the VirtualServices' tls routes. */
  passthrough: boolean;
  httpsRedirect: boolean;
}

export interface GatewayModel extends ResourceMeta {
  selector: Record<string, string>;
  servers: GatewayServerModel[];
}

/** A listener the gateway opens, merged from the servers on its port. */
export interface GatewayListener {
  port: number;
  bind: string | undefined;
  tls: TlsSettings | undefined;
  httpsRedirect: boolean;
  /** TLS passthrough by SNI (served as a TCP listener with SNI routes). */
  passthrough: boolean;
}

export function readGateway(r: FieldReader, top: Obj, meta: (spec: Obj) => ResourceMeta): GatewayModel | undefined {
  const spec = r.object(top.spec, ["spec"], ["selector", "servers"]);
  if (!spec) {
    r.error(["spec"], "is required");
    return undefined;
  }
  const m = meta(spec);
  const servers = r.list(spec.servers, ["spec", "servers"]).flatMap((v, i) => {
    const at = ["spec", "servers", i];
    const s = r.object(v, at, ["port", "hosts", "tls", "name", "bind"]);
    if (!s) return [];
    const port = r.object(s.port, [...at, "port"], ["number", "protocol", "name", "targetPort"]);
    const number = port ? r.integer(port.number, [...at, "port", "number"], 1, 65535, true) : undefined;
    const protocol = port ? r.oneOf<"HTTP" | "HTTPS">(((port.protocol as string | undefined) ?? "").toUpperCase() || undefined, [...at, "port", "protocol"], ["HTTP", "HTTPS"], ["HTTP2", "GRPC", "TLS", "TCP", "MONGO"]) : undefined;
    if (!port) r.error([...at, "port"], "is required");
    else if (port.protocol === undefined) r.error([...at, "port", "protocol"], "is required");
    const hosts = r.stringList(s.hosts, [...at, "hosts"]).map((h) => (h.includes("/") ? h.slice(h.indexOf("/") + 1) : h).toLowerCase());
    if (hosts.length === 0) r.error([...at, "hosts"], "at least one host is required");
    const t = r.object(s.tls, [...at, "tls"], ["mode", "serverCertificate", "privateKey", "caCertificates", "httpsRedirect", "minProtocolVersion"], {
      maxProtocolVersion: "a maximum TLS version",
      cipherSuites: "choosing cipher suites",
      credentialName: "credentialName (Kubernetes secrets); give serverCertificate and privateKey file paths",
      subjectAltNames: "client certificate SAN checks",
    });
    const httpsRedirect = t ? (r.boolean(t.httpsRedirect, [...at, "tls", "httpsRedirect"]) ?? false) : false;
    if (t) r.oneOf(t.minProtocolVersion, [...at, "tls", "minProtocolVersion"], ["TLS_AUTO", "TLSV1_2"], ["TLSV1_0", "TLSV1_1", "TLSV1_3"]); // instio's minimum is TLS 1.2
    let tls: GatewayServerModel["tls"];
    let passthrough = false;
    if (protocol === "HTTPS") {
      const mode = t ? r.oneOf(t.mode, [...at, "tls", "mode"], ["SIMPLE", "MUTUAL", "PASSTHROUGH"], ["AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]) : undefined;
      if (!t) r.error([...at, "tls"], "an HTTPS server needs tls (mode SIMPLE, MUTUAL or PASSTHROUGH)");
      passthrough = mode === "PASSTHROUGH";
      if (mode === "SIMPLE" || mode === "MUTUAL") {
        const cert = r.string(t!.serverCertificate, [...at, "tls", "serverCertificate"], true);
        const key = r.string(t!.privateKey, [...at, "tls", "privateKey"], true);
        const ca = r.string(t!.caCertificates, [...at, "tls", "caCertificates"], mode === "MUTUAL");
        if (cert && key) {
          tls = { certFile: r.configPath(cert), keyFile: r.configPath(key), ...(mode === "MUTUAL" && ca ? { clientCaFile: r.configPath(ca) } : {}) };
          r.certificates([...at, "tls"], { ...tls, caFile: tls.clientCaFile });
        }
      }
    }
    const bind = r.string(s.bind, [...at, "bind"]);
    return number !== undefined && protocol ? [{ port: number, bind, protocol, hosts, tls, passthrough, httpsRedirect }] : [];
  });
  if (servers.length === 0 && r.list(spec.servers, ["spec", "servers"]).length === 0) r.error(["spec", "servers"], "at least one server is required");
  return { ...m, selector: r.stringMap((r.object(spec.selector, ["spec", "selector"], Object.keys((spec.selector as Obj | null) ?? {})) ?? {}), ["spec", "selector"]), servers };
}

/** The Gateways that configure a proxy with `labels` (their selector is a subset of the labels). */
export function gatewaysFor(gateways: readonly GatewayModel[], labels: Record<string, string>): GatewayModel[] {
  return gateways.filter((g) => Object.entries(g.selector).every(([k, v]) => labels[k] === v));
}

/** One listener per port: the first HTTPS server's certificate is the default, the others' go by SNI. */
export function gatewayListeners(gateways: readonly GatewayModel[]): GatewayListener[] {
  const byPort = new Map<number, GatewayListener>();
  for (const server of gateways.flatMap((g) => g.servers)) {
    const l = byPort.get(server.port) ?? { port: server.port, bind: server.bind, tls: undefined, httpsRedirect: false, passthrough: false };
    byPort.set(server.port, l);
    if (server.passthrough) l.passthrough = true;
    if (server.httpsRedirect && !server.tls) l.httpsRedirect = true;
    if (!server.tls) continue;
    if (!l.tls) l.tls = { ...server.tls, sni: [] };
    else l.tls.sni.push({ hosts: server.hosts, ...server.tls });
  }
  return [...byPort.values()];
}
