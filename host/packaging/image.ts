// `npm run build:image`: a distroless-style OCI image of the single binary,
// built by this script without a Docker daemon. One layer holds dist/instio
// (built first when missing), the shared libraries it and its native addons
// link (found with ldd), the CA bundle, /etc/passwd and /etc/group naming
// UID/GID 1337, and the directories it writes (/tmp, /var/lib/instio): no
// shell, no package manager. Written twice:
//   dist/image/oci/        an OCI image layout (index.json, blobs/sha256/…),
//                          which skopeo and umoci read;
//   dist/image/instio.tar  a `docker save` tarball, which docker load and
//                          podman load accept.
// Reproducible: every timestamp is SOURCE_DATE_EPOCH (0 by default), owners
// and modes are fixed, entries sorted, gzip without a name or time, so the
// same inputs give the same digests.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { packageFile } from "../package-root.js";
import { gzipSync } from "node:zlib";
import { VERSION } from "../version.js";

const ROOT = fileURLToPath(packageFile(""));
const OUT = join(ROOT, "dist", "image");
const BINARY = join(ROOT, "dist", "instio");
const PROXY_UID = 1337;
const EPOCH = Number(process.env.SOURCE_DATE_EPOCH ?? 0);
/** Istio's ports: admin, outbound, inbound, xDS, xDS+CA over TLS, monitoring, webhook, agent status, health, Envoy metrics. */
export const IMAGE_PORTS = [15000, 15001, 15006, 15010, 15012, 15014, 15017, 15020, 15021, 15090];
const SOURCE = process.env.INSTIO_SOURCE_URL ?? "https://github.com/instio/instio";

interface Entry {
  path: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  target?: string;
}

/** One ustar header block (512 bytes) for `e`, with a long name split into prefix/name as ustar allows. */
function header(e: Entry): Buffer {
  const h = Buffer.alloc(512);
  let name = e.path + (e.type === "dir" ? "/" : "");
  let prefix = "";
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf("/", name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
    if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) throw new Error(`path too long for ustar: ${e.path}`);
  }
  const octal = (value: number, width: number): string => value.toString(8).padStart(width - 1, "0") + "\0";
  h.write(name, 0, 100, "utf8");
  h.write(octal(e.mode, 8), 100, 8, "ascii");
  h.write(octal(e.uid, 8), 108, 8, "ascii");
  h.write(octal(e.gid, 8), 116, 8, "ascii");
  h.write(octal(e.type === "file" ? e.data!.length : 0, 12), 124, 12, "ascii");
  h.write(octal(EPOCH, 12), 136, 12, "ascii");
  h.write(e.type === "file" ? "0" : e.type === "dir" ? "5" : "2", 156, 1, "ascii");
  if (e.target) h.write(e.target, 157, 100, "utf8");
  h.write("ustar\u000000", 257, 8, "ascii");
  h.write(prefix, 345, 155, "utf8");
  h.fill(" ", 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(octal(sum, 7) + " ", 148, 8, "ascii");
  return h;
}

/** A tar of `entries` (parents first, sorted), as bytes. */
export function tarball(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    parts.push(header(e));
    if (e.type === "file") {
      parts.push(e.data!);
      const pad = (512 - (e.data!.length % 512)) % 512;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The shared libraries `files` link, by ldd: each library's real file at the path the loader looks in. */
function sharedLibraries(files: string[]): Map<string, string> {
  const libs = new Map<string, string>();
  for (const file of files) {
    for (const line of execFileSync("ldd", [file], { encoding: "utf8" }).split("\n")) {
      const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
      if (m) libs.set(m[1]!, realpathSync(m[1]!));
    }
  }
  return libs;
}

/** The image's root filesystem. */
function rootfs(binary: string): Entry[] {
  const entries = new Map<string, Entry>();
  const dir = (path: string, mode = 0o755, owner = 0): void => {
    const parts = path.split("/");
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      if (!entries.has(p)) entries.set(p, { path: p, type: "dir", mode: i === parts.length ? mode : 0o755, uid: i === parts.length ? owner : 0, gid: i === parts.length ? owner : 0 });
    }
  };
  const file = (path: string, data: Buffer, mode = 0o644): void => {
    dir(path.slice(0, path.lastIndexOf("/")));
    entries.set(path, { path, type: "file", mode, uid: 0, gid: 0, data });
  };
  file("usr/local/bin/instio", readFileSync(binary), 0o755);
  const addons = [join(ROOT, "native/build/Release/original_dst.node"), join(ROOT, "node_modules/uWebSockets.js/binaries", `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`)];
  for (const [path, real] of sharedLibraries([process.execPath, ...addons])) file(path.slice(1), readFileSync(real), 0o755);
  file("etc/ssl/certs/ca-certificates.crt", readFileSync("/etc/ssl/certs/ca-certificates.crt"));
  file("etc/passwd", Buffer.from(`root:x:0:0:root:/root:/sbin/nologin\ninstio:x:${PROXY_UID}:${PROXY_UID}:instio:/var/lib/instio:/sbin/nologin\n`));
  file("etc/group", Buffer.from(`root:x:0:\ninstio:x:${PROXY_UID}:\n`));
  file("etc/nsswitch.conf", Buffer.from("hosts: files dns\n"));
  dir("tmp", 0o1777);
  dir("var/lib/instio", 0o755, PROXY_UID);
  return [...entries.values()];
}

const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");

function blob(dir: string, data: Buffer | string): { digest: string; size: number } {
  const hex = sha256(data);
  writeFileSync(join(dir, "blobs", "sha256", hex), data);
  return { digest: `sha256:${hex}`, size: Buffer.byteLength(data) };
}

export function buildImage(): { manifestDigest: string; ociDir: string; tarball: string } {
  if (!existsSync(BINARY)) execFileSync(process.execPath, [join(ROOT, "dist/host/packaging/binary.js")], { stdio: "inherit" });
  rmSync(OUT, { recursive: true, force: true });
  const oci = join(OUT, "oci");
  mkdirSync(join(oci, "blobs", "sha256"), { recursive: true });
  const layer = tarball(rootfs(BINARY));
  const gz = gzipSync(layer); // Node's gzip header carries no name and a zero time: the same bytes every time
  const created = new Date(EPOCH * 1000).toISOString().replace(".000Z", "Z");
  const config = JSON.stringify({
    created,
    architecture: process.arch === "x64" ? "amd64" : process.arch,
    os: "linux",
    config: {
      User: `${PROXY_UID}:${PROXY_UID}`,
      Entrypoint: ["/usr/local/bin/instio"],
      Cmd: ["--help"],
      Env: ["PATH=/usr/local/bin", "INSTIO_DATA_DIR=/var/lib/instio", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
      WorkingDir: "/var/lib/instio",
      ExposedPorts: Object.fromEntries(IMAGE_PORTS.map((p) => [`${p}/tcp`, {}])),
      Labels: { "org.opencontainers.image.title": "instio", "org.opencontainers.image.version": VERSION, "org.opencontainers.image.source": SOURCE, "org.opencontainers.image.licenses": "Apache-2.0" },
    },
    rootfs: { type: "layers", diff_ids: [`sha256:${sha256(layer)}`] },
    history: [{ created, created_by: "npm run build:image (host/packaging/image.ts)" }],
  });
  const layerBlob = blob(oci, gz);
  const configBlob = blob(oci, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layerBlob }],
  });
  const manifestBlob = blob(oci, manifest);
  writeFileSync(join(oci, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(oci, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifestBlob, annotations: { "org.opencontainers.image.ref.name": VERSION } }] }));
  // docker save's layout: the config, each layer as an uncompressed tar, and manifest.json naming the tag.
  const configHex = configBlob.digest.slice("sha256:".length);
  const layerHex = sha256(layer);
  const saved = tarball([
    { path: `${configHex}.json`, type: "file", mode: 0o644, uid: 0, gid: 0, data: Buffer.from(config) },
    { path: layerHex, type: "dir", mode: 0o755, uid: 0, gid: 0 },
    { path: `${layerHex}/layer.tar`, type: "file", mode: 0o644, uid: 0, gid: 0, data: layer },
    { path: "manifest.json", type: "file", mode: 0o644, uid: 0, gid: 0, data: Buffer.from(JSON.stringify([{ Config: `${configHex}.json`, RepoTags: [`instio:${VERSION}`], Layers: [`${layerHex}/layer.tar`] }])) },
    { path: "repositories", type: "file", mode: 0o644, uid: 0, gid: 0, data: Buffer.from(JSON.stringify({ instio: { [VERSION]: layerHex } })) },
  ]);
  const tar = join(OUT, "instio.tar");
  writeFileSync(tar, saved);
  return { manifestDigest: manifestBlob.digest, ociDir: oci, tarball: tar };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const built = buildImage();
  process.stdout.write(`dist/image/oci (instio:${VERSION}, manifest ${built.manifestDigest}) and dist/image/instio.tar (docker load / podman load)\n`);
}
