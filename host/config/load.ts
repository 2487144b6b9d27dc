// parse → validate → compile, for a path on disk or for embedded text.

import { compile, type CompiledConfig } from "./compile.js";
import type { ConfigDiagnostic } from "./diagnostics.js";
import { readModel } from "./istio.js";
import { DiagnosticSink, parseSource, readSources, type SourceDocument } from "./source.js";

export interface LoadResult {
  config: CompiledConfig | undefined;
  /** Every error and warning, in file order; config is undefined when any is an error. */
  diagnostics: ConfigDiagnostic[];
}

/** Diagnostics in reading order: files as loaded, then line and column within each file. */
function ordered(diagnostics: ConfigDiagnostic[]): ConfigDiagnostic[] {
  const fileOrder = new Map<string, number>();
  for (const d of diagnostics) if (!fileOrder.has(d.file)) fileOrder.set(d.file, fileOrder.size);
  return [...diagnostics].sort((a, b) => fileOrder.get(a.file)! - fileOrder.get(b.file)! || a.line - b.line || a.column - b.column);
}

/** DNS answers for the config's DNS-resolved names (host/discovery/dns.ts keeps them). */
export type ResolvedNames = ReadonlyMap<string, readonly string[]>;

function build(docs: SourceDocument[], sink: DiagnosticSink, resolved?: ResolvedNames): LoadResult {
  const model = readModel(docs, sink);
  if (sink.hasErrors) return { config: undefined, diagnostics: ordered(sink.diagnostics) };
  const config = compile(model, resolved);
  const diagnostics = ordered([...sink.diagnostics, ...config.diagnostics]);
  if (diagnostics.some((d) => d.severity === "error")) return { config: undefined, diagnostics };
  return { config, diagnostics };
}

/** Loads `path`; DNS-resolved names get the addresses in `resolved` (none: no endpoints from them yet). */
export function loadConfigPath(path: string, resolved?: ResolvedNames): LoadResult {
  const sink = new DiagnosticSink();
  return build(readSources(path, sink), sink, resolved);
}

export function loadConfigText(name: string, text: string): LoadResult {
  const sink = new DiagnosticSink();
  return build(parseSource(name, text, sink), sink);
}

export { requireConfig } from "./diagnostics.js";
