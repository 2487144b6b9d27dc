// Config errors that say where they came from: file, line, column, field path, reason.

export interface Location {
  file: string;
  line: number;
  column: number;
}

export interface ConfigDiagnostic extends Location {
  /** Dotted field path inside the document, e.g. `spec.http[0].route[1].weight`. */
  path: string;
  message: string;
  severity: "error" | "warning";
}

export function formatDiagnostic(d: ConfigDiagnostic): string {
  const where = d.path ? ` ${d.path}:` : "";
  return `${d.file}:${d.line}:${d.column}: ${d.severity}:${where} ${d.message}`;
}

export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

/** Thrown by loaders when a config cannot be used; carries every diagnostic found. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(readonly diagnostics: ConfigDiagnostic[]) {
    super(diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic).join("\n"));
  }
}

/** A load's compiled config, or a ConfigError listing every error. */
export function requireConfig<C>(result: { config: C | undefined; diagnostics: ConfigDiagnostic[] }): C {
  if (!result.config) throw new ConfigError(result.diagnostics);
  return result.config;
}
