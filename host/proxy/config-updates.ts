// The one path every config producer goes through (file reloads, DNS
// refreshes, and next the control plane): build → validate → swap. A build
// that fails or throws never replaces the serving snapshot: every diagnostic is
// logged with where the update came from, the rejection is counted, and the
// proxy keeps serving. Nothing here throws, so a producer's timer or promise
// cannot take the process down.

import type { CompiledConfig } from "../config/compile.js";
import { formatDiagnostic, type ConfigDiagnostic } from "../config/diagnostics.js";
import type { Logger } from "../log.js";
import type { Telemetry } from "../telemetry/telemetry.js";
import type { Snapshot, SnapshotHolder } from "./snapshot.js";

/** What the update changed, as the log says it: a new route table, or which clusters were patched. */
function describeUpdate(s: Snapshot): string {
  if (s.update === "initial" || s.update === "routes") return "new route table";
  if (s.update === "unchanged") return "nothing the proxy serves changed";
  const names = s.touched.map((i) => s.config.clusters[i]!.name);
  const shown = names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${names.length - 3} more` : names.join(", ");
  return `${s.update === "clusters" ? "cluster settings" : "endpoints"} of ${shown}, in place`;
}

/** The other serving threads (`concurrency` above 1): each config this thread applies goes to them too. */
export interface ConfigFollowers<Encoded = unknown> {
  /** Taken before the swap, which consumes the config's route image. */
  encode(config: CompiledConfig): Encoded;
  apply(encoded: Encoded, origin: string): void;
}

export class ConfigUpdates {
  readonly stats = { applied: 0, rejected: 0 };
  /** Why the last rejected update was rejected, in one line (an xDS NACK carries it back). */
  lastRejection = "";
  followers: ConfigFollowers | undefined;

  constructor(
    private readonly holder: SnapshotHolder,
    private readonly telemetry: Telemetry,
    private readonly logger: Logger,
  ) {}

  /**
   * Builds a config (`build` may throw: that is a rejection too) and serves it when it has no
   * errors. `diagnostics` are what an earlier stage (loading, on the worker) already found.
   * Returns the new snapshot, or undefined when the update was rejected.
   */
  apply(origin: string, build: () => CompiledConfig, diagnostics: readonly ConfigDiagnostic[] = []): Snapshot | undefined {
    let config: CompiledConfig;
    try {
      config = build();
    } catch (err) {
      return this.reject(origin, [], `internal error while building it: ${(err as Error).stack ?? String(err)}`);
    }
    const all = [...diagnostics, ...config.diagnostics.filter((d) => !diagnostics.includes(d))];
    if (all.some((d) => d.severity === "error")) return this.reject(origin, all);
    for (const d of all) this.logger.info(`config (${origin}): ${formatDiagnostic(d)}`);
    let s: Snapshot;
    let encoded: unknown;
    try {
      encoded = this.followers?.encode(config);
      s = this.holder.swap(config);
    } catch (err) {
      return this.reject(origin, [], `internal error while building its snapshot: ${(err as Error).stack ?? String(err)}`);
    }
    if (this.followers) this.followers.apply(encoded, origin);
    this.stats.applied++;
    this.telemetry.metrics.configReloads.inc({ result: "applied" });
    this.logger.info(`config: version ${s.version} applied (${origin}: ${config.virtualHosts.length} virtual hosts, ${config.routes.length} routes, ${config.clusters.length} clusters; ${describeUpdate(s)})`);
    return s;
  }

  /** An update that cannot be served: logged with its origin and counted; the serving snapshot stays. */
  reject(origin: string, diagnostics: readonly ConfigDiagnostic[], reason?: string): undefined {
    this.stats.rejected++;
    this.lastRejection = [...diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic), ...(reason ? [reason] : [])].join("; ");
    this.telemetry.metrics.configReloads.inc({ result: "rejected" });
    for (const d of diagnostics) this.logger.error(`config (${origin}): ${formatDiagnostic(d)}`);
    this.logger.error(`config (${origin}): rejected${reason ? `, ${reason}` : ""}; still serving version ${this.holder.current.version}`);
    return undefined;
  }
}
