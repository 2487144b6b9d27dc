// The Proxy-Wasm filters of examples/proxy-wasm/filters, built with the
// published AssemblyScript SDK (@gcoredev/proxy-wasm-sdk-as, AssemblyScript
// 0.28 with the WASI shim, as the SDK asks) into build/proxy-wasm-filters.
// A filter is rebuilt only when its source or the SDK changed.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";
import { packageFile } from "../../host/package-root.js";

export const FILTERS = ["empty", "headers", "deny", "body", "callout", "hostile", "stats"] as const;
export type FilterName = (typeof FILTERS)[number];

const SOURCES = fileURLToPath(packageFile("examples/proxy-wasm/filters"));
const OUT = fileURLToPath(packageFile("build/proxy-wasm-filters"));

/** The filters' .wasm paths, built when missing or stale; one compiler run for all that need it. */
export async function buildFilters(names: readonly FilterName[] = FILTERS): Promise<Record<FilterName, string>> {
  mkdirSync(OUT, { recursive: true });
  const sdk = readFileSync(new URL("node_modules/@gcoredev/proxy-wasm-sdk-as/package.json", packageFile("")));
  const shared = readdirSync(SOURCES).filter((f) => !FILTERS.includes(f.slice(0, -3) as FilterName)).map((f) => readFileSync(join(SOURCES, f)));
  const paths = {} as Record<FilterName, string>;
  for (const name of names) {
    const digest = createHash("sha256").update(sdk).update(Buffer.concat(shared)).update(readFileSync(join(SOURCES, `${name}.ts`))).digest("hex").slice(0, 16);
    const out = join(OUT, `${name}-${digest}.wasm`);
    paths[name] = out;
    if (existsSync(out)) continue;
    const tmp = `${out}.${process.pid}.tmp`;
    const stderr = asc.createMemoryStream();
    const { error } = await asc.main([join(SOURCES, `${name}.ts`), "--config", join(SOURCES, "../asconfig.json"), "--target", "release", "--outFile", tmp], {
      stdout: asc.createMemoryStream(),
      stderr,
      // asc's own file access joins absolute lib paths onto the working directory; these resolve them.
      readFile: (file: string, base: string) => readOrNull(() => readFileSync(resolve(base, file), "utf8")),
      listFiles: (dir: string, base: string) => readOrNull(() => readdirSync(resolve(base, dir)).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))),
    });
    if (error) throw new Error(`building filter ${name}: ${error.message}\n${stderr.toString()}`);
    renameSync(tmp, out); // parallel test files may build the same filter: each writes its own file, the rename is atomic
  }
  return paths;
}

function readOrNull<T>(read: () => T): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}
