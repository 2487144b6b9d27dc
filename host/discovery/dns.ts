// DNS discovery for ServiceEntries with resolution DNS / DNS_ROUND_ROBIN: the
// names a config needs are resolved now and every refreshRate (Istio's
// dnsRefreshRate), and each change of addresses recompiles the config into a
// new snapshot, off the request path. A failed lookup keeps the last good
// addresses, as Envoy keeps its hosts when re-resolution fails.

import { lookup } from "node:dns/promises";
import { Resolver } from "node:dns/promises";

export type Resolved = ReadonlyMap<string, readonly string[]>;

export class DnsDiscovery {
  private readonly addresses = new Map<string, string[]>();
  private names: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly resolver: Resolver | undefined;

  constructor(
    servers: string[] | undefined,
    private readonly refreshRateMs: number,
    /** Called when some name's addresses changed (not on every refresh). */
    private readonly changed: (resolved: Resolved) => void,
    private readonly log: (line: string) => void,
  ) {
    if (servers) {
      this.resolver = new Resolver();
      this.resolver.setServers(servers);
    }
  }

  get resolved(): Resolved {
    return this.addresses;
  }

  /** Resolves `names` (the set a new config needs) now, then keeps refreshing them. */
  async track(names: string[]): Promise<void> {
    this.names = [...new Set(names)].sort();
    for (const n of [...this.addresses.keys()]) if (!this.names.includes(n)) this.addresses.delete(n);
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.names.length === 0) return;
    await this.refresh();
    // A refresh must never become an unhandled rejection: the proxy keeps serving the addresses it has.
    this.timer = setInterval(
      () =>
        void this.refresh()
          .then((changed) => changed && this.changed(this.addresses))
          .catch((err: Error) => this.log(`dns: refresh failed, keeping the last addresses: ${err.message}`)),
      this.refreshRateMs,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Resolves every tracked name; true when some name's addresses changed. */
  async refresh(): Promise<boolean> {
    let changed = false;
    await Promise.all(
      this.names.map(async (name) => {
        try {
          const found = (await this.lookup(name)).sort();
          const before = this.addresses.get(name);
          if (!before || before.join() !== found.join()) {
            this.addresses.set(name, found);
            changed = true;
            this.log(`dns: ${name} resolved to ${found.join(", ") || "nothing"}`);
          }
        } catch (err) {
          this.log(`dns: resolving ${name} failed (${(err as Error).message}); keeping ${this.addresses.get(name)?.join(", ") || "no addresses"}`);
        }
      }),
    );
    return changed;
  }

  private async lookup(name: string): Promise<string[]> {
    if (!this.resolver) return (await lookup(name, { all: true })).map((a) => a.address);
    const [v4, v6] = await Promise.all([this.resolver.resolve4(name).catch(noRecords), this.resolver.resolve6(name).catch(noRecords)]);
    return [...v4, ...v6];
  }
}

/** No A (or AAAA) records is an empty answer, not a failure; anything else is one. */
function noRecords(err: NodeJS.ErrnoException): string[] {
  if (err.code === "ENODATA" || err.code === "ENOTFOUND") return [];
  throw err;
}
