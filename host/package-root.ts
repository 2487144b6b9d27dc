// Where instio's own files are (the route core's Wasm, native addons, Envoy's
// protos, the examples, package.json): beside host/ when it runs as
// TypeScript (vitest), beside dist/host/ once built, and in the directory the
// single binary unpacks its assets to (sea-main.ts sets INSTIO_SEA_ROOT; worker
// threads inherit it). This module sits directly in host/.

import { join } from "node:path";
import { pathToFileURL } from "node:url";

/** The single binary's unpacked assets, when running as one. */
export function seaRoot(): string | undefined {
  return process.env.INSTIO_SEA_ROOT || undefined;
}

export function packageFile(relative: string): URL {
  const sea = seaRoot();
  if (sea) return pathToFileURL(join(sea, relative) + (relative.endsWith("/") ? "/" : ""));
  const here = new URL(".", import.meta.url);
  return new URL(relative, here.pathname.includes("/dist/") ? new URL("../../", here) : new URL("../", here));
}
