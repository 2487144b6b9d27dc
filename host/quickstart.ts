// `npm start`: the quickstart mesh on loopback. Demo upstreams stand in for the
// Bookinfo services; the proxy serves examples/quickstart/mesh.yaml and reloads
// it when you edit it.

import { createServer, type Server } from "node:http";
import { fileURLToPath } from "node:url";
import { editableExample, packageFile, selfCommand } from "./package-root.js";
import { loadConfigPath, requireConfig } from "./config/load.js";
import { logDiagnostics } from "./config/watch.js";
import { startProxy } from "./proxy/server.js";

export const QUICKSTART_CONFIG = fileURLToPath(packageFile("examples/quickstart/"));

const DEMO_SERVICES = [
  { service: "reviews", version: "v1", port: 19081 },
  { service: "reviews", version: "v2", port: 19082 },
  { service: "reviews", version: "v3", port: 19083 },
  { service: "ratings", version: "v1", port: 19091 },
];

function startDemoService(service: string, version: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const body = JSON.stringify({ service, version, path: req.url, endUser: req.headers["end-user"] ?? null, requestId: req.headers["x-request-id"] }) + "\n";
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`demo ${service} ${version} cannot listen on 127.0.0.1:${port}: ${err.message}`)));
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

export async function runQuickstart(): Promise<void> {
  const servers = await Promise.all(DEMO_SERVICES.map((s) => startDemoService(s.service, s.version, s.port)));
  const config = editableExample("quickstart");
  const result = loadConfigPath(config);
  logDiagnostics(result.diagnostics, (l) => console.error(l));
  const proxy = await startProxy({
    config: requireConfig(result),
    configPath: config,
    onExit: (code) => {
      for (const s of servers) s.close();
      process.exit(code);
    },
  });
  const out = `http://${proxy.outbound.address}:${proxy.outbound.port}`;
  console.log(`instio quickstart: outbound listener ${out} (${proxy.outbound.engine}), admin http://${proxy.admin.address}:${proxy.admin.port}`);
  console.log(`config: ${config} (edit it: the proxy reloads on save)`);
  console.log(`demo upstreams: ${DEMO_SERVICES.map((s) => `${s.service}-${s.version} 127.0.0.1:${s.port}`).join(", ")}`);
  console.log("\nTry:");
  console.log(`  curl -s -H 'Host: reviews:9080' ${out}/reviews/1                          # 90% v1, 10% v3`);
  console.log(`  curl -s -H 'Host: reviews:9080' -H 'end-user: jason' ${out}/reviews/1     # always v2`);
  console.log(`  for i in $(seq 20); do curl -s -H 'Host: reviews' ${out}/; done | sort | uniq -c`);
  console.log(`  curl -si -H 'Host: example.com' ${out}/                                  # 502: REGISTRY_ONLY`);
  console.log(`  ${selfCommand()} explain --config ${config} 'GET http://reviews:9080/reviews/1' -H 'end-user: jason'`);
  console.log(`  curl -s http://127.0.0.1:15090/stats/prometheus | grep istio_requests_total`);
  console.log("\nCtrl-C to stop.");
  process.on("SIGINT", () => void proxy.lifecycle.quit());
  process.on("SIGTERM", () => void proxy.lifecycle.terminate());
}
