// The admin listener (default 127.0.0.1:15000). This first cut serves readiness
// and the active config; Envoy's full admin surface is its own milestone.

import { createServer } from "node:http";
import type { Listener } from "../proxy/listener.js";
import type { SnapshotHolder } from "../proxy/snapshot.js";

export interface AdminContext {
  holder: SnapshotHolder;
  stats: { reloadsApplied: number; reloadsRejected: number };
}

const ENDPOINTS: Record<string, string> = {
  "/ready": "200 LIVE when the proxy is serving",
  "/config_dump": "the active snapshot and its version, as JSON",
};

/** The active snapshot: settings, virtual hosts with their routes in match order, clusters. */
function configDump(ctx: AdminContext): object {
  const s = ctx.holder.current;
  const { table, entries, routes, clusters, virtualHosts, settings } = s.config;
  return {
    version: s.version,
    loadedAt: s.createdAt.toISOString(),
    reloads: ctx.stats,
    settings,
    virtualHosts: virtualHosts.map((vh, v) => {
      const { entryStart, entryCount } = table.virtualHosts[v]!;
      const vhostRoutes = [];
      for (let i = entryStart; i < entryStart + entryCount; i++) {
        const entry = table.entries[i]!;
        vhostRoutes.push({
          name: entries[i]!.name,
          virtualService: routes[entry.route]!.virtualService,
          match: { ...entry, route: undefined },
          destinations: table.routes[entry.route]!.destinations.map((d) => ({ cluster: clusters[d.cluster]?.name ?? "(missing: 503 NC)", weight: d.weight })),
        });
      }
      return { ...vh, routes: vhostRoutes };
    }),
    clusters,
  };
}

export function startAdmin(address: string, port: number, ctx: AdminContext): Promise<Listener> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (path === "/ready") {
      res.writeHead(200, { "content-type": "text/plain" }).end("LIVE\n");
    } else if (path === "/config_dump") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(configDump(ctx), null, 2));
    } else if (path === "/") {
      res.writeHead(200, { "content-type": "text/plain" }).end(Object.entries(ENDPOINTS).map(([p, d]) => `${p}: ${d}`).join("\n") + "\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => {
      const a = server.address();
      resolve({
        engine: "node",
        address,
        port: typeof a === "object" && a ? a.port : port,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}
