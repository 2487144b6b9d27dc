// RE2 syntax → a small regex AST over Unicode code points.
//
// Envoy matches `safe_regex` with Google RE2, so instio accepts RE2's syntax
// and rejects what RE2 rejects (backreferences, lookaround, atomic groups,
// possessive repetition) with the position and the reason, at validation time.
// Matching itself is linear time: host/core/regex/program.ts compiles the AST
// for the Pike VM in assembly/regex.ts.
//
// Supported: literals and escapes (\n \t \r \f \v \a \x41 \x{263a} \Q...\E,
// escaped punctuation), . ^ $ \A \z \b \B, classes with ranges, negation,
// \d \s \w (ASCII, as in RE2) and [[:alpha:]]-style POSIX classes, groups
// (capturing, (?:...), (?P<name>...), (?<name>...)), flags i m s U (inline and
// scoped), * + ? {n} {n,} {n,m} and their lazy forms, alternation.
// Not supported here (rejected with a clear reason): Unicode classes \p{..},
// \C, and case folding beyond ASCII.

export const MAX_CODE_POINT = 0x10ffff;
/** RE2's limit on a counted repetition. */
export const MAX_REPEAT = 1000;

export type Range = [number, number];

export type RegexNode =
  | { type: "empty" }
  /** One code point from a set of sorted, non-overlapping inclusive ranges. */
  | { type: "class"; ranges: Range[] }
  | { type: "concat"; items: RegexNode[] }
  | { type: "alternate"; items: RegexNode[] }
  /** max = -1: unbounded. */
  | { type: "repeat"; sub: RegexNode; min: number; max: number; greedy: boolean }
  /** index: capture group number (1-based), or 0 for a non-capturing group. */
  | { type: "group"; sub: RegexNode; index: number }
  | { type: "assert"; kind: AssertKind };

export type AssertKind = "beginText" | "endText" | "beginLine" | "endLine" | "wordBoundary" | "notWordBoundary";

export interface ParsedRegex {
  root: RegexNode;
  /** Number of capture groups. */
  groups: number;
}

export class RegexSyntaxError extends Error {
  constructor(
    readonly pattern: string,
    /** 0-based index of the offending character in the pattern (in code points). */
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`invalid regex ${JSON.stringify(pattern)} at position ${offset + 1}: ${reason}`);
  }
}

interface Flags {
  caseInsensitive: boolean;
  multiLine: boolean;
  dotAll: boolean;
  ungreedy: boolean;
}

const DIGIT: Range[] = [[0x30, 0x39]];
const SPACE: Range[] = [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]];
const WORD: Range[] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];

const POSIX: Record<string, Range[]> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]],
  alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0x00, 0x7f]],
  blank: [[0x09, 0x09], [0x20, 0x20]],
  cntrl: [[0x00, 0x1f], [0x7f, 0x7f]],
  digit: DIGIT,
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]],
  space: [[0x09, 0x0d], [0x20, 0x20]],
  upper: [[0x41, 0x5a]],
  word: WORD,
  xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

const SIMPLE_ESCAPES: Record<string, number> = { n: 0x0a, t: 0x09, r: 0x0d, f: 0x0c, v: 0x0b, a: 0x07 };

/** Sorts and merges ranges. */
export function normalize(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export function negate(ranges: Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of normalize(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** Adds the other ASCII case of every letter in the ranges. */
function foldAscii(ranges: Range[]): Range[] {
  const extra: Range[] = [];
  for (const [lo, hi] of ranges) {
    const upLo = Math.max(lo, 0x41), upHi = Math.min(hi, 0x5a);
    if (upLo <= upHi) extra.push([upLo + 32, upHi + 32]);
    const lowLo = Math.max(lo, 0x61), lowHi = Math.min(hi, 0x7a);
    if (lowLo <= lowHi) extra.push([lowLo - 32, lowHi - 32]);
  }
  return normalize([...ranges, ...extra]);
}

/** Parses an RE2 pattern; throws RegexSyntaxError. */
export function parseRegex(pattern: string): ParsedRegex {
  return new Parser(pattern).parse();
}

class Parser {
  private readonly chars: string[];
  private pos = 0;
  private groups = 0;

  constructor(private readonly pattern: string) {
    this.chars = Array.from(pattern);
  }

  parse(): ParsedRegex {
    const root = this.alternation({ caseInsensitive: false, multiLine: false, dotAll: false, ungreedy: false }, 0);
    if (this.pos < this.chars.length) throw this.error(this.pos, "unexpected )");
    return { root, groups: this.groups };
  }

  private error(at: number, reason: string): RegexSyntaxError {
    return new RegexSyntaxError(this.pattern, at, reason);
  }

  private peek(ahead = 0): string | undefined {
    return this.chars[this.pos + ahead];
  }

  private lookingAt(s: string): boolean {
    return this.chars.slice(this.pos, this.pos + s.length).join("") === s;
  }

  /** alternation := concat ('|' concat)*; stops at ')' or the end. */
  private alternation(flags: Flags, depth: number): RegexNode {
    const items: RegexNode[] = [];
    const current = { ...flags };
    for (;;) {
      items.push(this.concat(current, depth));
      if (this.peek() !== "|") break;
      this.pos++;
    }
    return items.length === 1 ? items[0]! : { type: "alternate", items };
  }

  /** concat := (atom repetition*)*; an inline flag group changes `flags` for the rest of the enclosing group. */
  private concat(flags: Flags, depth: number): RegexNode {
    const items: RegexNode[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === "|" || c === ")") break;
      const atomAt = this.pos;
      const atom = this.atom(flags, depth);
      if (atom === undefined) continue; // a flag group or an empty \Q\E
      items.push(this.repetitions(atom, atomAt, flags));
    }
    if (items.length === 0) return { type: "empty" };
    return items.length === 1 ? items[0]! : { type: "concat", items };
  }

  private repetitions(atom: RegexNode, atomAt: number, flags: Flags): RegexNode {
    let node = atom;
    let repeated = false;
    for (;;) {
      const opAt = this.pos;
      const op = this.repeatOperator();
      if (!op) return node;
      if (repeated) throw this.error(opAt, `bad repetition operator: ${this.chars.slice(opAt - 1, this.pos).join("")}`);
      let greedy = true;
      if (this.peek() === "?") {
        this.pos++;
        greedy = false;
      }
      if (flags.ungreedy) greedy = !greedy;
      if (node.type === "empty") throw this.error(atomAt, "missing argument to repetition operator");
      node = { type: "repeat", sub: node, min: op.min, max: op.max, greedy };
      repeated = true;
    }
  }

  /** Reads *, +, ?, {n}, {n,}, {n,m} at the cursor; a '{' that is not a valid count is a literal. */
  private repeatOperator(): { min: number; max: number } | undefined {
    const c = this.peek();
    if (c === "*") return this.pos++, { min: 0, max: -1 };
    if (c === "+") return this.pos++, { min: 1, max: -1 };
    if (c === "?") return this.pos++, { min: 0, max: 1 };
    if (c !== "{") return undefined;
    const m = /^\{(\d+)(,(\d*))?\}/.exec(this.chars.slice(this.pos, this.pos + 16).join(""));
    if (!m) return undefined;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === "" ? -1 : Number(m[3]);
    if (min > MAX_REPEAT || max > MAX_REPEAT || (max >= 0 && max < min)) {
      throw this.error(this.pos, `bad repetition operator: ${m[0]} (counts go up to ${MAX_REPEAT}, and min <= max)`);
    }
    this.pos += m[0].length;
    return { min, max };
  }

  private atom(flags: Flags, depth: number): RegexNode | undefined {
    const at = this.pos;
    const c = this.chars[this.pos++]!;
    switch (c) {
      case "(":
        return this.group(flags, depth, at);
      case "[":
        return this.characterClass(flags, at);
      case ".":
        return { type: "class", ranges: flags.dotAll ? [[0, MAX_CODE_POINT]] : negate([[0x0a, 0x0a]]) };
      case "^":
        return { type: "assert", kind: flags.multiLine ? "beginLine" : "beginText" };
      case "$":
        return { type: "assert", kind: flags.multiLine ? "endLine" : "endText" };
      case "*":
      case "+":
      case "?":
        throw this.error(at, `missing argument to repetition operator: ${c}`);
      case "{":
        this.pos--;
        if (this.repeatOperator()) throw this.error(at, "missing argument to repetition operator");
        this.pos++;
        return this.literal(c.codePointAt(0)!, flags);
      case "\\":
        return this.escape(flags, at);
      default:
        return this.literal(c.codePointAt(0)!, flags);
    }
  }

  private literal(cp: number, flags: Flags): RegexNode {
    const ranges: Range[] = [[cp, cp]];
    return { type: "class", ranges: flags.caseInsensitive ? foldAscii(ranges) : ranges };
  }

  private group(flags: Flags, depth: number, at: number): RegexNode | undefined {
    let index = 0;
    let inner = flags;
    if (this.peek() === "?") {
      if (this.lookingAt("?=") || this.lookingAt("?!") || this.lookingAt("?<=") || this.lookingAt("?<!")) {
        throw this.error(at, "lookaround assertions are not supported (RE2 syntax matches in linear time)");
      }
      if (this.lookingAt("?>")) throw this.error(at, "atomic groups are not supported (RE2 syntax)");
      const named = /^\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(this.chars.slice(this.pos, this.pos + 40).join(""));
      if (named) {
        this.pos += named[0].length;
        index = ++this.groups;
      } else {
        this.pos++;
        const parsed = this.flagGroup(flags, at);
        if (parsed.scoped === false) {
          Object.assign(flags, parsed.flags); // (?i) applies to the rest of the enclosing group
          return undefined;
        }
        inner = parsed.flags;
      }
    } else {
      index = ++this.groups;
    }
    const sub = this.alternation(inner, depth + 1);
    if (this.peek() !== ")") throw this.error(at, "missing closing )");
    this.pos++;
    return { type: "group", sub, index };
  }

  /** After "(?": flags like "i", "-s", "im-s", then ")" (inline) or ":" (scoped group). */
  private flagGroup(flags: Flags, at: number): { flags: Flags; scoped: boolean } {
    const next = { ...flags };
    let negated = false;
    let any = false;
    for (;;) {
      const c = this.chars[this.pos++];
      if (c === undefined) throw this.error(at, "missing closing )");
      if (c === ")" || c === ":") {
        if (!any && c === ")") throw this.error(at, "missing flags in (?)");
        if (negated && this.chars[this.pos - 2] === "-") throw this.error(at, "missing flag after -");
        return { flags: next, scoped: c === ":" };
      }
      const value = !negated;
      if (c === "i") next.caseInsensitive = value;
      else if (c === "m") next.multiLine = value;
      else if (c === "s") next.dotAll = value;
      else if (c === "U") next.ungreedy = value;
      else if (c === "-" && !negated) {
        negated = true;
        continue;
      } else {
        throw this.error(this.pos - 1, `invalid or unsupported Perl syntax: (?${this.chars.slice(at + 2, this.pos).join("")}`);
      }
      any = true;
    }
  }

  private escape(flags: Flags, at: number): RegexNode | undefined {
    const c = this.chars[this.pos++];
    if (c === undefined) throw this.error(at, "trailing backslash at end of expression");
    switch (c) {
      case "A":
        return { type: "assert", kind: "beginText" };
      case "z":
        return { type: "assert", kind: "endText" };
      case "b":
        return { type: "assert", kind: "wordBoundary" };
      case "B":
        return { type: "assert", kind: "notWordBoundary" };
      case "Q": {
        const end = this.chars.indexOf("\\", this.pos);
        let stop = this.chars.length;
        for (let i = end; i >= 0 && i < this.chars.length; i = this.chars.indexOf("\\", i + 1)) {
          if (this.chars[i + 1] === "E") {
            stop = i;
            break;
          }
        }
        const text = this.chars.slice(this.pos, stop);
        this.pos = Math.min(stop + 2, this.chars.length);
        if (text.length === 0) return undefined;
        const items = text.map((ch) => this.literal(ch.codePointAt(0)!, flags));
        return items.length === 1 ? items[0]! : { type: "group", sub: { type: "concat", items }, index: 0 };
      }
    }
    const set = this.classEscape(c, at);
    if (set) return { type: "class", ranges: flags.caseInsensitive ? foldAscii(set) : set };
    return this.literal(this.escapedCodePoint(c, at), flags);
  }

  /** \d \D \s \S \w \W, or undefined. */
  private classEscape(c: string, at: number): Range[] | undefined {
    if (c === "d") return DIGIT;
    if (c === "D") return negate(DIGIT);
    if (c === "s") return SPACE;
    if (c === "S") return negate(SPACE);
    if (c === "w") return WORD;
    if (c === "W") return negate(WORD);
    if (c === "p" || c === "P") throw this.error(at, "Unicode character classes (\\p, \\P) are not supported");
    return undefined;
  }

  /** The code point of a single-character escape such as \n, \x41, \x{263a} or \. */
  private escapedCodePoint(c: string, at: number): number {
    if (c in SIMPLE_ESCAPES) return SIMPLE_ESCAPES[c]!;
    if (c === "x") {
      const rest = this.chars.slice(this.pos, this.pos + 12).join("");
      const m = /^\{([0-9A-Fa-f]{1,6})\}/.exec(rest) ?? /^([0-9A-Fa-f]{2})/.exec(rest);
      if (!m) throw this.error(at, "invalid escape sequence: \\x needs two hex digits or {hex}");
      const cp = parseInt(m[1]!, 16);
      if (cp > MAX_CODE_POINT) throw this.error(at, "invalid escape sequence: code point out of range");
      this.pos += m[0].length;
      return cp;
    }
    if (c >= "1" && c <= "9") throw this.error(at, `backreferences are not supported (RE2 syntax): \\${c}`);
    if (c === "C") throw this.error(at, "\\C (any byte) is not supported");
    if (/^[\p{L}\p{N}_]$/u.test(c)) throw this.error(at, `invalid escape sequence: \\${c}`);
    return c.codePointAt(0)!; // escaped punctuation is itself
  }

  private characterClass(flags: Flags, at: number): RegexNode {
    let negated = false;
    if (this.peek() === "^") {
      negated = true;
      this.pos++;
    }
    const ranges: Range[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.error(at, "missing closing ]");
      if (c === "]" && !first) {
        this.pos++;
        break;
      }
      first = false;
      if (c === "[" && this.peek(1) === ":") {
        const m = /^\[:(\^?)([a-z]+):\]/.exec(this.chars.slice(this.pos, this.pos + 12).join(""));
        if (m) {
          const set = POSIX[m[2]!];
          if (!set) throw this.error(this.pos, `invalid character class range: [:${m[2]}:]`);
          ranges.push(...(m[1] ? negate(set) : set));
          this.pos += m[0].length;
          continue;
        }
      }
      const itemAt = this.pos;
      const lo = this.classAtom(ranges);
      if (lo === undefined) continue;
      if (this.peek() === "-" && this.peek(1) !== "]" && this.peek(1) !== undefined) {
        this.pos++;
        const hi = this.classAtom(undefined);
        if (hi === undefined || hi < lo) throw this.error(itemAt, "invalid character class range");
        ranges.push([lo, hi]);
      } else {
        ranges.push([lo, lo]);
      }
    }
    let set = normalize(ranges);
    if (flags.caseInsensitive) set = foldAscii(set);
    if (negated) set = negate(set);
    return { type: "class", ranges: set };
  }

  /** One class member: a code point, or (when `into` is given) a \d-style set added to `into`. */
  private classAtom(into: Range[] | undefined): number | undefined {
    const at = this.pos;
    const c = this.chars[this.pos++]!;
    if (c !== "\\") return c.codePointAt(0)!;
    const e = this.chars[this.pos++];
    if (e === undefined) throw this.error(at, "trailing backslash at end of expression");
    const set = this.classEscape(e, at);
    if (set) {
      if (!into) throw this.error(at, "invalid character class range");
      into.push(...set);
      return undefined;
    }
    if (e === "b") return 0x08; // inside a class \b is backspace
    return this.escapedCodePoint(e, at);
  }
}
