// Status lines for the HTTP/1.1 front doors: "200 OK", with node's reason phrases,
// built once per status rather than per response.

import { STATUS_CODES } from "node:http";

const texts = new Map<number, string>();

/** "404 Not Found": the status and its reason phrase ("Unknown" for a code node has none for: the space is required). */
export function statusText(status: number): string {
  let text = texts.get(status);
  if (text === undefined) {
    const reason = STATUS_CODES[status];
    text = `${status} ${reason ?? "Unknown"}`;
    texts.set(status, text);
  }
  return text;
}
