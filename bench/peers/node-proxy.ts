// The Node peer for the proxy benchmark: http-proxy on node:http with upstream keep-alive.
//   node dist/bench/peers/node-proxy.js LISTEN_PORT UPSTREAM_URL

import { createServer, Agent } from "node:http";
import httpProxy from "http-proxy";

const [port, target] = process.argv.slice(2);
if (!port || !target) throw new Error("usage: node-proxy.js LISTEN_PORT UPSTREAM_URL");
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 256 }), xfwd: true });
proxy.on("error", (_err, _req, res) => {
  if ("writeHead" in res && !res.headersSent) res.writeHead(502).end();
});
createServer((req, res) => proxy.web(req, res)).listen(Number(port), "127.0.0.1");
