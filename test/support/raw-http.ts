// Raw HTTP/1.1 over a socket, for requests no well-behaved client would send.

import { connect } from "node:net";

/**
 * Writes `raw` (a string, or parts written one after another) and collects
 * what comes back until the server closes or `waitMs` passes.
 */
export function rawExchange(port: number, raw: string | Buffer | (string | Buffer)[], waitMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      for (const part of Array.isArray(raw) ? raw : [raw]) s.write(part);
    });
    let data = "";
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on("data", (c) => (data += c.toString("latin1")));
    s.on("close", () => {
      clearTimeout(timer);
      resolve(data);
    });
    s.on("error", () => {});
  });
}

/** Writes `raw` and resets the connection at once, without reading. */
export function sendAndAbort(port: number, raw: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      s.write(raw, () => s.resetAndDestroy());
    });
    s.on("error", () => {});
    s.on("close", () => resolve());
  });
}

/** The status codes of the HTTP/1.1 responses in `text`, in order. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
}
