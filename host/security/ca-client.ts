// The sidecar's side of Istio's certificate API: a key made here (it never
// leaves the process), a CSR for it, and CreateCertificate over TLS on the
// control plane's 15012 with the workload's bearer token, as pilot-agent
// asks istiod. The control plane's certificate is verified against the mesh's
// root, under the name istiod's certificate carries.

import { webcrypto } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as x509 from "@peculiar/x509";
import { certificateServiceDefinition, ISTIOD_NAME, type CertificateRequest, type CertificateResponse } from "../control-plane/ca/ca-service.js";
import { pkcs8Pem } from "../control-plane/ca/authority.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Istio's workload keys: RSA 2048 (WORKLOAD_RSA_KEY_SIZE). */
const RSA: RsaHashedKeyGenParams = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };


export interface WorkloadCertificate {
  /** PKCS#8 PEM; made here, never sent. */
  key: string;
  /** Leaf first, root last. */
  chain: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface CaClientOptions {
  /** host:port of the CA (15012). */
  address: string;
  /** The mesh's root, to verify the CA's own certificate. */
  rootPem: string;
  token: string;
  ttlSeconds?: number;
  /** The name the CA's certificate must carry (istiod.istio-system.svc). */
  serverName?: string;
}

export async function requestCertificate(o: CaClientOptions): Promise<WorkloadCertificate> {
  const keys = await webcrypto.subtle.generateKey(RSA, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "O=instio", keys, signingAlgorithm: RSA });
  const Client = grpc.makeGenericClientConstructor(certificateServiceDefinition(), "IstioCertificateService");
  const client = new Client(o.address, grpc.credentials.createSsl(Buffer.from(o.rootPem)), { "grpc.ssl_target_name_override": o.serverName ?? ISTIOD_NAME, "grpc.default_authority": o.serverName ?? ISTIOD_NAME }) as unknown as grpc.Client & {
    CreateCertificate(req: CertificateRequest, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CertificateResponse) => void): void;
  };
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${o.token}`);
  try {
    const response = await new Promise<CertificateResponse>((resolve, reject) =>
      client.CreateCertificate({ csr: csr.toString("pem"), validity_duration: o.ttlSeconds ?? 0 }, md, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    // As pilot-agent: a chain without the root is refused.
    if (response.cert_chain.length < 2) throw new Error(`the CA answered a chain of ${response.cert_chain.length} certificate(s); it must end with the root`);
    const leaf = new x509.X509Certificate(response.cert_chain[0]!);
    return { key: await pkcs8Pem(keys.privateKey), chain: response.cert_chain, notBefore: leaf.notBefore, notAfter: leaf.notAfter };
  } finally {
    client.close();
  }
}
