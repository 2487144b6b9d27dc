// An RE2 pattern as an equivalent JavaScript RegExp, built from the parsed AST
// (so RE2-only syntax such as (?i) groups, \A, \z or \Q..\E translates too).
//
// Not for the request path: RegExp backtracks, so a hostile pattern and input
// can take exponential time. The reference matcher (the tests' oracle) and
// `instio explain` use it; requests go through the route core's Pike VM.

import { parseRegex, type AssertKind, type Range, type RegexNode } from "./syntax.js";

const ASSERTS: Record<AssertKind, string> = {
  beginText: "(?<![\\s\\S])",
  endText: "(?![\\s\\S])",
  beginLine: "(?<![^\\n])",
  endLine: "(?![^\\n])",
  wordBoundary: "\\b",
  notWordBoundary: "\\B",
};

function codePoint(cp: number): string {
  return `\\u{${cp.toString(16)}}`;
}

function classSource(ranges: Range[]): string {
  if (ranges.length === 0) return "[^\\u{0}-\\u{10ffff}]";
  return `[${ranges.map(([lo, hi]) => (lo === hi ? codePoint(lo) : `${codePoint(lo)}-${codePoint(hi)}`)).join("")}]`;
}

function source(n: RegexNode): string {
  switch (n.type) {
    case "empty":
      return "";
    case "class":
      return classSource(n.ranges);
    case "concat":
      return n.items.map(source).join("");
    case "alternate":
      return `(?:${n.items.map(source).join("|")})`;
    case "group":
      return n.index === 0 ? `(?:${source(n.sub)})` : `(${source(n.sub)})`;
    case "assert":
      return ASSERTS[n.kind];
    case "repeat": {
      const count = n.max === -1 ? `{${n.min},}` : `{${n.min},${n.max}}`;
      return `(?:${source(n.sub)})${count}${n.greedy ? "" : "?"}`;
    }
  }
}

/** A RegExp that matches exactly the strings the RE2 pattern matches as a whole (Envoy's full match). */
export function fullMatchRegExp(pattern: string): RegExp {
  return new RegExp(`^(?:${source(parseRegex(pattern).root)})$`, "u");
}
