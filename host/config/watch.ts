// Hot reload: watch the config path; on change parse → validate → compile → swap.
// A config with errors never replaces the one serving; each error is logged.

import { watch, type FSWatcher } from "node:fs";
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { MAX_CONFIG_FILE_BYTES, readBounded } from "./files.js";
import { basename, dirname } from "node:path";
import type { CompiledConfig } from "./compile.js";
import { formatDiagnostic, type ConfigDiagnostic } from "./diagnostics.js";
import { listConfigFiles } from "./source.js";
import { loadConfigPath } from "./load.js";

export interface ReloadEvents {
  applied(config: CompiledConfig, diagnostics: ConfigDiagnostic[]): void;
  rejected(diagnostics: ConfigDiagnostic[]): void;
}

const DEBOUNCE_MS = 100;

/** A digest of every config file's bytes, so that touching without changing does not reload. */
function digest(path: string): string {
  const h = createHash("sha256");
  try {
    for (const f of listConfigFiles(path)) h.update(f).update("\0").update(readBounded(f, MAX_CONFIG_FILE_BYTES));
  } catch {
    h.update("unreadable");
  }
  return h.digest("hex");
}

export class ConfigWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastDigest: string;

  constructor(
    private readonly path: string,
    private readonly events: ReloadEvents,
  ) {
    this.lastDigest = digest(path);
  }

  start(): void {
    const isDir = statSync(this.path).isDirectory();
    // Watch the directory, not the file: editors and Kubernetes ConfigMaps replace files by rename.
    const target = isDir ? this.path : dirname(this.path);
    const name = basename(this.path);
    this.watcher = watch(target, { recursive: isDir, persistent: false }, (_event, file) => {
      if (!isDir && file !== null && file !== name && !file.startsWith("..")) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), DEBOUNCE_MS);
    });
  }

  /** Reloads now if the files changed; returns whether a new config was applied. */
  reload(): boolean {
    const d = digest(this.path);
    if (d === this.lastDigest) return false;
    this.lastDigest = d;
    try {
      const result = loadConfigPath(this.path);
      if (!result.config) {
        this.events.rejected(result.diagnostics);
        return false;
      }
      this.events.applied(result.config, result.diagnostics);
      return true;
    } catch (err) {
      // A bug in loading or compiling must not take down a proxy that is serving.
      this.events.rejected([{ file: this.path, line: 1, column: 1, path: "", message: `internal error while loading: ${(err as Error).stack ?? String(err)}`, severity: "error" }]);
      return false;
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }
}

export function logDiagnostics(diagnostics: ConfigDiagnostic[], log: (line: string) => void): void {
  for (const d of diagnostics) log(formatDiagnostic(d));
}
