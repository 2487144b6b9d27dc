// Typed reads of untrusted YAML values that report, rather than throw, what is wrong.

import { MAX_PEM_BYTES, readBounded } from "./files.js";
import { dirname, isAbsolute, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import type { DiagnosticSink, FieldPath, SourceDocument } from "./source.js";

export type Obj = Record<string, unknown>;

/** The longest delay a Node timer can wait (setTimeout fires after 1 ms beyond it). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** google.protobuf.Duration's range: ±315,576,000,000 s. */
const MAX_PROTO_DURATION_MS = 315_576_000_000_000;

export class FieldReader {
  constructor(
    readonly sink: DiagnosticSink,
    readonly doc: SourceDocument,
  ) {}

  error(path: FieldPath, message: string): void {
    this.sink.error(this.doc, path, message);
  }
  warn(path: FieldPath, message: string): void {
    this.sink.warn(this.doc, path, message);
  }

  /**
   * Reads an object and checks its keys: unknown keys are errors (Istio's CRD
   * schemas reject them too), and keys instio knows but does not implement yet
   * are errors that say so, rather than being silently ignored.
   */
  object(value: unknown, path: FieldPath, known: readonly string[], notYet: Readonly<Record<string, string>> = {}): Obj | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "object" || Array.isArray(value)) {
      this.error(path, `must be an object, got ${describe(value)}`);
      return undefined;
    }
    const obj = value as Obj;
    for (const key of Object.keys(obj)) {
      if (key in notYet) this.error([...path, key], `not supported yet: ${notYet[key]}`);
      else if (!known.includes(key)) this.error([...path, key], `unknown field "${key}"`);
    }
    return obj;
  }

  string(value: unknown, path: FieldPath, required = false): string | undefined {
    if (value === undefined || value === null) {
      if (required) this.error(path, "is required");
      return undefined;
    }
    if (typeof value !== "string") {
      this.error(path, `must be a string, got ${describe(value)}`);
      return undefined;
    }
    if (required && value === "") this.error(path, "must not be empty");
    return value;
  }

  integer(value: unknown, path: FieldPath, min: number, max: number, required = false): number | undefined {
    if (value === undefined || value === null) {
      if (required) this.error(path, "is required");
      return undefined;
    }
    if (typeof value !== "number" || !Number.isInteger(value)) {
      this.error(path, `must be an integer, got ${describe(value)}`);
      return undefined;
    }
    if (value < min || value > max) {
      this.error(path, `must be between ${min} and ${max}, got ${value}`);
      return undefined;
    }
    return value;
  }

  boolean(value: unknown, path: FieldPath): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "boolean") {
      this.error(path, `must be true or false, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  list(value: unknown, path: FieldPath): unknown[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) {
      this.error(path, `must be a list, got ${describe(value)}`);
      return [];
    }
    return value;
  }

  stringList(value: unknown, path: FieldPath): string[] {
    const out: string[] = [];
    this.list(value, path).forEach((v, i) => {
      const s = this.string(v, [...path, i], true);
      if (s !== undefined) out.push(s);
    });
    return out;
  }

  stringMap(value: unknown, path: FieldPath): Record<string, string> {
    const out: Record<string, string> = {};
    const obj = this.object(value, path, Object.keys((value as Obj | null) ?? {}));
    if (!obj) return out;
    for (const [k, v] of Object.entries(obj)) {
      const s = this.string(v, [...path, k]);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }

  /** A protobuf Duration as Istio writes it: "5s", "250ms", "1.5s", "1m", "1h". Returns milliseconds. */
  duration(value: unknown, path: FieldPath, minMs = 0): number | undefined {
    const s = this.string(value, path);
    if (s === undefined) return undefined;
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s);
    if (!m) {
      this.error(path, `must be a duration such as "5s" or "250ms", got "${s}"`);
      return undefined;
    }
    const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
    if (ms < minMs) {
      this.error(path, `must be at least ${minMs}ms, got "${s}"`);
      return undefined;
    }
    if (ms > MAX_PROTO_DURATION_MS) {
      this.error(path, `must be at most 315576000000s (protobuf's Duration limit), got "${s}"`);
      return undefined;
    }
    if (ms > MAX_TIMER_MS) {
      // Node's timers hold 2^31-1 ms; a longer one would fire after 1 ms.
      this.warn(path, `"${s}" is longer than a timer can wait (24.8 days): clamped to ${MAX_TIMER_MS}ms`);
      return MAX_TIMER_MS;
    }
    return ms;
  }

  /** A file path as written in the config, relative to the directory of the file that names it. */
  configPath(file: string): string {
    return isAbsolute(file) ? file : resolve(dirname(this.doc.file), file);
  }

  /**
   * Loads a certificate, its key and (optionally) a CA now, so that a bad file is a config error
   * at `path` rather than a listener that fails later. Returns whether they can be used.
   */
  certificates(path: FieldPath, files: { certFile: string; keyFile: string; caFile?: string }): boolean {
    try {
      const read = (f: string): Buffer => readBounded(f, MAX_PEM_BYTES);
      createSecureContext({ cert: read(files.certFile), key: read(files.keyFile), ...(files.caFile ? { ca: read(files.caFile) } : {}) });
      return true;
    } catch (err) {
      this.error(path, `cannot use certificate ${files.certFile} with key ${files.keyFile}${files.caFile ? ` and CA ${files.caFile}` : ""}: ${(err as Error).message}`);
      return false;
    }
  }

  oneOf<T extends string>(value: unknown, path: FieldPath, allowed: readonly T[], notYet: readonly string[] = []): T | undefined {
    const s = this.string(value, path);
    if (s === undefined) return undefined;
    if (notYet.includes(s)) {
      this.error(path, `not supported yet: ${s}`);
      return undefined;
    }
    if (!(allowed as readonly string[]).includes(s)) {
      this.error(path, `must be one of ${[...allowed, ...notYet].join(", ")}, got "${s}"`);
      return undefined;
    }
    return s as T;
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}
