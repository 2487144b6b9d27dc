// The route core's regex engine (RE2 syntax, Pike VM in assembly/regex.ts)
// against Google's RE2 (re2-wasm) and JavaScript's RegExp on random patterns
// and inputs, plus the guarantees that make it safe on untrusted input.

import fc from "fast-check";
import { RE2 } from "re2-wasm";
import { describe, expect, it } from "vitest";
import { RouteCore } from "../../host/core/route-core.js";
import type { RegexMode } from "../../host/core/regex/program.js";
import { parseRegex, RegexSyntaxError, type RegexNode } from "../../host/core/regex/syntax.js";
import { compilePattern } from "../../host/core/regex/program.js";

function coreFor(patterns: { pattern: string; mode: RegexMode }[]): RouteCore {
  return new RouteCore({ virtualHosts: [], entries: [], routes: [], clusters: [], headerNames: [], hostRegexes: patterns });
}

/** Random patterns in the syntax RE2 and JavaScript share (with the `u` flag). */
const pattern: fc.Arbitrary<string> = fc.letrec<{ alt: string; concat: string; piece: string; atom: string }>((tie) => ({
  alt: fc.oneof({ depthSize: "small", withCrossShrink: true }, tie("concat"), fc.tuple(tie("concat"), tie("concat")).map(([a, b]) => `${a}|${b}`)),
  concat: fc.array(tie("piece"), { minLength: 1, maxLength: 4 }).map((p) => p.join("")),
  piece: fc.tuple(tie("atom"), fc.constantFrom("", "", "*", "+", "?", "{2}", "{1,2}", "{0,}", "*?", "+?", "??", "{1,3}?")).map(([a, q]) => a + q),
  atom: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom("a", "b", "/", "-", "é", "\\.", ".", "[ab]", "[^a]", "[a-c/]", "[é-ë]", "\\d", "\\w", "\\W", "[[:alpha:]]".replace("[[:alpha:]]", "[A-Za-z]")),
    tie("alt").map((a) => `(${a})`),
    tie("alt").map((a) => `(?:${a})`),
  ),
}))
  // Patterns whose program outgrows MAX_PROGRAM_INSTRUCTIONS are refused (a test below checks the
  // limit); drawn here, such a pattern failed the property and its shrinking ran for minutes.
  .alt.filter(compilesWithinLimits);

function compilesWithinLimits(p: string): boolean {
  try {
    compilePattern(p, "fullMatch");
    compilePattern(p, "search");
    return true;
  } catch (err) {
    if ((err as Error).message.startsWith("regex program too large")) return false;
    throw err;
  }
}

const subject = fc.array(fc.constantFrom("a", "b", "c", "/", "-", "1", "é", "A", "."), { maxLength: 12 }).map((c) => c.join(""));
const asciiSubject = fc.array(fc.constantFrom("a", "b", "c", "/", "-", "1"), { maxLength: 12 }).map((c) => c.join(""));

function nullable(n: RegexNode): boolean {
  switch (n.type) {
    case "empty":
    case "assert":
      return true;
    case "class":
      return false;
    case "concat":
      return n.items.every(nullable);
    case "alternate":
      return n.items.some(nullable);
    case "group":
      return nullable(n.sub);
    case "repeat":
      return n.min === 0 || nullable(n.sub);
  }
}

/** A repetition whose body can match empty, inside another repetition. */
function nestedNullableRepeat(n: RegexNode, inRepeat: boolean): boolean {
  switch (n.type) {
    case "repeat":
      return (inRepeat && n.max !== 1 && nullable(n.sub)) || nestedNullableRepeat(n.sub, inRepeat || n.max !== 1);
    case "group":
      return nestedNullableRepeat(n.sub, inRepeat);
    case "concat":
    case "alternate":
      return n.items.some((i) => nestedNullableRepeat(i, inRepeat));
    default:
      return false;
  }
}

function nestedRepeat(n: RegexNode, inRepeat: boolean): boolean {
  switch (n.type) {
    case "repeat":
      return (inRepeat && n.max !== 1) || nestedRepeat(n.sub, inRepeat || n.max !== 1);
    case "group":
      return nestedRepeat(n.sub, inRepeat);
    case "concat":
    case "alternate":
      return n.items.some((i) => nestedRepeat(i, inRepeat));
    default:
      return false;
  }
}

function groupInsideRepeat(n: RegexNode, inRepeat: boolean): boolean {
  switch (n.type) {
    case "group":
      return (n.index > 0 && inRepeat) || groupInsideRepeat(n.sub, inRepeat);
    case "repeat":
      return groupInsideRepeat(n.sub, inRepeat || n.max !== 1);
    case "concat":
    case "alternate":
      return n.items.some((i) => groupInsideRepeat(i, inRepeat));
    default:
      return false;
  }
}

/**
 * Runs `use` with an RE2 object and frees it: re2-wasm has a fixed 16 MiB heap
 * and its objects are not garbage collected.
 */
function withRe2<T>(source: string, flags: string, use: (re: RE2) => T): T {
  const re = new RE2(source, flags);
  try {
    return use(re);
  } finally {
    (re as unknown as { wrapper: { delete(): void } }).wrapper.delete();
  }
}

/** RE2::GlobalReplace over re2-wasm's exec: the oracle for regexReplaceAll. */
function re2ReplaceAll(source: string, text: string, rewrite: (string | number)[]): string | undefined {
  return withRe2(source, "gu", (re) => globalReplace(re, text, rewrite));
}

function globalReplace(re: RE2, text: string, rewrite: (string | number)[]): string | undefined {
  let out = "";
  let p = 0;
  let lastEnd = -1;
  let count = 0;
  while (p <= text.length) {
    re.lastIndex = p;
    const m = re.exec(text);
    if (!m) break;
    const start = m.index;
    const end = start + m[0]!.length;
    out += text.slice(p, start);
    if (start === end && start === lastEnd) {
      out += text.slice(p, p + 1);
      p += 1;
      continue;
    }
    for (const part of rewrite) out += typeof part === "string" ? part : (m[part] ?? "");
    p = end;
    lastEnd = end;
    count++;
  }
  if (count === 0) return undefined;
  return out + text.slice(p);
}

describe("regex engine", () => {
  it("full-matches as RE2 and JavaScript do on random patterns and inputs", () => {
    fc.assert(
      fc.property(pattern, fc.array(subject, { minLength: 1, maxLength: 10 }), (p, inputs) => {
        const core = coreFor([{ pattern: p, mode: "fullMatch" }]);
        const js = new RegExp(`^(?:${p})$`, "u");
        // RegExp backtracks: nested quantifiers can take exponential time even on short inputs.
        const jsSafe = !nestedRepeat(parseRegex(p).root, false);
        withRe2(`^(?:${p})$`, "u", (re2) => {
          for (const s of inputs) {
            const ours = core.regexMatches(0, s);
            expect(ours, `${p} on ${JSON.stringify(s)}`).toBe(re2.test(s));
            if (jsSafe && s.length <= 8) expect(ours, `${p} on ${JSON.stringify(s)} (RegExp)`).toBe(js.test(s));
          }
        });
      }),
      { numRuns: 200 },
    );
  });

  it("finds the same leftmost-first matches and submatches as RE2 (global replace)", () => {
    fc.assert(
      fc.property(pattern, fc.array(asciiSubject, { minLength: 1, maxLength: 6 }), (p, inputs) => {
        const parsed = parseRegex(p);
        // Known divergence (docs/architecture.md): where a repetition that can match empty sits inside another,
        // the search's leftmost-first boundaries can differ from RE2's; whole-value matches (routing) cannot.
        if (nestedNullableRepeat(parsed.root, false)) return;
        const rewrite: (string | number)[] = ["<", 0, ">"];
        // Submatches of groups inside a repetition can differ from RE2 when an
        // iteration may match empty (RE2 special-cases empty loops); the overall
        // match still agrees. Documented in docs/architecture.md.
        if (!groupInsideRepeat(parsed.root, false)) for (let g = 1; g <= parsed.groups; g++) rewrite.push(`${g}:`, g, ";");
        const core = coreFor([{ pattern: p, mode: "search" }]);
        for (const s of inputs) {
          expect(core.regexReplaceAll(0, s, rewrite), `${p} on ${JSON.stringify(s)}`).toBe(re2ReplaceAll(p, s, rewrite));
        }
      }),
      { numRuns: 120 },
    );
  });

  it("handles RE2-only syntax: flags, \\A \\z, named groups, \\Q..\\E, POSIX classes, word boundaries", () => {
    const cases: [string, string, boolean][] = [
      ["(?i)/API/v[0-9]+", "/api/V2", true],
      ["(?i:ab)c", "ABc", true],
      ["(?i:ab)c", "ABC", false],
      ["\\A/x\\z", "/x", true],
      ["(?P<ver>v\\d+)/(?<rest>.*)", "v12/a/b", true],
      ["\\Qa.b*\\E", "a.b*", true],
      ["\\Qa.b*\\E", "axb", false],
      ["[[:digit:]]{3}", "123", true],
      ["[[:^digit:]]+", "abc", true],
      ["\\d{3}", "1234", false],
      ["\\d+$", "123", true],
      ["\\d+$", "a123", false],
      [".*\\bend", "the end", true],
      [".*\\Bend", "theend", true],
      ["(?s).+", "a\nb", true],
      [".+", "a\nb", false],
      ["(?m)a$\\nb", "a\nb", true],
      ["\\x41\\x{263a}", "A\u263a", true],
      ["a{,2}", "a{,2}", true], // not a repetition in RE2: literal braces
      ["(?U)a+", "aaa", true],
    ];
    for (const [p, s, expected] of cases) {
      expect(coreFor([{ pattern: p, mode: "fullMatch" }]).regexMatches(0, s), `${p} on ${JSON.stringify(s)}`).toBe(expected);
      expect(withRe2(`^(?:${p})$`, "u", (re) => re.test(s)), `RE2 itself: ${p}`).toBe(expected);
    }
  });

  it("rewrites with groups as Envoy's regex_rewrite (RE2::GlobalReplace)", () => {
    const core = coreFor([
      { pattern: "^/service/([^/]+)(/.*)$", mode: "search" },
      { pattern: "b*", mode: "search" },
      { pattern: "/", mode: "search" },
    ]);
    expect(core.regexReplaceAll(0, "/service/foo/v1/api", [2, "/instance/", 1])).toBe("/v1/api/instance/foo");
    expect(core.regexReplaceAll(0, "/other", [2])).toBeUndefined();
    expect(core.regexReplaceAll(1, "abc", ["-"])).toBe("-a-c-"); // RE2 skips the empty match after "b"
    expect(core.regexReplaceAll(2, "/a/b/", ["_"])).toBe("_a_b_");
  });

  it("stays linear on patterns that make backtracking engines explode", () => {
    const core = coreFor([
      { pattern: "(a+)+$", mode: "fullMatch" },
      { pattern: "(a|aa)*c", mode: "fullMatch" },
      { pattern: "(x+x+)+y", mode: "search" },
    ]);
    // A backtracking engine needs ~2^n steps here; the test would never finish.
    const as = "a".repeat(50_000);
    expect(core.regexMatches(0, as + "b")).toBe(false);
    expect(core.regexMatches(0, as)).toBe(true);
    expect(core.regexMatches(1, as)).toBe(false);
    expect(core.regexReplaceAll(2, "x".repeat(20_000), ["!"])).toBeUndefined();
  });

  it("rejects what RE2 rejects, with the position and the reason", () => {
    const rejected: [string, RegExp][] = [
      ["(a)\\1", /position 4: backreferences are not supported/],
      ["a(?=b)", /position 2: lookaround assertions are not supported/],
      ["(?<!a)b", /position 1: lookaround/],
      ["(?>a)", /atomic groups/],
      ["a**", /position 3: bad repetition operator: \*\*/],
      ["*a", /position 1: missing argument to repetition operator/],
      ["(a", /position 1: missing closing \)/],
      ["a)", /position 2: unexpected \)/],
      ["[a", /missing closing \]/],
      ["[z-a]", /invalid character class range/],
      ["a{1001}", /bad repetition operator/],
      ["\\q", /invalid escape sequence/],
      ["a\\", /trailing backslash/],
    ];
    for (const [p, reason] of rejected) {
      expect(() => parseRegex(p), p).toThrow(RegexSyntaxError);
      expect(() => parseRegex(p), p).toThrow(reason);
      expect(() => withRe2(p, "u", () => undefined), `RE2 rejects ${p} too`).toThrow();
    }
    // Accepted by RE2 but not by instio (Unicode tables are not built in): a clear error, not a silent mismatch.
    expect(() => parseRegex("\\pL")).toThrow(/Unicode character classes/);
    expect(() => compilePattern("((a{100}){100}){100}", "fullMatch")).toThrow(/regex program too large/);
  });
});
