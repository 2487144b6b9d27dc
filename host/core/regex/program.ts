// Compiles a regex AST into a byte-level program for the Pike VM in
// assembly/regex.ts (instruction format in assembly/layout.ts, RX_*).
//
// The VM walks UTF-8 bytes, so every code-point class becomes byte ranges:
// the ASCII part is one 256-bit bitmap test, each non-ASCII range becomes a
// few sequences of byte ranges (the classic UTF-8 range split). Case folding
// and flags are resolved here; the VM knows nothing but bytes.

import * as L from "../../../assembly/layout.js";
import { MAX_CODE_POINT, parseRegex, type AssertKind, type Range, type RegexNode, type ParsedRegex } from "./syntax.js";

/** Instruction count above which a pattern is rejected (RE2 also bounds program size). */
export const MAX_PROGRAM_INSTRUCTIONS = 20000;

export interface RegexProgram {
  /** [op, a, b, c] per instruction; CLASS instructions hold a bitmap index in `a`. */
  instructions: Int32Array;
  /** 32-byte bitmaps referenced by CLASS instructions. */
  bitmaps: Uint8Array[];
  /** Capture slots the VM keeps: 2 per group including group 0, or 0 for a yes/no match. */
  slots: number;
  /** Only a match starting at the first byte counts. */
  anchored: boolean;
  /** Capture groups of the pattern (not counting group 0). */
  groups: number;
}

export type RegexMode = "fullMatch" | "search";

const ASSERTS: Record<AssertKind, number> = {
  beginText: L.RXA_BEGIN_TEXT,
  endText: L.RXA_END_TEXT,
  beginLine: L.RXA_BEGIN_LINE,
  endLine: L.RXA_END_LINE,
  wordBoundary: L.RXA_WORD_BOUNDARY,
  notWordBoundary: L.RXA_NOT_WORD_BOUNDARY,
};

/**
 * fullMatch: the whole input must match (Envoy's safe_regex), no captures kept.
 * search: leftmost-first match anywhere, with capture slots (regex rewrites).
 */
export function compileRegex(parsed: ParsedRegex, mode: RegexMode): RegexProgram {
  const c = new Compiler(mode === "search" ? 2 * (parsed.groups + 1) : 0);
  if (mode === "search") c.save(0);
  c.node(parsed.root);
  if (mode === "search") c.save(1);
  else c.emit(L.RX_ASSERT, L.RXA_END_TEXT, 0);
  c.emit(L.RX_MATCH, 0, 0);
  return { ...c.finish(), anchored: mode === "fullMatch", groups: parsed.groups };
}

/** Parses and compiles; throws RegexSyntaxError or a program-size Error, both with a message for the user. */
export function compilePattern(pattern: string, mode: RegexMode): RegexProgram {
  return compileRegex(parseRegex(pattern), mode);
}

/**
 * Parses an RE2 rewrite string (Envoy's regex_rewrite substitution): \\0-\\9
 * insert a capture group, \\\\ a backslash. Returns literal text and group numbers.
 */
export function parseRewriteTemplate(template: string, groups: number): (string | number)[] {
  const parts: (string | number)[] = [];
  let text = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c !== "\\") {
      text += c;
      continue;
    }
    const next = template[++i];
    if (next === "\\") {
      text += "\\";
    } else if (next !== undefined && next >= "0" && next <= "9") {
      const group = Number(next);
      if (group > groups) throw new Error(`rewrite refers to \\${group} but the pattern has ${groups} capture group${groups === 1 ? "" : "s"}`);
      if (text) parts.push(text);
      text = "";
      parts.push(group);
    } else {
      throw new Error(`invalid rewrite: a backslash must be followed by a digit or another backslash, at position ${i}`);
    }
  }
  if (text) parts.push(text);
  return parts;
}

class Compiler {
  private readonly code: number[][] = [];
  readonly bitmaps: Uint8Array[] = [];
  private readonly bitmapIndex = new Map<string, number>();

  constructor(private readonly slots: number) {}

  get pc(): number {
    return this.code.length;
  }

  /** Appends an instruction whose successor is the next instruction (RX_C_NEXT filled in by finish()). */
  emit(op: number, a: number, b: number): number {
    if (this.code.length >= MAX_PROGRAM_INSTRUCTIONS) {
      throw new Error(`regex program too large (over ${MAX_PROGRAM_INSTRUCTIONS} instructions): reduce counted repetitions`);
    }
    this.code.push([op, a, b, -1]);
    return this.code.length - 1;
  }

  private patch(at: number, field: 1 | 2, target: number): void {
    this.code[at]![field] = target;
  }

  save(slot: number): void {
    if (slot < this.slots) this.emit(L.RX_SAVE, slot, 0);
  }

  finish(): Pick<RegexProgram, "instructions" | "bitmaps" | "slots"> {
    const instructions = new Int32Array(this.code.length * 4);
    this.code.forEach((inst, i) => {
      instructions.set([inst[0]!, inst[1]!, inst[2]!, inst[3]! < 0 ? i + 1 : inst[3]!], i * 4);
    });
    return { instructions, bitmaps: this.bitmaps, slots: this.slots };
  }

  node(n: RegexNode): void {
    switch (n.type) {
      case "empty":
        return;
      case "class":
        return this.codePoints(n.ranges);
      case "concat":
        for (const item of n.items) this.node(item);
        return;
      case "alternate":
        return this.alternate(n.items.map((item) => () => this.node(item)));
      case "group":
        if (n.index === 0) return this.node(n.sub); // non-capturing
        this.save(2 * n.index);
        this.node(n.sub);
        this.save(2 * n.index + 1);
        return;
      case "assert":
        this.emit(L.RX_ASSERT, ASSERTS[n.kind], 0);
        return;
      case "repeat":
        return this.repeat(n.sub, n.min, n.max, n.greedy);
    }
  }

  /** SPLIT chain: the first alternative has priority (leftmost-first, as RE2 and Perl). */
  private alternate(parts: (() => void)[]): void {
    const jumps: number[] = [];
    parts.forEach((part, i) => {
      if (i === parts.length - 1) {
        part();
        return;
      }
      const split = this.emit(L.RX_SPLIT, 0, 0);
      this.patch(split, 1, this.pc);
      part();
      jumps.push(this.emit(L.RX_JUMP, 0, 0));
      this.patch(split, 2, this.pc);
    });
    for (const j of jumps) this.patch(j, 1, this.pc);
  }

  private repeat(sub: RegexNode, min: number, max: number, greedy: boolean): void {
    if (max === -1 && min > 0) {
      // x{n,}: n-1 copies, then L: x; SPLIT L, out (one copy of x serves as the loop body)
      for (let i = 1; i < min; i++) this.node(sub);
      const body = this.pc;
      this.node(sub);
      const split = this.emit(L.RX_SPLIT, 0, 0);
      this.branches(split, body, this.pc, greedy);
      return;
    }
    for (let i = 0; i < min; i++) this.node(sub);
    if (max === -1) {
      // L: SPLIT body, out; body; JUMP L
      const split = this.emit(L.RX_SPLIT, 0, 0);
      const body = this.pc;
      this.node(sub);
      this.emit(L.RX_JUMP, split, 0);
      this.branches(split, body, this.pc, greedy);
      return;
    }
    // Optional copies, nested so that a skipped copy skips the rest: (x(x(x)?)?)?
    const splits: number[] = [];
    for (let i = min; i < max; i++) {
      const split = this.emit(L.RX_SPLIT, 0, 0);
      splits.push(split);
      this.patch(split, 1, this.pc);
      this.node(sub);
    }
    for (const s of splits) this.branches(s, this.code[s]![1]!, this.pc, greedy);
  }

  private branches(split: number, body: number, out: number, greedy: boolean): void {
    this.patch(split, 1, greedy ? body : out);
    this.patch(split, 2, greedy ? out : body);
  }

  /** One code point from `ranges`, as UTF-8 bytes. */
  private codePoints(ranges: Range[]): void {
    const ascii: Range[] = [];
    const sequences: Range[][] = [];
    for (const [lo, hi] of ranges) {
      if (lo <= 0x7f) ascii.push([lo, Math.min(hi, 0x7f)]);
      if (hi >= 0x80) sequences.push(...utf8Sequences(Math.max(lo, 0x80), Math.min(hi, MAX_CODE_POINT)));
    }
    const parts: (() => void)[] = [];
    if (ascii.length > 0) parts.push(() => this.byteSet(ascii));
    for (const seq of sequences) parts.push(() => seq.forEach(([lo, hi]) => this.emit(L.RX_BYTE_RANGE, lo, hi)));
    if (parts.length === 0) {
      this.emit(L.RX_FAIL, 0, 0); // an empty class never matches
      return;
    }
    this.alternate(parts);
  }

  private byteSet(ranges: Range[]): void {
    if (ranges.length === 1) {
      this.emit(L.RX_BYTE_RANGE, ranges[0]![0], ranges[0]![1]);
      return;
    }
    const bits = new Uint8Array(32);
    for (const [lo, hi] of ranges) for (let b = lo; b <= hi; b++) bits[b >> 3]! |= 1 << (b & 7);
    const key = Buffer.from(bits).toString("hex");
    let index = this.bitmapIndex.get(key);
    if (index === undefined) {
      index = this.bitmaps.length;
      this.bitmaps.push(bits);
      this.bitmapIndex.set(key, index);
    }
    this.emit(L.RX_BYTE_CLASS, index, 0);
  }
}

const SURROGATE_LO = 0xd800;
const SURROGATE_HI = 0xdfff;

function utf8Length(cp: number): number {
  return cp <= 0x7f ? 1 : cp <= 0x7ff ? 2 : cp <= 0xffff ? 3 : 4;
}

function utf8Bytes(cp: number): number[] {
  return Array.from(Buffer.from(String.fromCodePoint(cp), "utf8"));
}

/**
 * Splits a code point range (>= 0x80) into sequences of byte ranges whose
 * concatenation matches exactly the UTF-8 encodings in the range. A range is
 * split until its ends share an encoded length and every continuation byte
 * spans its full 0x80-0xBF range below the first differing byte.
 */
export function utf8Sequences(lo: number, hi: number): Range[][] {
  const out: Range[][] = [];
  const todo: Range[] = [[lo, hi]];
  while (todo.length > 0) {
    const [s, end] = todo.pop()!;
    let e = end;
    for (;;) {
      if (s > e) break;
      if (s <= SURROGATE_HI && e >= SURROGATE_LO) {
        // Surrogates are not characters; UTF-8 cannot encode them.
        if (e > SURROGATE_HI) todo.push([SURROGATE_HI + 1, e]);
        e = SURROGATE_LO - 1;
        continue;
      }
      const split = [0x7f, 0x7ff, 0xffff].find((max) => s <= max && e > max);
      if (split !== undefined) {
        todo.push([split + 1, e]);
        e = split;
        continue;
      }
      let divided = false;
      for (let i = 1; i < utf8Length(s); i++) {
        const mask = (1 << (6 * i)) - 1;
        if ((s & ~mask) !== (e & ~mask)) {
          if ((s & mask) !== 0) {
            todo.push([(s | mask) + 1, e]);
            e = s | mask;
            divided = true;
            break;
          }
          if ((e & mask) !== mask) {
            todo.push([e & ~mask, e]);
            e = (e & ~mask) - 1;
            divided = true;
            break;
          }
        }
      }
      if (divided) continue;
      const a = utf8Bytes(s);
      const b = utf8Bytes(e);
      out.push(a.map((byte, i) => [byte, b[i]!] as Range));
      break;
    }
  }
  return out;
}
