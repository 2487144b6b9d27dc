// `instio status`: istioctl proxy-status for an instio control plane — each
// connected proxy and, per xDS type, whether it has what was last sent
// (SYNCED), not yet (STALE), rejected it (ERROR) or was never sent it.

export interface SyncEntry {
  proxy: string;
  cluster_id: string;
  istio_version: string;
  last_error: Record<string, string>;
  [type: string]: unknown;
}

/** The columns istioctl prints, in its order. */
const COLUMNS = ["cds", "lds", "eds", "rds"];

export function renderStatus(entries: SyncEntry[]): string {
  const rows = [["NAME", "CLUSTER", ...COLUMNS.map((c) => c.toUpperCase()), "VERSION"]];
  for (const e of [...entries].sort((a, b) => a.proxy.localeCompare(b.proxy))) {
    rows.push([e.proxy, e.cluster_id, ...COLUMNS.map((c) => String(e[c] ?? "")), e.istio_version || "-"]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]! + 3)).join("").trimEnd());
  for (const e of entries) {
    for (const [type, error] of Object.entries(e.last_error)) lines.push(`${e.proxy} ${type.toUpperCase()} rejected: ${error}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Reads /debug/syncz from the control plane's monitoring address ("host:port"). */
export async function fetchStatus(monitoring: string): Promise<SyncEntry[]> {
  const res = await fetch(`http://${monitoring}/debug/syncz`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${monitoring}/debug/syncz answered ${res.status}`);
  return (await res.json()) as SyncEntry[];
}
