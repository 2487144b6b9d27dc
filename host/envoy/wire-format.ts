// Protobuf's wire format for messages made of length-delimited fields (strings,
// bytes, embedded messages), written without protobufjs: the xDS responses
// assembled from cached encodings, route configurations assembled from cached
// virtual hosts, and the metadata exchange's Struct all need no more.

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** A message as its length-delimited fields, in order: [field number, bytes]. */
export function lengthDelimitedFields(fields: readonly (readonly [number, Uint8Array])[]): Buffer {
  let size = 0;
  for (const [field, bytes] of fields) size += varintLength(field * 8 + 2) + varintLength(bytes.length) + bytes.length;
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const [field, bytes] of fields) {
    pos = writeVarint(out, pos, field * 8 + 2);
    pos = writeVarint(out, pos, bytes.length);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}
