// Where instio's own files are (the route core's Wasm, native addons,
// package.json), whether it runs from host/ (vitest) or dist/host/ (compiled).
// This module sits directly in host/, so the root is one or two levels up.

export function packageFile(relative: string): URL {
  const here = new URL(".", import.meta.url);
  return new URL(relative, here.pathname.includes("/dist/") ? new URL("../../", here) : new URL("../", here));
}
