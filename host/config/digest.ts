// A digest of every config file's bytes, so that touching a file without changing it does not reload.

import { createHash } from "node:crypto";
import { listConfigFiles, MAX_CONFIG_FILE_BYTES, readBounded } from "./files.js";

export function configDigest(path: string): string {
  const h = createHash("sha256");
  try {
    for (const f of listConfigFiles(path)) h.update(f).update("\0").update(readBounded(f, MAX_CONFIG_FILE_BYTES));
  } catch {
    h.update("unreadable");
  }
  return h.digest("hex");
}
