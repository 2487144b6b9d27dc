// instio's version, from its package.json: what the admin's /server_info and the
// xDS node's ISTIO_VERSION say.

import { readFileSync } from "node:fs";

function readVersion(): string {
  // host/ from the sources, dist/host/ once built: the package's root is one or two levels up.
  for (const up of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "instio" && pkg.version) return pkg.version;
    } catch {
      // not there
    }
  }
  return "unknown";
}

export const VERSION = readVersion();
