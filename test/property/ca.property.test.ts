// Hostile certificate requests. Whatever a caller with a valid token sends as
// its CSR — bytes that are no PEM, a PEM of something else, a valid CSR cut,
// flipped or signed by another key — the CA answers INVALID_ARGUMENT or a
// certificate for the caller's identity only, never an internal error, and
// keeps serving.

import { webcrypto, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../host/control-plane/ca/authority.js";
import { certificateServiceDefinition, ISTIOD_NAME, registerCertificateService, staticTokens, type CertificateRequest, type CertificateResponse } from "../../host/control-plane/ca/ca-service.js";
import { Logger } from "../../host/log.js";
import "../support/fast-check-seed.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

type Client = grpc.Client & { CreateCertificate(req: CertificateRequest, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CertificateResponse) => void): void };

let dir: string;
let server: grpc.Server;
let client: Client;
let validCsr: string;
let otherKeyCsr: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "instio-ca-fuzz-"));
  const ca = await CertificateAuthority.open(dir);
  const serving = await ca.servingCertificate([ISTIOD_NAME]);
  server = new grpc.Server();
  registerCertificateService(server, ca, staticTokens([{ token: "t", namespace: "default", serviceAccount: "fuzz" }]), new Logger("off"), { issued: () => {}, refused: () => {} });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.key), cert_chain: Buffer.from(serving.cert) }], false), (err, p) => (err ? reject(err) : resolve(p))));
  const Ctor = grpc.makeGenericClientConstructor(certificateServiceDefinition(), "IstioCertificateService");
  client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createSsl(readFileSync(join(dir, "root-cert.pem"))), { "grpc.ssl_target_name_override": ISTIOD_NAME }) as unknown as Client;
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  validCsr = (await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=anyone", keys, signingAlgorithm: alg, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: "spiffe://cluster.local/ns/kube-system/sa/admin" }])] })).toString("pem");
  // A CSR whose signature is another key's: the request does not prove possession of its key.
  const other = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const forged = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=forged", keys: { privateKey: other.privateKey, publicKey: keys.publicKey }, signingAlgorithm: alg });
  otherKeyCsr = forged.toString("pem");
});

afterAll(() => {
  client.close();
  server.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

function ask(csr: string): Promise<{ code: number; chain?: string[] }> {
  const md = new grpc.Metadata();
  md.set("authorization", "Bearer t");
  return new Promise((resolve) => client.CreateCertificate({ csr, validity_duration: 0 }, md, { deadline: Date.now() + 10_000 }, (err, res) => resolve(err ? { code: err.code } : { code: 0, chain: res!.cert_chain })));
}

describe("the CA given any CSR", () => {
  it("issues for a valid one the caller's identity only, whatever names it asks for", async () => {
    const r = await ask(validCsr);
    expect(r.code).toBe(0);
    expect(new X509Certificate(r.chain![0]!).subjectAltName).toBe("URI:spiffe://cluster.local/ns/default/sa/fuzz");
    expect((await ask(otherKeyCsr)).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("answers INVALID_ARGUMENT or a certificate for the caller, never an internal error, for mutated and random CSRs", async () => {
    const mutated = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(b).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`),
      fc.nat({ max: 2000 }).map((n) => validCsr.slice(0, n)),
      fc.tuple(fc.nat({ max: 2000 }), fc.constantFrom("A", "/", "=", "-", "\n", "")).map(([i, c]) => validCsr.slice(0, i) + c + validCsr.slice(i + 1)),
      fc.constant(readFileSync(join(dir, "root-cert.pem"), "utf8")),
    );
    await fc.assert(
      fc.asyncProperty(mutated, async (csr) => {
        const r = await ask(csr);
        expect([0, grpc.status.INVALID_ARGUMENT]).toContain(r.code);
        if (r.code === 0) expect(new X509Certificate(r.chain![0]!).subjectAltName).toBe("URI:spiffe://cluster.local/ns/default/sa/fuzz");
      }),
      { numRuns: 150 },
    );
    // Still serving.
    expect((await ask(validCsr)).code).toBe(0);
  });
});
