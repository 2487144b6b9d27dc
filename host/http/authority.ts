// Host and port in authorities and URLs, IPv6 literals included.

/** Splits "host:port", "[::1]:80" or "host" into the host and the port (undefined when absent). */
export function splitAuthority(authority: string): { host: string; port: string | undefined } {
  const bracket = authority.lastIndexOf("]");
  const colon = authority.lastIndexOf(":");
  return colon > bracket ? { host: authority.slice(0, colon), port: authority.slice(colon + 1) } : { host: authority, port: undefined };
}

/** An address as it goes into a URL: IPv6 literals in brackets. */
export function urlHost(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}
