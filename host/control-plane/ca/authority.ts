// The mesh's certificate authority, as istiod's: a root it makes itself on
// first start (10 years, kept on disk) or the user's own (Istio's plug-in CA
// files: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem), and workload
// certificates signed for an identity the caller proved: the SPIFFE URI SAN
// spiffe://TRUST_DOMAIN/ns/NS/sa/SA (the CSR's own names are ignored, as
// istiod overwrites them), 24 h by default, 90 days at most.

import { createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { spiffeId, TRUST_DOMAIN } from "../../config/hosts.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** Istio's defaults (pilot/pkg/bootstrap/istio_ca.go, pilot-agent options). */
export const DEFAULT_WORKLOAD_TTL_S = 24 * 3600;
export const MAX_WORKLOAD_TTL_S = 90 * 24 * 3600;
const SELF_SIGNED_ROOT_TTL_S = 3650 * 24 * 3600;

const RSA: RsaHashedKeyGenParams = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
const ECDSA: EcKeyGenParams & { hash: string } = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** Who a certificate is for: a Kubernetes service account in a namespace. */
export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
}


export class CaError extends Error {}

interface SigningKey {
  key: CryptoKey;
  algorithm: RsaHashedKeyGenParams | (EcKeyGenParams & { hash: string });
}

export class CertificateAuthority {
  private constructor(
    readonly trustDomain: string,
    /** The certificate that signs workload certificates (the root itself when self-signed). */
    private readonly signer: x509.X509Certificate,
    private readonly signingKey: SigningKey,
    /** From the signer up to the root, PEM, as every response ends (root last). */
    readonly chain: string[],
  ) {}

  /** The roots workloads trust (root-cert.pem). */
  get rootPem(): string {
    return this.chain.at(-1)!;
  }

  /**
   * The CA in `dir`: the plug-in files when ca-cert.pem is there, else the self-signed root kept there
   * (made on first start).
   */
  static async open(dir: string, trustDomain = TRUST_DOMAIN): Promise<CertificateAuthority> {
    if (existsSync(join(dir, "ca-cert.pem"))) return CertificateAuthority.plugIn(dir, trustDomain);
    const certFile = join(dir, "root-cert.pem");
    const keyFile = join(dir, "root-key.pem");
    if (existsSync(certFile) && existsSync(keyFile)) {
      const cert = new x509.X509Certificate(readFileSync(certFile, "utf8"));
      return new CertificateAuthority(trustDomain, cert, await importKey(readFileSync(keyFile, "utf8"), cert), [cert.toString("pem")]);
    }
    mkdirSync(dir, { recursive: true });
    const keys = await webcrypto.subtle.generateKey(RSA, true, ["sign", "verify"]);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `O=${trustDomain}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + SELF_SIGNED_ROOT_TTL_S * 1000),
      signingAlgorithm: RSA,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    writeFileSync(keyFile, await pkcs8Pem(keys.privateKey), { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    writeFileSync(certFile, cert.toString("pem"));
    return new CertificateAuthority(trustDomain, cert, { key: keys.privateKey, algorithm: RSA }, [cert.toString("pem")]);
  }

  /** Istio's plug-in CA: ca-cert.pem signs with ca-key.pem; cert-chain.pem runs up to root-cert.pem. */
  private static async plugIn(dir: string, trustDomain: string): Promise<CertificateAuthority> {
    const read = (name: string): string => {
      try {
        return readFileSync(join(dir, name), "utf8");
      } catch (err) {
        throw new CaError(`${join(dir, name)}: ${(err as Error).message} (a plug-in CA needs ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem)`);
      }
    };
    const signer = new x509.X509Certificate(read("ca-cert.pem"));
    const key = await importKey(read("ca-key.pem"), signer);
    const chain = pemBlocks(read("cert-chain.pem"));
    const root = read("root-cert.pem").trim();
    if (!(await signer.verify({ publicKey: new x509.X509Certificate(chain.at(-1) ?? root).publicKey, signatureOnly: true })) && chain.length > 0) {
      throw new CaError(`${join(dir, "ca-cert.pem")} is not signed by the last certificate of cert-chain.pem`);
    }
    const full = chain.length > 0 && chain[0]!.replace(/\s/g, "") === signer.toString("pem").replace(/\s/g, "") ? chain : [signer.toString("pem"), ...chain];
    if (full.at(-1)!.replace(/\s/g, "") !== root.replace(/\s/g, "")) full.push(root);
    return new CertificateAuthority(trustDomain, signer, key, full);
  }

  /**
   * Signs `csrPem` for `identity`: the certificate carries the identity's SPIFFE URI as its only name,
   * whatever the CSR asks for. `ttlSeconds` ≤ 0 gives the default; more than 90 days is refused.
   * Returns the chain, leaf first, root last.
   */
  async sign(csrPem: string, identity: WorkloadIdentity, ttlSeconds: number): Promise<string[]> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw new CaError(`the CSR does not parse: ${(err as Error).message}`);
    }
    let verified: boolean;
    try {
      verified = await csr.verify();
    } catch (err) {
      // An algorithm this CA does not know, a key that does not decode: the request's fault, not the CA's.
      throw new CaError(`the CSR's key or signature cannot be checked: ${(err as Error).message}`);
    }
    if (!verified) throw new CaError("the CSR's signature does not verify (it was not made with the key it carries)");
    const ttl = ttlSeconds > 0 ? ttlSeconds : DEFAULT_WORKLOAD_TTL_S;
    if (ttl > MAX_WORKLOAD_TTL_S) throw new CaError(`a validity of ${ttl} s is more than the ${MAX_WORKLOAD_TTL_S} s allowed`);
    const leaf = await this.issue(csr.publicKey, "", ttl, [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.BasicConstraintsExtension(false, undefined, true),
      // An empty subject makes the SAN critical (RFC 5280 4.2.1.6).
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffeId(this.trustDomain, identity) }], true),
    ]).catch((err: Error) => {
      throw new CaError(`no certificate can be made for the CSR's key: ${err.message}`);
    });
    return [leaf.toString("pem"), ...this.chain];
  }

  /** A serving certificate for the control plane itself (15012), by DNS names; its key stays here. */
  async servingCertificate(dnsNames: string[]): Promise<{ cert: string; key: string }> {
    const keys = await webcrypto.subtle.generateKey(ECDSA, true, ["sign", "verify"]);
    const leaf = await this.issue(keys.publicKey, `CN=${dnsNames[0] ?? "istiod"}`, DEFAULT_WORKLOAD_TTL_S, [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: "dns" as const, value }))),
    ]);
    return { cert: [leaf.toString("pem"), ...this.chain.slice(0, -1)].join("\n"), key: await pkcs8Pem(keys.privateKey) };
  }

  /** A leaf signed by this CA: valid from a minute back (clocks a little behind) for `ttlSeconds`, with the usages every leaf has. */
  private async issue(publicKey: CryptoKey | x509.PublicKey, subject: string, ttlSeconds: number, extensions: x509.Extension[]): Promise<x509.X509Certificate> {
    const now = Date.now();
    return x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: this.signer.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + ttlSeconds * 1000),
      signingAlgorithm: this.signingKey.algorithm,
      publicKey,
      signingKey: this.signingKey.key,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.signer.publicKey),
        ...extensions,
      ],
    });
  }
}

/** A private key as PKCS#8 PEM (the form Node's TLS and Istio's files take). */
export async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key)).toString("base64");
  return `-----BEGIN PRIVATE KEY-----\n${der.replace(/(.{64})/g, "$1\n").trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  // Positive, 128 bits of randomness.
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f;
  return bytes.toString("hex");
}

/** The PEM certificates in a text (a chain file), each with its trailing newline. */
export function pemBlocks(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

/** A PEM private key (PKCS#1, SEC1 or PKCS#8) as a WebCrypto signing key of the certificate's algorithm. */
async function importKey(pem: string, cert: x509.X509Certificate): Promise<SigningKey> {
  let der: Buffer;
  let type: string | undefined;
  try {
    const key = createPrivateKey(pem);
    type = key.asymmetricKeyType;
    der = key.export({ type: "pkcs8", format: "der" });
  } catch (err) {
    throw new CaError(`the CA key does not parse: ${(err as Error).message}`);
  }
  const algorithm = type === "rsa" ? RSA : type === "ec" ? ECDSA : undefined;
  if (!algorithm) throw new CaError(`a ${type} CA key is not supported (RSA or ECDSA P-256)`);
  const key = await webcrypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
  // The key must be the certificate's.
  const probe = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: "01", name: "CN=probe", notBefore: new Date(), notAfter: new Date(Date.now() + 60_000), signingAlgorithm: algorithm, keys: { privateKey: key, publicKey: await cert.publicKey.export(algorithm, ["verify"]) } });
  if (!(await probe.verify({ publicKey: cert.publicKey, signatureOnly: true }))) throw new CaError("the CA key is not the CA certificate's key");
  return { key, algorithm };
}
