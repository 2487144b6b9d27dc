// Istio's istio-iptables, for instio: the nat rules that send a pod's TCP
// traffic through its sidecar (REDIRECT mode, IPv4). Outbound connections go
// to the proxy's 15001 unless they are the proxy's own (UID/GID 1337), to
// loopback, to an excluded CIDR or port; inbound ones to 15006 unless their
// port is excluded (the agent's 15090, 15021, 15020 by the injector's
// default). The rules are generated as Istio generates them, rule for rule and
// in the same order (its golden files are the tests' expectations), as
// iptables-restore input; applying them and cleaning them up runs
// iptables-restore and iptables.
//
// Not supported, refused with a message: TPROXY interception, DNS capture
// (instio has no DNS proxy on 15053), IPv6 CIDRs.

import { BlockList, isIPv4 } from "node:net";

export interface CaptureRuleOptions {
  /** -p: where outbound connections are redirected (15001). */
  proxyPort: number;
  /** -z: where inbound connections are redirected (15006). */
  inboundCapturePort: number;
  /** -e: the HBONE port, never captured (15008). */
  inboundTunnelPort: number;
  /** -u, -g: the proxy's own UIDs and GIDs, whose traffic is not captured again (1337). */
  proxyUids: string[];
  proxyGids: string[];
  /** -b: inbound ports to capture, ["*"] for all, [] for none. */
  inboundPorts: string[];
  /** -d: inbound ports left alone (with -b "*"). */
  inboundPortsExclude: string[];
  /** -i: outbound CIDRs to capture, ["*"] for all, [] for none. */
  outboundCidrs: string[];
  /** -x: outbound CIDRs left alone. */
  outboundCidrsExclude: string[];
  /** -q: outbound ports always captured. */
  outboundPorts: string[];
  /** -o: outbound ports left alone (TCP and UDP). */
  outboundPortsExclude: string[];
  /** -k: interfaces whose inbound traffic is treated as outbound (KubeVirt). */
  rerouteInterfaces: string[];
  /** -c: interfaces left alone entirely. */
  excludeInterfaces: string[];
}

/** The injector's defaults and Istio's constants: nothing captured until -b / -i say so, as istio-iptables. */
export function defaultCaptureOptions(): CaptureRuleOptions {
  return { proxyPort: 15001, inboundCapturePort: 15006, inboundTunnelPort: 15008, proxyUids: ["1337"], proxyGids: ["1337"], inboundPorts: [], inboundPortsExclude: [], outboundCidrs: [], outboundCidrsExclude: [], outboundPorts: [], outboundPortsExclude: [], rerouteInterfaces: [], excludeInterfaces: [] };
}

export class CaptureRuleError extends Error {}

/** Istio's chains, in the order they are declared. */
export const CAPTURE_CHAINS = ["ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"] as const;
const LOOPBACK = "127.0.0.1/32";
const INBOUND_PASSTHROUGH = "127.0.0.6/32";
/** iptables' multiport match takes at most 15 ports. */
const MULTIPORT_MAX = 15;

/** Ports as one rule each group of 15: a single port as --dport, more with -m multiport --dports. */
function portMatches(ports: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
    const group = ports.slice(i, i + MULTIPORT_MAX);
    out.push(group.length === 1 ? `--dport ${group[0]}` : `-m multiport --dports ${group.join(",")}`);
  }
  return out;
}

function checkPort(value: string, flag: string): void {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new CaptureRuleError(`${flag}: "${value}" is not a port (1-65535)`);
}

function checkCidr(value: string, flag: string): void {
  const [address, bits, extra] = value.split("/");
  if (extra !== undefined || !address || !isIPv4(address) || (bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > 32))) {
    throw new CaptureRuleError(`${flag}: "${value}" is not an IPv4 CIDR (IPv6 capture is not supported)`);
  }
}

/** Whether an include CIDR covers loopback addresses (Istio then keeps lo traffic of other users captured). */
function coversLoopback(cidr: string): boolean {
  const [address, bits = "32"] = cidr.split("/");
  const list = new BlockList();
  list.addSubnet(address!, Number(bits), "ipv4");
  return list.check("127.0.0.1", "ipv4") || address!.startsWith("127.");
}

/** Checks the options as istio-iptables does; throws CaptureRuleError naming the flag. */
export function validateCaptureOptions(o: CaptureRuleOptions): void {
  for (const [ports, flag] of [[o.inboundPortsExclude, "-d"], [o.outboundPorts, "-q"], [o.outboundPortsExclude, "-o"]] as const) for (const p of ports) checkPort(p, flag);
  if (!(o.inboundPorts.length === 1 && o.inboundPorts[0] === "*")) for (const p of o.inboundPorts) checkPort(p, "-b");
  if (o.outboundCidrsExclude.includes("*")) throw new CaptureRuleError("-x: \"*\" is not allowed (invalid value for OUTBOUND_IP_RANGES_EXCLUDE)");
  for (const c of o.outboundCidrsExclude) checkCidr(c, "-x");
  if (!(o.outboundCidrs.length === 1 && o.outboundCidrs[0] === "*")) for (const c of o.outboundCidrs) checkCidr(c, "-i");
  for (const p of [o.proxyPort, o.inboundCapturePort, o.inboundTunnelPort]) checkPort(String(p), "port");
  for (const id of [...o.proxyUids, ...o.proxyGids]) if (!/^\d+$/.test(id)) throw new CaptureRuleError(`-u/-g: "${id}" is not a numeric id`);
  for (const nic of [...o.rerouteInterfaces, ...o.excludeInterfaces]) if (!/^[\w.@:-]{1,15}$/.test(nic)) throw new CaptureRuleError(`-k/-c: "${nic}" is not an interface name`);
}

/** The nat table's rules, in istio-iptables' order, as iptables-restore reads them (`* nat` … `COMMIT`). */
export function captureRules(o: CaptureRuleOptions): string {
  validateCaptureOptions(o);
  const rules: string[] = [];
  const add = (rule: string): void => void rules.push(rule);
  for (const nic of o.excludeInterfaces) {
    add(`-A PREROUTING -i ${nic} -j RETURN`);
    add(`-A OUTPUT -o ${nic} -j RETURN`);
  }
  for (const nic of o.rerouteInterfaces) add(`-I PREROUTING 1 -i ${nic} -j RETURN`);
  add(`-A ISTIO_INBOUND -p tcp --dport ${o.inboundTunnelPort} -j RETURN`);
  add(`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${o.proxyPort}`);
  add(`-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${o.inboundCapturePort}`);
  if (o.inboundPorts.length > 0) {
    add("-A PREROUTING -p tcp -j ISTIO_INBOUND");
    if (o.inboundPorts[0] === "*") {
      for (const m of portMatches(o.inboundPortsExclude)) add(`-A ISTIO_INBOUND -p tcp ${m} -j RETURN`);
      add("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT");
    } else {
      for (const p of o.inboundPorts) add(`-A ISTIO_INBOUND -p tcp --dport ${p} -j ISTIO_IN_REDIRECT`);
    }
  }
  add("-A OUTPUT -j ISTIO_OUTPUT");
  for (const proto of ["tcp", "udp"]) for (const m of portMatches(o.outboundPortsExclude)) add(`-A ISTIO_OUTPUT -p ${proto} ${m} -j RETURN`);
  add(`-A ISTIO_OUTPUT -o lo -s ${INBOUND_PASSTHROUGH} -j RETURN`);
  const loopbackIncluded = o.outboundCidrs[0] !== "*" && o.outboundCidrs.some(coversLoopback);
  for (const [ids, owner] of [[o.proxyUids, "--uid-owner"], [o.proxyGids, "--gid-owner"]] as const) {
    for (const id of ids) {
      // The proxy calling its own pod's address over lo: through the inbound side, as Envoy's inbound passthrough.
      add(`-A ISTIO_OUTPUT -o lo ! -d ${LOOPBACK} -p tcp ! --dport ${o.inboundTunnelPort} -m owner ${owner} ${id} -j ISTIO_IN_REDIRECT`);
      if (!loopbackIncluded) add(`-A ISTIO_OUTPUT -o lo -m owner ! ${owner} ${id} -j RETURN`);
      add(`-A ISTIO_OUTPUT -m owner ${owner} ${id} -j RETURN`);
    }
  }
  add(`-A ISTIO_OUTPUT -d ${LOOPBACK} -j RETURN`);
  for (const c of o.outboundCidrsExclude) add(`-A ISTIO_OUTPUT -d ${c} -j RETURN`);
  for (const p of o.outboundPorts) add(`-A ISTIO_OUTPUT -p tcp --dport ${p} -j ISTIO_REDIRECT`);
  if (o.outboundCidrs[0] === "*") {
    add("-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
    for (const nic of o.rerouteInterfaces) add(`-I PREROUTING 1 -i ${nic} -j ISTIO_REDIRECT`);
  } else {
    for (const c of o.outboundCidrs) {
      for (const nic of o.rerouteInterfaces) add(`-I PREROUTING 1 -i ${nic} -d ${c} -j ISTIO_REDIRECT`);
      add(`-A ISTIO_OUTPUT -d ${c} -j ISTIO_REDIRECT`);
    }
  }
  return ["* nat", ...CAPTURE_CHAINS.map((c) => `-N ${c}`), ...rules, "COMMIT", ""].join("\n");
}
