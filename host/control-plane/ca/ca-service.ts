// Istio's certificate API: istio.v1.auth.IstioCertificateService
// CreateCertificate (CSR in, chain out), as istiod serves it on 15012. The
// caller proves who it is with `authorization: Bearer <token>`; it gets a
// certificate for that identity only, never for one it did not prove.
//
// The two messages are written here from the API's field numbers
// (security/v1alpha1/ca.proto: csr = 1, validity_duration = 3; the hidden
// metadata = 4 is left undecoded, as instio honours none of its keys): no
// package on npm ships Istio's protos.

import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { parse as parseYaml } from "yaml";
import { readBounded } from "../../config/files.js";
import type { Logger } from "../../log.js";
import { CaError, type CertificateAuthority, type WorkloadIdentity } from "./authority.js";

/** The name on istiod's serving certificate, which clients check (its CA_ADDR is istiod.istio-system.svc:15012). */
export const ISTIOD_NAME = "istiod.istio-system.svc";

const messages = protobuf.Root.fromJSON({
  nested: {
    IstioCertificateRequest: { fields: { csr: { type: "string", id: 1 }, validity_duration: { type: "int64", id: 3 } } },
    IstioCertificateResponse: { fields: { cert_chain: { rule: "repeated", type: "string", id: 1 } } },
  },
});
const Request = messages.lookupType("IstioCertificateRequest");
const Response = messages.lookupType("IstioCertificateResponse");

export interface CertificateRequest {
  csr: string;
  validity_duration?: string | number;
}

export interface CertificateResponse {
  cert_chain: string[];
}

/** Istio's service, with protobufjs codecs (the control plane and the sidecar's client share it). */
export function certificateServiceDefinition(): grpc.ServiceDefinition {
  return {
    CreateCertificate: {
      path: "/istio.v1.auth.IstioCertificateService/CreateCertificate",
      requestStream: false,
      responseStream: false,
      requestSerialize: (m: CertificateRequest) => Buffer.from(Request.encode(Request.fromObject(m)).finish()),
      requestDeserialize: (b: Buffer) => Request.toObject(Request.decode(b), { longs: String }) as CertificateRequest,
      responseSerialize: (m: CertificateResponse) => Buffer.from(Response.encode(Response.fromObject(m)).finish()),
      responseDeserialize: (b: Buffer) => Response.toObject(Response.decode(b), { arrays: true }) as CertificateResponse,
    },
  };
}

/** Who a bearer token belongs to, or undefined when it proves nothing. */
export type Authenticator = (token: string) => Promise<WorkloadIdentity | undefined>;

/** Tokens issued to workloads up front (the file mode: one per workload, as a bootstrap secret). */
export function staticTokens(tokens: readonly { token: string; namespace: string; serviceAccount: string }[]): Authenticator {
  const byToken = new Map(tokens.map((t) => [t.token, { namespace: t.namespace, serviceAccount: t.serviceAccount }]));
  return async (token) => byToken.get(token);
}

/**
 * staticTokens from a YAML file: `tokens: [{token, namespace, serviceAccount}]`. Read once; a bad file
 * is an error with its path.
 */
export function tokenFile(path: string): Authenticator {
  let doc: unknown;
  try {
    doc = parseYaml(readBounded(path, 1024 * 1024).toString("utf8"));
  } catch (err) {
    throw new CaError(`${path}: ${(err as Error).message}`);
  }
  const tokens = (doc as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(tokens)) throw new CaError(`${path}: expected tokens: [{token, namespace, serviceAccount}, ...]`);
  return staticTokens(tokens.map((t: unknown, i) => {
    const e = t as Record<string, unknown>;
    if (typeof e?.token !== "string" || e.token.length < 16 || typeof e.namespace !== "string" || typeof e.serviceAccount !== "string") {
      throw new CaError(`${path}: tokens[${i}] needs a token (16 characters at least), a namespace and a serviceAccount`);
    }
    return { token: e.token, namespace: e.namespace, serviceAccount: e.serviceAccount };
  }));
}

export interface CaMetrics {
  issued: () => void;
  refused: (reason: "authentication" | "request") => void;
}

export function registerCertificateService(server: grpc.Server, ca: CertificateAuthority, authenticate: Authenticator, log: Logger, metrics: CaMetrics): void {
  server.addService(certificateServiceDefinition(), {
    CreateCertificate: (call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>, done: grpc.sendUnaryData<CertificateResponse>) => {
      void (async () => {
        const header = call.metadata.get("authorization")[0];
        const token = typeof header === "string" && header.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : undefined;
        const identity = token ? await authenticate(token) : undefined;
        if (!identity) {
          metrics.refused("authentication");
          log.warn(`ca: certificate refused to ${call.getPeer()}: ${token ? "the token proves no identity" : "no bearer token"}`);
          return done({ code: grpc.status.UNAUTHENTICATED, details: "request authenticate failure" });
        }
        try {
          const chain = await ca.sign(call.request.csr ?? "", identity, Number(call.request.validity_duration ?? 0));
          metrics.issued();
          log.info(`ca: issued a certificate for ns/${identity.namespace}/sa/${identity.serviceAccount} to ${call.getPeer()}`);
          done(null, { cert_chain: chain });
        } catch (err) {
          if (!(err instanceof CaError)) throw err;
          metrics.refused("request");
          done({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
        }
      })().catch((err: unknown) => {
        log.error(`ca: internal error: ${(err as Error).stack ?? String(err)}`);
        done({ code: grpc.status.INTERNAL, details: "internal error" });
      });
    },
  });
}
