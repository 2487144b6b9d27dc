// `instio compile-table CONFIG`: a config's route table as the plugin
// configuration of the route core's Proxy-Wasm filter (assembly/filter.ts,
// build/route-filter.wasm), for Envoy. The table is laid out by an instance
// of the filter module itself (RouteCore does the layout, image and hash
// tables included), so the filter only copies the snapshot back to the same
// address. Container (u32 fields, little-endian):
//
//   "ISF1" | base | snapshot length | request area | decision area | flags |
//   header count | cluster count | endpoint count | snapshot span |
//   FNV-1a of everything after the header (a damaged table is refused) |
//   names, each (u32 length, UTF-8): the referenced headers (slot order), the
//   clusters (Envoy's names, by the core's cluster index), the endpoints
//   ("address:port", by global endpoint index) | the snapshot, its trailing
//   zeros (the request areas, mostly) left out: the span says how far it goes

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { CompiledConfig } from "../config/compile.js";
import { fnv1a } from "../core/image.js";
import { RouteCore } from "../core/route-core.js";
import { packageFile } from "../package-root.js";

const MAGIC = 0x31465349; // "ISF1"
const F_METHOD = 1;
const F_QUERY = 2;
const F_SCHEME = 4;
const F_SOURCE_IP = 8;

/** The filter build, made by `npm run build:filter` (part of `npm run build`). */
export function filterModulePath(): string {
  return fileURLToPath(packageFile("build/route-filter.wasm"));
}

export interface FilterTable {
  bytes: Buffer;
  routes: number;
  clusters: number;
  endpoints: number;
  snapshotBytes: number;
}

export function compileFilterTable(config: CompiledConfig, module = new WebAssembly.Module(readModule())): FilterTable {
  const table = config.table;
  const core = new RouteCore(table, undefined, module);
  const snapshot = core.memorySnapshot();
  const flags = (core.readsMethod ? F_METHOD : 0) | (core.readsQuery ? F_QUERY : 0) | (core.readsScheme ? F_SCHEME : 0) | (core.readsSourceIp ? F_SOURCE_IP : 0);
  const endpoints = config.clusters.flatMap((c) => c.endpoints.map((e) => (e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`)));
  const names = [...table.headerNames, ...config.clusters.map((c) => c.name), ...endpoints].map((n) => Buffer.from(n));
  let stored = snapshot.bytes.length;
  while (stored > 0 && snapshot.bytes[stored - 1] === 0) stored--;
  const head = Buffer.alloc(44);
  [MAGIC, snapshot.base, stored, snapshot.requestAt, snapshot.outAt, flags, table.headerNames.length, config.clusters.length, endpoints.length, snapshot.bytes.length].forEach((v, i) => head.writeUInt32LE(v, i * 4));
  const parts: Buffer[] = [head];
  for (const n of names) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(n.length);
    parts.push(len, n);
  }
  parts.push(Buffer.from(snapshot.bytes.subarray(0, stored)));
  const bytes = Buffer.concat(parts);
  // The image's FNV-1a, which the filter computes again with assembly/bytes.ts's fnvStart/fnvStep.
  bytes.writeUInt32LE(fnv1a(bytes.subarray(head.length)), 40);
  return { bytes, routes: config.routes.length, clusters: config.clusters.length, endpoints: endpoints.length, snapshotBytes: snapshot.bytes.length };
}

function readModule(): Uint8Array<ArrayBuffer> {
  const path = filterModulePath();
  try {
    return new Uint8Array(readFileSync(path));
  } catch (err) {
    throw new Error(`the route filter is not built: ${path} is missing (run 'npm run build:filter'): ${(err as Error).message}`);
  }
}
