// A throwaway CA and certificates for TLS tests, made with openssl (Debian's).

import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCa {
  dir: string;
  /** Path of a file in the CA's directory. */
  path(name: string): string;
  /** Issues <file>.pem and <file>.key for the DNS names (the first is the CN), signed by the CA. */
  issue(file: string, names: string[]): void;
}

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { stdio: "ignore" });
}

export function makeCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), "instio-ca-"));
  const path = (name: string): string => join(dir, name);
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "2", "-subj", "/CN=instio test CA");
  return {
    dir,
    path,
    issue(file, names) {
      openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", path(`${file}.key`), "-out", path(`${file}.csr`), "-subj", `/CN=${names[0]}`);
      writeFileSync(path(`${file}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n`);
      openssl("x509", "-req", "-in", path(`${file}.csr`), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", path(`${file}.ext`), "-out", path(`${file}.pem`));
    },
  };
}
