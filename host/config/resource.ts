// The pieces of the config model that every resource adapter shares (model.ts,
// and the Gateway and Sidecar adapters, which model.ts imports in turn).

import type { Location } from "./diagnostics.js";

export type OutboundTrafficPolicy = "ALLOW_ANY" | "REGISTRY_ONLY";

export interface ResourceMeta {
  kind: string;
  name: string;
  namespace: string;
  exportTo: string[];
  source: Location;
}

export interface TlsSettings {
  certFile: string;
  keyFile: string;
  /** Client certificates are required and verified against this CA (a MUTUAL Gateway server). */
  clientCaFile?: string;
  /** Certificates chosen by SNI: exact or "*.example.com" names. */
  sni: { hosts: string[]; certFile: string; keyFile: string }[];
}
