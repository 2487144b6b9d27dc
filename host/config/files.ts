// Bounded reads of files a config names: a config, a certificate or a key is
// small, and a path such as /dev/zero or a huge file must be an error, not a
// read that fills memory.

import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

/** One config file (Envoy's and Istio's own inputs are far smaller). */
export const MAX_CONFIG_FILE_BYTES = 32 * 1024 * 1024;
/** Every config file of a directory together. */
export const MAX_CONFIG_TOTAL_BYTES = 64 * 1024 * 1024;
/** A PEM certificate, chain or key. */
export const MAX_PEM_BYTES = 1024 * 1024;

/** Reads at most `limit` bytes of a regular file; throws with a clear message for anything else or anything larger. */
export function readBounded(path: string, limit: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    if (st.size > limit) throw new Error(`${path} is ${st.size} bytes, more than the ${limit} allowed`);
    // The size can change under us (a file being written, a /proc file): read until EOF, never past the limit.
    const buf = Buffer.allocUnsafe(Math.min(limit + 1, Math.max(st.size, 4096) + 1));
    let n = 0;
    for (;;) {
      if (n === buf.length) throw new Error(`${path} grew beyond the ${limit} bytes allowed`);
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const YAML_FILE = /\.(ya?ml)$/i;

/** Lists the YAML files at `path` (a file, or a directory read recursively in name order). */
export function listConfigFiles(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  const out: string[] = [];
  for (const name of readdirSync(path).sort()) {
    if (name.startsWith(".")) continue;
    const full = join(path, name);
    if (statSync(full).isDirectory()) out.push(...listConfigFiles(full));
    else if (YAML_FILE.test(name)) out.push(full);
  }
  return out;
}
