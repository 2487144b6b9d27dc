import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests bind real sockets on port 0; files may run in parallel.
    pool: "forks",
    setupFiles: ["test/support/fast-check-seed.ts"],
  },
});
