// `instio iptables`: Istio's istio-iptables command line over host/capture's
// rules. The injector's init container runs it with Istio's flags
// (`-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020`);
// `--dry-run` prints the rules instead of applying them, `--cleanup-only`
// removes what an earlier run installed. Applying first removes an earlier
// run's chains, so running it twice leaves one set of rules.

import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { CAPTURE_CHAINS, CaptureRuleError, captureRules, defaultCaptureOptions, type CaptureRuleOptions } from "./iptables.js";

export const IPTABLES_HELP = `instio iptables: capture a pod's TCP traffic for its sidecar (Istio's istio-iptables, REDIRECT mode, IPv4)

  -p, --envoy-port PORT                         outbound redirect port (15001)
  -z, --inbound-capture-port PORT               inbound redirect port (15006)
  -e, --inbound-tunnel-port PORT                never captured (15008)
  -u, --proxy-uid UID[,UID]                     the proxy's UIDs, not captured again (1337)
  -g, --proxy-gid GID[,GID]                     the proxy's GIDs (the UIDs)
  -m, --istio-inbound-interception-mode MODE    REDIRECT (TPROXY is not supported)
  -b, --istio-inbound-ports PORTS|*             inbound ports to capture (none)
  -d, --istio-local-exclude-ports PORTS         inbound ports left alone, with -b '*'
  -i, --istio-service-cidr CIDRS|*              outbound CIDRs to capture (none)
  -x, --istio-service-exclude-cidr CIDRS        outbound CIDRs left alone
  -q, --istio-outbound-ports PORTS              outbound ports always captured
  -o, --istio-local-outbound-ports-exclude PORTS
                                                outbound ports left alone (TCP and UDP)
  -k, --kube-virt-interfaces NICS               inbound traffic on these is treated as outbound
  -c, --istio-exclude-interfaces NICS           interfaces left alone
  -n, --dry-run                                 print the rules (iptables-restore input), change nothing
      --cleanup-only                            remove the rules and chains an earlier run installed
`;

const list = (value: string | undefined): string[] => (value ?? "").split(",").filter((s) => s !== "");

function integer(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new CaptureRuleError(`${flag}: "${value}" is not a port`);
  return Number(value);
}

/** Istio's flags → rule options; throws CaptureRuleError for what instio refuses. */
export function readIptablesFlags(args: string[]): { options: CaptureRuleOptions; dryRun: boolean; cleanupOnly: boolean } {
  const { values } = parseArgs({
    args,
    options: {
      "envoy-port": { type: "string", short: "p" },
      "inbound-capture-port": { type: "string", short: "z" },
      "inbound-tunnel-port": { type: "string", short: "e" },
      "proxy-uid": { type: "string", short: "u" },
      "proxy-gid": { type: "string", short: "g" },
      "istio-inbound-interception-mode": { type: "string", short: "m" },
      "istio-inbound-ports": { type: "string", short: "b" },
      "istio-local-exclude-ports": { type: "string", short: "d" },
      "istio-service-cidr": { type: "string", short: "i" },
      "istio-service-exclude-cidr": { type: "string", short: "x" },
      "istio-outbound-ports": { type: "string", short: "q" },
      "istio-local-outbound-ports-exclude": { type: "string", short: "o" },
      "kube-virt-interfaces": { type: "string", short: "k" },
      "istio-exclude-interfaces": { type: "string", short: "c" },
      "dry-run": { type: "boolean", short: "n" },
      "cleanup-only": { type: "boolean" },
      "redirect-dns": { type: "boolean" },
      "capture-all-dns": { type: "boolean" },
      // Istio's logging flag, which the injector passes: accepted, instio logs as it always does.
      log_output_level: { type: "string" },
    },
  });
  const mode = values["istio-inbound-interception-mode"];
  if (mode !== undefined && mode !== "REDIRECT") throw new CaptureRuleError(`-m: ${mode} interception is not supported; use REDIRECT`);
  if (values["redirect-dns"] || values["capture-all-dns"]) throw new CaptureRuleError("--redirect-dns: DNS capture is not supported (instio has no DNS proxy on 15053)");
  const d = defaultCaptureOptions();
  const uids = values["proxy-uid"] === undefined ? d.proxyUids : list(values["proxy-uid"]);
  const options: CaptureRuleOptions = {
    proxyPort: integer(values["envoy-port"], d.proxyPort, "-p"),
    inboundCapturePort: integer(values["inbound-capture-port"], d.inboundCapturePort, "-z"),
    inboundTunnelPort: integer(values["inbound-tunnel-port"], d.inboundTunnelPort, "-e"),
    proxyUids: uids,
    proxyGids: values["proxy-gid"] === undefined ? uids : list(values["proxy-gid"]),
    inboundPorts: list(values["istio-inbound-ports"]),
    inboundPortsExclude: list(values["istio-local-exclude-ports"]),
    outboundCidrs: list(values["istio-service-cidr"]),
    outboundCidrsExclude: list(values["istio-service-exclude-cidr"]),
    outboundPorts: list(values["istio-outbound-ports"]),
    outboundPortsExclude: list(values["istio-local-outbound-ports-exclude"]),
    rerouteInterfaces: list(values["kube-virt-interfaces"]),
    excludeInterfaces: list(values["istio-exclude-interfaces"]),
  };
  return { options, dryRun: values["dry-run"] === true, cleanupOnly: values["cleanup-only"] === true };
}

/** Removes the jumps into Istio's chains from the built-in ones, then the chains; what is not there is skipped. */
export function cleanupCaptureRules(run: (args: string[]) => string = iptables): void {
  for (const builtin of ["PREROUTING", "OUTPUT"]) {
    let listed: string;
    try {
      listed = run(["-t", "nat", "-S", builtin]);
    } catch {
      continue;
    }
    for (const line of listed.split("\n")) {
      if (!/ -j ISTIO_/.test(line) || !line.startsWith(`-A ${builtin} `)) continue;
      run(["-t", "nat", "-D", ...line.slice(3).split(" ")]);
    }
  }
  for (const chain of CAPTURE_CHAINS) {
    for (const op of ["-F", "-X"]) {
      try {
        run(["-t", "nat", op, chain]);
      } catch {
        // not there
      }
    }
  }
}

function iptables(args: string[]): string {
  return execFileSync("iptables", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Installs the rules: an earlier run's removed first, then one iptables-restore --noflush. */
export function applyCaptureRules(rules: string): void {
  cleanupCaptureRules();
  execFileSync("iptables-restore", ["--noflush"], { input: rules, stdio: ["pipe", "inherit", "inherit"] });
}

export function runIptables(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(IPTABLES_HELP);
    return 0;
  }
  let flags: ReturnType<typeof readIptablesFlags>;
  let rules: string;
  try {
    flags = readIptablesFlags(args);
    rules = captureRules(flags.options);
  } catch (err) {
    process.stderr.write(`instio iptables: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    if (flags.cleanupOnly) {
      if (flags.dryRun) process.stdout.write(`# would remove the jumps to ${CAPTURE_CHAINS.join(", ")} and the chains\n`);
      else cleanupCaptureRules();
      return 0;
    }
    if (flags.dryRun) {
      process.stdout.write(rules);
      return 0;
    }
    applyCaptureRules(rules);
    process.stderr.write("instio iptables: capture rules installed\n");
    return 0;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    process.stderr.write(`instio iptables: ${e.message.split("\n")[0]}${e.stderr ? `: ${e.stderr.trim()}` : ""} (iptables, root or CAP_NET_ADMIN in the pod's network namespace are needed)\n`);
    return 1;
  }
}
