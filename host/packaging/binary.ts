// `npm run build:binary`: dist/instio, a Node 20 single executable
// application. esbuild bundles the command line (and each worker thread's
// script) into CommonJS; the bundle, the route core's Wasm, Envoy's protos as
// JSON, the native addons (uWebSockets.js for this platform, the
// original-destination addon), the examples and package.json go into the SEA
// blob as assets; postject injects the blob into a copy of this Node binary.
// At start, sea-main.ts unpacks the assets to a private directory.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { packageFile } from "../package-root.js";
import { build, type BuildOptions } from "esbuild";
import { MANIFEST } from "./sea-assets.js";

const ROOT = fileURLToPath(packageFile(""));
const OUT = join(ROOT, "dist", "sea");
const BINARY = join(ROOT, "dist", "instio");
/** The fuse Node's binary carries, which postject flips (Node's SEA documentation). */
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** import.meta.url in a CommonJS bundle: the file itself (a worker's script), or the binary (the main script). */
const META_URL = `var __instioMetaUrl = require("node:url").pathToFileURL(typeof __filename === "string" && __filename !== "" ? __filename : process.execPath).href;`;

const common: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  define: { "import.meta.url": "__instioMetaUrl" },
  banner: { js: META_URL },
  // uWebSockets.js is loaded from its unpacked native binary (listener-uws.ts), never from node_modules.
  // binaryen (Proxy-Wasm instrumentation) is an ES module with top-level await: an asset, imported at run time.
  external: ["uWebSockets.js", "binaryen"],
  plugins: [
    {
      // node-fetch probes for the optional "encoding" module in a try/catch; a single binary's main script may only
      // require Node's built-in modules (Node warns at every start): bundle it as the missing module it is.
      name: "optional-modules-missing",
      setup(b) {
        b.onResolve({ filter: /^encoding$/ }, (args) => ({ path: args.path, namespace: "missing" }));
        b.onLoad({ filter: /.*/, namespace: "missing" }, (args) => ({ contents: `throw new Error("${args.path} is not bundled");`, loader: "js" }));
      },
    },
    {
      // re2-wasm (the gRPC xDS client's regex engine, which the mesh quickstart runs) reads re2.wasm beside its script.
      name: "re2-wasm-beside-the-assets",
      setup(b) {
        b.onLoad({ filter: /re2-wasm[\\/]build[\\/]wasm[\\/]re2\.js$/ }, (args) => ({
          contents: readFileSync(args.path, "utf8").replace("scriptDirectory = __dirname + '/';", "scriptDirectory = require('node:path').join(process.env.INSTIO_SEA_ROOT || __dirname, 're2') + '/';"),
          loader: "js",
        }));
      },
    },
    {
      // @grpc/grpc-js-xds (the mesh quickstart's proxyless clients) loads Envoy's .proto files from its deps/ folder.
      name: "grpc-js-xds-protos-beside-the-assets",
      setup(b) {
        b.onLoad({ filter: /@grpc[\\/]grpc-js-xds[\\/]build[\\/]src[\\/].*\.js$/ }, (args) => ({
          contents: readFileSync(args.path, "utf8").replace(/__dirname \+ '((?:\/\.\.)+)\/deps\//g, (_all, up: string) => `(process.env.INSTIO_SEA_ROOT ? process.env.INSTIO_SEA_ROOT + '/grpc-js-xds/deps/' : __dirname + '${up}/deps/') + '`),
          loader: "js",
        }));
      },
    },
  ],
  logLevel: "warning",
  legalComments: "none",
  // Smaller source to read and keep: the binary parses the whole bundle where node loads modules as they are imported.
  minify: true,
  keepNames: true,
};

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

async function main(): Promise<void> {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(join(OUT, "workers"), { recursive: true });
  await build({ ...common, entryPoints: [join(ROOT, "dist/host/sea-main.js")], outfile: join(OUT, "instio.cjs") });
  for (const [entry, name] of [["dist/host/config/load-worker.js", "load-worker.js"], ["dist/host/xds/translate-worker.js", "translate-worker.js"], ["dist/host/proxy/serving-worker.js", "serving-worker.js"]]) {
    await build({ ...common, entryPoints: [join(ROOT, entry!)], outfile: join(OUT, "workers", name!) });
  }
  const uws = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const assets: Record<string, string> = {
    "build/route-core.wasm": join(ROOT, "build/route-core.wasm"),
    "build/envoy-protos.json": join(ROOT, "build/envoy-protos.json"),
    "native/build/Release/original_dst.node": join(ROOT, "native/build/Release/original_dst.node"),
    [`uws/${uws}`]: join(ROOT, "node_modules/uWebSockets.js/binaries", uws),
    "workers/load-worker.js": join(OUT, "workers/load-worker.js"),
    "workers/translate-worker.js": join(OUT, "workers/translate-worker.js"),
    "workers/serving-worker.js": join(OUT, "workers/serving-worker.js"),
    "package.json": join(ROOT, "package.json"),
    "re2/re2.wasm": join(ROOT, "node_modules/re2-wasm/build/wasm/re2.wasm"),
    "binaryen/index.js": join(ROOT, "node_modules/binaryen/index.js"),
    "binaryen/package.json": join(ROOT, "node_modules/binaryen/package.json"),
    "build/route-filter.wasm": join(ROOT, "build/route-filter.wasm"),
  };
  const xdsDeps = join(ROOT, "node_modules/@grpc/grpc-js-xds/deps");
  for (const file of filesUnder(xdsDeps).filter((f) => f.endsWith(".proto"))) assets[`grpc-js-xds/deps/${relative(xdsDeps, file)}`] = file;
  for (const example of ["quickstart", "mesh-quickstart"]) {
    for (const file of filesUnder(join(ROOT, "examples", example))) assets[relative(ROOT, file)] = file;
  }
  // The manifest names every asset and their digest (the unpacked directory's name: same build, same directory).
  const digest = createHash("sha256");
  const files = Object.keys(assets).sort();
  for (const key of files) digest.update(key).update(readFileSync(assets[key]!));
  const manifest = join(OUT, MANIFEST);
  writeFileSync(manifest, JSON.stringify({ digest: digest.digest("hex"), files }));
  assets[MANIFEST] = manifest;
  const config = join(OUT, "sea-config.json");
  writeFileSync(config, JSON.stringify({ main: join(OUT, "instio.cjs"), output: join(OUT, "instio.blob"), disableExperimentalSEAWarning: true, assets }, null, 2));
  execFileSync(process.execPath, ["--experimental-sea-config", config], { stdio: "inherit" });
  rmSync(BINARY, { force: true });
  copyFileSync(process.execPath, BINARY);
  chmodSync(BINARY, 0o755);
  execFileSync(process.execPath, [join(ROOT, "node_modules/postject/dist/cli.js"), BINARY, "NODE_SEA_BLOB", join(OUT, "instio.blob"), "--sentinel-fuse", FUSE], { stdio: ["ignore", "ignore", "inherit"] });
  process.stdout.write(`dist/instio: ${(statSync(BINARY).size / 1024 / 1024).toFixed(1)} MiB (Node ${process.version}, ${process.platform}-${process.arch})\n`);
}

void main();
