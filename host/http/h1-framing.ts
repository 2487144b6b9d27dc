// HTTP/1.1 message framing shared by instio's server (listener-h1.ts) and
// client (h1-upstream.ts): the states of a message body's parser and the
// chunk-size line (RFC 9112 §7.1).

export const CRLF = Buffer.from("\r\n");
export const CRLFCRLF = Buffer.from("\r\n\r\n");

// Parser states both sides share; each side numbers its own after BODY_STATES_END.
/** Waiting for (or reading) a message head. */
export const HEAD = 0;
/** A content-length body: `remaining` bytes to go. */
export const BODY_LENGTH = 1;
/** A chunked body, before a chunk-size line. */
export const CHUNK_SIZE = 2;
/** Inside a chunk: `remaining` bytes to go. */
export const CHUNK_DATA = 3;
/** After a chunk's data: its CRLF. */
export const CHUNK_DATA_END = 4;
/** After the last chunk: trailer fields, then the final CRLF. */
export const TRAILERS = 5;
export const BODY_STATES_END = 6;

/** A chunk-size line longer than this is malformed (it may carry extensions). */
export const MAX_CHUNK_SIZE_LINE = 1024;

const CHUNK_SIZE_LINE = /^([0-9a-fA-F]{1,12})[\t ]*(;[^\r\n]*)?$/;

/** The size a chunk-size line announces (extensions ignored), or -1 when it is malformed. */
export function chunkSize(line: string): number {
  const m = CHUNK_SIZE_LINE.exec(line);
  return m ? parseInt(m[1]!, 16) : -1;
}
