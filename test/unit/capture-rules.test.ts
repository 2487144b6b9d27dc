// instio iptables against istio-iptables' golden files
// (tools/istio-iptables/pkg/capture/testdata/*.golden): the same flags give the
// same nat rules, line for line, in the same order. The goldens wrap the
// restore text in iptables-save lines (their test's stub); the text between
// them is what is compared. Shared runs of lines are spelled out once below.

import { describe, expect, it } from "vitest";
import { captureRules } from "../../host/capture/iptables.js";
import { cleanupCaptureRules, readIptablesFlags } from "../../host/capture/command.js";

const CHAINS = ["* nat", "-N ISTIO_INBOUND", "-N ISTIO_REDIRECT", "-N ISTIO_IN_REDIRECT", "-N ISTIO_OUTPUT"];
const JUMPS = ["-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN", "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001", "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"];
const OWNERS = [
  "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
  "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
  "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
  "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
  "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
  "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
  "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
  "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
];
const OUTPUT = "-A OUTPUT -j ISTIO_OUTPUT";

/** The golden cases: istio-iptables' test flags (on top of its defaults -p 15001 -z 15006 -e 15008 -u 1337 -g 1337), and the expected rules. */
const GOLDEN: [name: string, flags: string[], rules: string[]][] = [
  ["empty", [], [...CHAINS, ...JUMPS, OUTPUT, ...OWNERS]],
  ["inbound-ports-wildcard", ["-b", "*"], [...CHAINS, ...JUMPS, "-A PREROUTING -p tcp -j ISTIO_INBOUND", "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT", OUTPUT, ...OWNERS]],
  ["inbound-ports-include", ["-b", "32000,31000"], [...CHAINS, ...JUMPS, "-A PREROUTING -p tcp -j ISTIO_INBOUND", "-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_IN_REDIRECT", "-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_IN_REDIRECT", OUTPUT, ...OWNERS]],
  ["inbound-wildcard-exclude", ["-b", "*", "-d", "22,80,443"], [...CHAINS, ...JUMPS, "-A PREROUTING -p tcp -j ISTIO_INBOUND", "-A ISTIO_INBOUND -p tcp -m multiport --dports 22,80,443 -j RETURN", "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT", OUTPUT, ...OWNERS]],
  ["ipnets", ["-i", "10.0.0.0/8"], [...CHAINS, ...JUMPS, OUTPUT, ...OWNERS, "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT"]],
  ["outbound-ports-include", ["-q", "32000,31000"], [...CHAINS, ...JUMPS, OUTPUT, ...OWNERS, "-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT", "-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT"]],
  ["outbound-ports-exclude", ["-o", "22,80,443"], [...CHAINS, ...JUMPS, OUTPUT, "-A ISTIO_OUTPUT -p tcp -m multiport --dports 22,80,443 -j RETURN", "-A ISTIO_OUTPUT -p udp -m multiport --dports 22,80,443 -j RETURN", ...OWNERS]],
  ["outbound-ports-exclude-single", ["-o", "22"], [...CHAINS, ...JUMPS, OUTPUT, "-A ISTIO_OUTPUT -p tcp --dport 22 -j RETURN", "-A ISTIO_OUTPUT -p udp --dport 22 -j RETURN", ...OWNERS]],
  ["kube-virt-interfaces", ["-k", "eth1,eth2", "-i", "*"], [...CHAINS, "-I PREROUTING 1 -i eth1 -j RETURN", "-I PREROUTING 1 -i eth2 -j RETURN", ...JUMPS, OUTPUT, ...OWNERS, "-A ISTIO_OUTPUT -j ISTIO_REDIRECT", "-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT", "-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT"]],
  ["ipnets-with-kube-virt-interfaces", ["-k", "eth1,eth2", "-i", "10.0.0.0/8"], [...CHAINS, "-I PREROUTING 1 -i eth1 -j RETURN", "-I PREROUTING 1 -i eth2 -j RETURN", ...JUMPS, OUTPUT, ...OWNERS, "-I PREROUTING 1 -i eth1 -d 10.0.0.0/8 -j ISTIO_REDIRECT", "-I PREROUTING 1 -i eth2 -d 10.0.0.0/8 -j ISTIO_REDIRECT", "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT"]],
  ["basic-exclude-nic", ["-c", "not-istio-nic"], [...CHAINS, "-A PREROUTING -i not-istio-nic -j RETURN", "-A OUTPUT -o not-istio-nic -j RETURN", ...JUMPS, OUTPUT, ...OWNERS]],
];

const rulesFor = (flags: string[]): string[] => captureRules(readIptablesFlags(flags).options).trimEnd().split("\n");

describe("instio iptables", () => {
  for (const [name, flags, rules] of GOLDEN) {
    it(`writes istio-iptables' rules for ${name} (${flags.join(" ") || "defaults"})`, () => {
      expect(rulesFor(flags)).toEqual([...rules, "COMMIT"]);
    });
  }

  it("writes the injector's rule set: every inbound port but the agent's, every outbound CIDR", () => {
    const rules = rulesFor(["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"]);
    expect(rules).toEqual([...CHAINS, ...JUMPS, "-A PREROUTING -p tcp -j ISTIO_INBOUND", "-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020 -j RETURN", "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT", OUTPUT, ...OWNERS, "-A ISTIO_OUTPUT -j ISTIO_REDIRECT", "COMMIT"]);
  });

  it("splits port lists into groups of 15 (iptables' multiport limit), a lone port as --dport", () => {
    const ports = Array.from({ length: 16 }, (_, i) => String(1000 + i));
    const rules = rulesFor(["-o", ports.join(",")]);
    expect(rules).toContain(`-A ISTIO_OUTPUT -p tcp -m multiport --dports ${ports.slice(0, 15).join(",")} -j RETURN`);
    expect(rules).toContain("-A ISTIO_OUTPUT -p tcp --dport 1015 -j RETURN");
    expect(rules).toContain("-A ISTIO_OUTPUT -p udp --dport 1015 -j RETURN");
  });

  it("keeps other users' loopback traffic captured when an include CIDR covers loopback, as Istio does", () => {
    const rules = rulesFor(["-i", "127.1.2.3/32"]);
    expect(rules.some((r) => r.includes("! --uid-owner"))).toBe(false);
    expect(rules).toContain("-A ISTIO_OUTPUT -d 127.1.2.3/32 -j ISTIO_REDIRECT");
  });

  it("refuses what it cannot do, naming the flag", () => {
    for (const [flags, message] of [
      [["-m", "TPROXY"], /TPROXY interception is not supported/],
      [["--redirect-dns"], /DNS capture is not supported/],
      [["-x", "*"], /-x: "\*" is not allowed/],
      [["-i", "fd00::/8"], /-i: "fd00::\/8" is not an IPv4 CIDR/],
      [["-b", "80,http"], /-b: "http" is not a port/],
      [["-o", "70000"], /-o: "70000" is not a port/],
      [["-u", "root"], /"root" is not a numeric id/],
      [["-c", "eth0; reboot"], /is not an interface name/],
    ] as [string[], RegExp][]) {
      expect(() => rulesFor(flags), flags.join(" ")).toThrow(message);
    }
  });

  it("cleans up only the jumps into Istio's chains, then the chains", () => {
    const ran: string[] = [];
    const listing: Record<string, string> = {
      PREROUTING: "-P PREROUTING ACCEPT\n-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A PREROUTING -p tcp -j KEEP_ME\n",
      OUTPUT: "-P OUTPUT ACCEPT\n-A OUTPUT -j ISTIO_OUTPUT\n",
    };
    cleanupCaptureRules((args) => {
      ran.push(args.join(" "));
      return args[2] === "-S" ? listing[args[3]!]! : "";
    });
    expect(ran).toEqual([
      "-t nat -S PREROUTING",
      "-t nat -D PREROUTING -p tcp -j ISTIO_INBOUND",
      "-t nat -S OUTPUT",
      "-t nat -D OUTPUT -j ISTIO_OUTPUT",
      ...["ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"].flatMap((c) => [`-t nat -F ${c}`, `-t nat -X ${c}`]),
    ]);
  });
});
