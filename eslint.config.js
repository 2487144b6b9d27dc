// Lint: typescript-eslint's recommended rules, plus the few that guard the hot path.
import tseslint from "typescript-eslint";

/**
 * AssemblyScript's function decorators (`@inline`) are not TypeScript syntax: the route core's
 * sources are linted with them blanked out (same columns, so positions stay right).
 */
const assemblyScript = {
  processors: {
    source: {
      preprocess: (text) => [text.replace(/@(inline|global|lazy|final|unmanaged|external\([^)]*\))(?=\s)/g, (m) => " ".repeat(m.length))],
      postprocess: (messages) => messages.flat(),
      supportsAutofix: false,
    },
  },
};

export default tseslint.config(
  // The example Proxy-Wasm filters are third-party SDK boilerplate in AssemblyScript, built by the tests.
  { ignores: ["node_modules/", "dist/", "build/", "examples/proxy-wasm/filters/"] },
  { files: ["assembly/**/*.ts"], plugins: { assemblyscript: assemblyScript }, processor: "assemblyscript/source" },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-throw-literal": "error",
      eqeqeq: ["error", "smart"],
    },
  },
  // AssemblyScript compares numbers with == (its === is identity, for references).
  { files: ["assembly/**/*.ts"], rules: { eqeqeq: "off" } },
);
