// Where instio's own files are (the route core's Wasm, native addons, Envoy's
// protos, the examples, package.json): beside host/ when it runs as
// TypeScript (vitest), beside dist/host/ once built, and in the directory the
// single binary unpacks its assets to (sea-main.ts sets INSTIO_SEA_ROOT; worker
// threads inherit it). This module sits directly in host/.

import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

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

/** How the user runs instio, for the commands the quickstarts print: the binary, or the checkout's CLI. */
export function selfCommand(): string {
  return seaRoot() ? process.execPath : "node dist/host/cli.js";
}

/**
 * An example's directory as the user may edit it: the checkout's own, or (the single binary's examples being part
 * of a build, replaced with it) a fresh copy in a temporary directory.
 */
export function editableExample(name: string): string {
  const source = fileURLToPath(packageFile(`examples/${name}/`));
  if (!seaRoot()) return source;
  const copy = join(mkdtempSync(join(tmpdir(), `instio-${name}-`)), name);
  cpSync(source, copy, { recursive: true });
  return copy;
}
