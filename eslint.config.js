// Lint: typescript-eslint's recommended rules, plus the few that guard the hot path.
import tseslint from "typescript-eslint";

export default tseslint.config(
  // AssemblyScript sources (the route core, the example Proxy-Wasm filters) are not TypeScript to lint.
  { ignores: ["node_modules/", "dist/", "build/", "assembly/**/*.ts", "!assembly/layout.ts", "examples/proxy-wasm/filters/"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-throw-literal": "error",
      eqeqeq: ["error", "smart"],
    },
  },
);
