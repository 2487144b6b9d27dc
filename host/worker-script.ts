// Where a worker thread's script is: beside the module that starts it once
// built; from dist/ when that module runs as TypeScript (the tests run the
// sources, workers need JavaScript), or unpacked by the single binary.

import { packageFile, seaRoot } from "./package-root.js";

export function workerScript(moduleUrl: string, script: string): URL {
  // The single binary carries each worker as a bundle of its own, unpacked beside its other assets.
  if (seaRoot()) return packageFile(`workers/${script}`);
  if (!moduleUrl.endsWith(".ts")) return new URL(`./${script}`, moduleUrl);
  const path = new URL(moduleUrl).pathname;
  // host/config/watch.ts → dist/host/config/load-worker.js
  const folder = path.slice(path.lastIndexOf("/host/") + "/host/".length, path.lastIndexOf("/") + 1);
  const up = "../".repeat(folder.split("/").length);
  return new URL(`${up}dist/host/${folder}${script}`, moduleUrl);
}
