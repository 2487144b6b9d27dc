// The single binary's entry (Node's single executable application): unpacks
// the assets the binary carries — the route core's Wasm, Envoy's protos, the
// native addons, the worker threads' bundles, the examples — into a private
// directory named by their digest (made once, reused by later starts of the
// same build), points instio at it (INSTIO_SEA_ROOT, which worker threads
// inherit), and runs the command line. Native addons cannot load from memory:
// they are loaded from there with process.dlopen, through createRequire.

import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { assetManifest, getAsset, isSea } from "./packaging/sea-assets.js";

function unpack(): string {
  const { digest, files: keys } = assetManifest();
  const base = process.env.INSTIO_DATA_DIR ?? join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `instio-${process.getuid?.() ?? "user"}`);
  const root = join(base, digest.slice(0, 16));
  mkdirSync(base, { recursive: true, mode: 0o700 });
  // Code is loaded from here: a directory someone else owns (a shared /tmp) is refused, not trusted.
  const owner = statSync(base).uid;
  if (process.getuid && owner !== process.getuid() && owner !== 0) throw new Error(`instio: ${base} belongs to user ${owner}: the binary will not load code from it; set INSTIO_DATA_DIR to a directory of your own`);
  if (existsSync(join(root, ".complete"))) return root;
  // (A directory made for us, such as a pod's emptyDir, may not be ours to chmod; what goes inside is 0700 anyway.)
  if (owner === process.getuid?.()) chmodSync(base, 0o700);
  // Written beside, then renamed into place: two processes starting at once never see half a directory.
  const staging = `${root}.${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  for (const key of keys) {
    const file = join(staging, key);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, new Uint8Array(getAsset(key)), { mode: key.endsWith(".node") ? 0o700 : 0o600 });
  }
  // The workers' bundles are CommonJS, whatever a package.json further up says.
  writeFileSync(join(staging, "package.json"), '{"type":"commonjs"}\n');
  writeFileSync(join(staging, ".complete"), "");
  try {
    renameSync(staging, root);
  } catch {
    rmSync(staging, { recursive: true, force: true }); // another start won the race
  }
  return root;
}

if (isSea()) {
  try {
    process.env.INSTIO_SEA_ROOT = unpack();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
}
void import("./cli.js");
