// The sidecar's workload certificate, kept fresh as pilot-agent keeps Envoy's:
// from the control plane's CA (a key made here, a CSR, the bearer token) or
// from files (Istio's /etc/certs layout: cert-chain.pem, key.pem,
// root-cert.pem). It is renewed at Istio's grace ratio (half its life, ± 1 %
// jitter); a renewal that fails is retried with backoff, and a certificate
// that expires before one succeeds is an error in the logs, the metrics and
// readiness.

import { X509Certificate } from "node:crypto";
import { MAX_PEM_BYTES, readBounded } from "../config/files.js";
import type { Logger } from "../log.js";
import { requestCertificate, type CaClientOptions, type WorkloadCertificate } from "./ca-client.js";
import { pemBlocks } from "../control-plane/ca/authority.js";

/** Istio's SECRET_GRACE_PERIOD_RATIO and its jitter. */
const GRACE_RATIO = 0.5;
const GRACE_JITTER = 0.01;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;

export type CertificateSource = { kind: "ca"; ca: Omit<CaClientOptions, "token">; tokenFile: string } | { kind: "files"; dir: string };

export interface CertificateEvents {
  /** A new certificate is in use (the first one, and each renewal). */
  renewed(cert: WorkloadCertificate): void;
  /** Set while the certificate in use has expired (readiness fails), cleared when a valid one arrives. */
  expired(problem: string | undefined): void;
  /** A renewal failed (it is retried). */
  failed(): void;
}

/** When to renew: `expire − ratio′ × (expire − created)`, ratio′ = 0.5 ± 0.01 (pilot-agent's secretcache rotateTime). */
export function renewAt(cert: { notBefore: Date; notAfter: Date }, random = Math.random()): number {
  const ratio = Math.min(1, Math.max(0, GRACE_RATIO + (random * 2 - 1) * GRACE_JITTER));
  const created = cert.notBefore.getTime();
  const expires = cert.notAfter.getTime();
  return expires - ratio * (expires - created);
}

function readFiles(dir: string): WorkloadCertificate {
  const read = (name: string): string => readBounded(`${dir}/${name}`, MAX_PEM_BYTES).toString("utf8");
  const chain = pemBlocks(read("cert-chain.pem"));
  const root = read("root-cert.pem");
  if (chain.length === 0) throw new Error(`${dir}/cert-chain.pem holds no certificate`);
  const leaf = new X509Certificate(chain[0]!);
  const key = read("key.pem");
  return { key, chain: [...chain, root], notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
}

export class WorkloadCertificates {
  current: WorkloadCertificate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;

  constructor(
    private readonly source: CertificateSource,
    private readonly events: CertificateEvents,
    private readonly log: Logger,
  ) {}

  /** Fetches the first certificate (retrying until it comes, in the background after the first failure). */
  async start(): Promise<void> {
    await this.renew();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiryTimer);
  }

  private async fetch(): Promise<WorkloadCertificate> {
    if (this.source.kind === "files") return readFiles(this.source.dir);
    const token = readBounded(this.source.tokenFile, 64 * 1024).toString("utf8").trim();
    return requestCertificate({ ...this.source.ca, token });
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    try {
      const cert = await this.fetch();
      if (cert.notAfter.getTime() <= Date.now()) throw new Error(`the certificate expired at ${cert.notAfter.toISOString()}`);
      this.failures = 0;
      this.current = cert;
      this.events.renewed(cert);
      this.events.expired(undefined);
      clearTimeout(this.expiryTimer);
      this.expiryTimer = setTimeout(() => this.onExpired(), Math.min(2 ** 31 - 1, cert.notAfter.getTime() - Date.now()));
      this.expiryTimer.unref();
      const at = renewAt(cert);
      this.log.info(`certificates: ${new X509Certificate(cert.chain[0]!).subjectAltName ?? "a certificate"} valid until ${cert.notAfter.toISOString()}, renewed at ${new Date(at).toISOString()}`);
      this.schedule(Math.max(0, at - Date.now()));
    } catch (err) {
      this.failures++;
      this.events.failed();
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
      this.log.error(`certificates: renewal failed (${(err as Error).message}); retrying in ${delay} ms${this.current ? `, the current one is valid until ${this.current.notAfter.toISOString()}` : ""}`);
      this.schedule(delay);
    }
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renew(), Math.min(2 ** 31 - 1, ms));
    this.timer.unref();
  }

  private onExpired(): void {
    const problem = `the workload certificate expired at ${this.current?.notAfter.toISOString()} and could not be renewed`;
    this.log.error(`certificates: ${problem}`);
    this.events.expired(problem);
  }
}
