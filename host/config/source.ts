// Reads a config file or directory of multi-document YAML, keeping positions so
// that every later error can name file:line:column.

import { LineCounter, parseAllDocuments, isNode, visit, type Document } from "yaml";
import { listConfigFiles, MAX_CONFIG_FILE_BYTES, MAX_CONFIG_TOTAL_BYTES, readBounded } from "./files.js";
import { formatPath, type ConfigDiagnostic, type Location } from "./diagnostics.js";

export type FieldPath = (string | number)[];

/** One YAML document with what is needed to point at any field in it. */
export class SourceDocument {
  constructor(
    readonly file: string,
    readonly index: number,
    private readonly doc: Document,
    private readonly lines: LineCounter,
    readonly value: unknown,
  ) {}

  /** The position of the field at `path`, or of its nearest present ancestor. */
  locate(path: FieldPath): Location {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) {
        const pos = this.lines.linePos(node.range[0]);
        return { file: this.file, line: pos.line, column: pos.col };
      }
    }
    return { file: this.file, line: 1, column: 1 };
  }
}

/** Collects diagnostics against one document. */
export class DiagnosticSink {
  readonly diagnostics: ConfigDiagnostic[] = [];
  error(doc: SourceDocument, path: FieldPath, message: string): void {
    this.diagnostics.push({ ...doc.locate(path), path: formatPath(path), message, severity: "error" });
  }
  warn(doc: SourceDocument, path: FieldPath, message: string): void {
    this.diagnostics.push({ ...doc.locate(path), path: formatPath(path), message, severity: "warning" });
  }
  get hasErrors(): boolean {
    return this.diagnostics.some((d) => d.severity === "error");
  }
}

/** Parses one file's text into documents; syntax errors become diagnostics. */
export function parseSource(file: string, text: string, sink: DiagnosticSink): SourceDocument[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  const out: SourceDocument[] = [];
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = lines.linePos(e.pos[0]);
        sink.diagnostics.push({ file, line: pos.line, column: pos.col, path: "", message: `YAML: ${e.message.split("\n")[0]}`, severity: "error" });
      }
      return;
    }
    let value: unknown;
    try {
      // Aliases are fine in number (a config may reuse an anchor hundreds of times); an expansion this large is an alias bomb.
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSION });
    } catch (err) {
      const at = lines.linePos(aliasErrorOffset(doc) ?? doc.range[0]);
      const message = /Excessive alias count/.test((err as Error).message) ? `YAML: aliases expand to more than ${MAX_ALIAS_EXPANSION} nodes (an alias bomb?)` : `YAML: ${(err as Error).message}`;
      sink.diagnostics.push({ file, line: at.line, column: at.col, path: "", message, severity: "error" });
      return;
    }
    if (value === null || value === undefined) return; // an empty document between '---' separators
    out.push(new SourceDocument(file, index, doc, lines, value));
  });
  return out;
}

/** yaml's maxAliasCount: nodes an alias may expand to, times its uses. */
const MAX_ALIAS_EXPANSION = 100_000;

/** Where the first alias that cannot be resolved is, for an error that names its line. */
function aliasErrorOffset(doc: Document): number | undefined {
  let offset: number | undefined;
  visit(doc, {
    Alias(_, node) {
      if (node.resolve(doc) === undefined) {
        offset = node.range?.[0];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return offset;
}

/**
 * Parsed files by path, reused while a file's text is unchanged: a control
 * plane reading thousands of objects on every change parses only the files
 * that changed. Files that did not parse cleanly are not kept.
 */
export class ParseCache {
  private readonly files = new Map<string, { text: string; docs: SourceDocument[] }>();
  private seen = new Set<string>();

  parse(file: string, text: string, sink: DiagnosticSink): SourceDocument[] {
    this.seen.add(file);
    const known = this.files.get(file);
    if (known && known.text === text) return known.docs;
    const before = sink.diagnostics.length;
    const docs = parseSource(file, text, sink);
    if (sink.diagnostics.length === before) this.files.set(file, { text, docs });
    else this.files.delete(file);
    return docs;
  }

  /** Forgets the files not parsed since the last sweep (deleted, or moved out of the config). */
  sweep(): void {
    for (const file of this.files.keys()) if (!this.seen.has(file)) this.files.delete(file);
    this.seen = new Set();
  }
}

export function readSources(path: string, sink: DiagnosticSink, cache?: ParseCache): SourceDocument[] {
  const docs: SourceDocument[] = [];
  let files: string[];
  try {
    files = listConfigFiles(path);
  } catch (err) {
    sink.diagnostics.push({ file: path, line: 1, column: 1, path: "", message: `cannot read config: ${(err as Error).message}`, severity: "error" });
    return docs;
  }
  if (files.length === 0) {
    sink.diagnostics.push({ file: path, line: 1, column: 1, path: "", message: "no .yaml or .yml files found", severity: "error" });
  }
  let total = 0;
  for (const file of files) {
    let text: string;
    try {
      const bytes = readBounded(file, MAX_CONFIG_FILE_BYTES);
      total += bytes.length;
      if (total > MAX_CONFIG_TOTAL_BYTES) throw new Error(`the config's files together exceed ${MAX_CONFIG_TOTAL_BYTES} bytes`);
      text = bytes.toString("utf8");
    } catch (err) {
      sink.diagnostics.push({ file, line: 1, column: 1, path: "", message: `cannot read: ${(err as Error).message}`, severity: "error" });
      continue;
    }
    docs.push(...(cache ? cache.parse(file, text, sink) : parseSource(file, text, sink)));
  }
  return docs;
}
