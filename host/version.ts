// instio's version, from its package.json: what the admin's /server_info and the
// xDS node's ISTIO_VERSION say.

import { readFileSync } from "node:fs";
import { packageFile } from "./package-root.js";

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { name?: string; version?: string };
    if (pkg.name === "instio" && pkg.version) return pkg.version;
  } catch {
    // not there
  }
  return "unknown";
}

export const VERSION = readVersion();
