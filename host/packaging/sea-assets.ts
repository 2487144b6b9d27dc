// node:sea, where it exists: Node 20's single-executable API (isSea, getAsset).
// Outside a single binary isSea() is false and nothing else is called.

import { createRequire } from "node:module";

interface Sea {
  isSea(): boolean;
  getAsset(key: string): ArrayBuffer;
}

const sea: Sea | undefined = (() => {
  try {
    return createRequire(import.meta.url)("node:sea") as Sea;
  } catch {
    return undefined;
  }
})();

export const isSea = (): boolean => sea?.isSea() === true;
export const getAsset = (key: string): ArrayBuffer => sea!.getAsset(key);

/** What the build stored (Node 20 has no getAssetKeys): the files' keys and their digest, in the manifest asset. */
export interface AssetManifest {
  digest: string;
  files: string[];
}

export function assetManifest(): AssetManifest {
  return JSON.parse(Buffer.from(getAsset(MANIFEST)).toString("utf8")) as AssetManifest;
}

export const MANIFEST = "assets.json";
