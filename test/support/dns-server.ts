// A tiny authoritative DNS server on UDP for tests: answers A queries from a
// map the test changes while the proxy runs, NXDOMAIN for unknown names, and
// empty answers for other record types.

import { createSocket } from "node:dgram";

export interface FakeDns {
  /** "127.0.0.1:port", for ProxySettings dns.servers. */
  server: string;
  records: Map<string, string[]>;
  queries: number;
  close(): Promise<void>;
}

export async function startFakeDns(records: Record<string, string[]>): Promise<FakeDns> {
  const socket = createSocket("udp4");
  const dns: FakeDns = { server: "", records: new Map(Object.entries(records)), queries: 0, close: () => new Promise((r) => socket.close(() => r())) };
  socket.on("message", (msg, rinfo) => {
    dns.queries++;
    // Question: labels from byte 12, then QTYPE and QCLASS.
    let p = 12;
    const labels: string[] = [];
    while (msg[p]! > 0) {
      labels.push(msg.subarray(p + 1, p + 1 + msg[p]!).toString("ascii"));
      p += msg[p]! + 1;
    }
    const questionEnd = p + 5;
    const qtype = msg.readUInt16BE(p + 1);
    const name = labels.join(".").toLowerCase();
    const addresses = dns.records.get(name);
    const answers = qtype === 1 && addresses ? addresses : [];
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8180 | (addresses ? 0 : 3), 2); // response, recursion available; NXDOMAIN when unknown
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const records = answers.map((ip) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(1, 6); // TTL 1 s
      rr.writeUInt16BE(4, 10);
      ip.split(".").forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
      return rr;
    });
    socket.send(Buffer.concat([header, msg.subarray(12, questionEnd), ...records]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  dns.server = `127.0.0.1:${socket.address().port}`;
  return dns;
}
