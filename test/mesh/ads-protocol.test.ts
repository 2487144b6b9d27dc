// The ADS protocol as xds_protocol specifies it, driven by a bare client that
// sends exactly what a test says: versions and nonces per type, ACK and NACK,
// stale nonces, remembered subscriptions, full-state deletion (state of the
// world), and subscribe / unsubscribe / removed_resources / initial versions (delta).

import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, unpackAny, type AnyMessage } from "../../host/envoy/protos.js";
import { adsNode, openAds, resourceNames, type AdsStream } from "../support/ads-client.js";
import { kubeService, startMesh, type Backend, type TestMesh } from "../support/mesh.js";
import { parseExposition } from "../support/prometheus.js";

const ECHO = "outbound|7070||echo.default.svc.cluster.local";
const LATER = "outbound|8080||later.default.svc.cluster.local";

/** Registered pods need no process behind them here: nothing dials them. */
const pod = (name: string, port: number): Backend => ({ name, version: "v1", port }) as Backend;
const ECHO_ONLY = kubeService("echo", 7070, [pod("echo-1", 17070)]);
const WITH_LATER = `${ECHO_ONLY}---\n${kubeService("later", 8080, [pod("later-1", 18080)])}`;

describe("ADS protocol (a bare client)", () => {
  let mesh: TestMesh;
  const streams: AdsStream[] = [];
  const open = (delta: boolean): AdsStream => {
    const s = openAds(mesh.cp.xdsPort, delta);
    streams.push(s);
    return s;
  };
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
    parseExposition(await (await fetch(`http://127.0.0.1:${mesh.cp.monitoringPort}/metrics`)).text()).sum(name, labels);

  beforeAll(async () => {
    mesh = await startMesh("", ECHO_ONLY);
  });
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await mesh.setKube(ECHO_ONLY);
  });
  afterAll(async () => {
    await mesh?.close();
  });

  describe("state of the world", () => {
    it("answers each type with a version and nonce, stays quiet after an ACK, and ignores a stale nonce", async () => {
      const s = open(false);
      s.send({ node: adsNode("app-1", "default"), type_url: CLUSTER_TYPE });
      const cds = await s.next();
      expect(cds.type_url).toBe(CLUSTER_TYPE);
      expect(cds.version_info).toMatch(/^\d{4}-\d\d-\d\dT[\d:]+Z\/\d+$/);
      expect(cds.nonce).not.toBe("");
      expect(resourceNames(cds)).toEqual(expect.arrayContaining([ECHO, "BlackHoleCluster", "PassthroughCluster"]));

      // A subscription to a cluster that does not exist yet is remembered.
      s.send({ type_url: ENDPOINT_TYPE, resource_names: [ECHO, LATER] });
      const eds = await s.next();
      expect(resourceNames(eds)).toEqual([ECHO]);

      s.send({ type_url: CLUSTER_TYPE, version_info: cds.version_info, response_nonce: cds.nonce, resource_names: [] });
      s.send({ type_url: ENDPOINT_TYPE, version_info: eds.version_info, response_nonce: eds.nonce, resource_names: [ECHO, LATER] });
      await s.quiet(300);

      const expired = await metric("pilot_xds_expired_nonce", { type: "cds" });
      s.send({ type_url: CLUSTER_TYPE, version_info: cds.version_info, response_nonce: "not-a-nonce-we-sent", resource_names: [] });
      await s.quiet(300);
      expect(await metric("pilot_xds_expired_nonce", { type: "cds" })).toBe(expired + 1);

      // The remembered name comes into existence: CDS (full state) and EDS (the new assignment) are pushed.
      await mesh.setKube(WITH_LATER);
      const cds2 = await s.next();
      expect(cds2.type_url).toBe(CLUSTER_TYPE);
      expect(resourceNames(cds2)).toEqual(expect.arrayContaining([ECHO, LATER]));
      expect(cds2.version_info).not.toBe(cds.version_info);
      const eds2 = await s.next();
      expect(eds2.type_url).toBe(ENDPOINT_TYPE);
      expect(resourceNames(eds2)).toEqual([LATER]); // the unchanged ECHO is not sent again
      s.send({ type_url: CLUSTER_TYPE, version_info: cds2.version_info, response_nonce: cds2.nonce, resource_names: [] });
      s.send({ type_url: ENDPOINT_TYPE, version_info: eds2.version_info, response_nonce: eds2.nonce, resource_names: [ECHO, LATER] });

      // Removed from the registry: the next full-state CDS response no longer lists it.
      await mesh.setKube(ECHO_ONLY);
      const cds3 = await s.next();
      expect(cds3.type_url).toBe(CLUSTER_TYPE);
      expect(resourceNames(cds3)).toContain(ECHO);
      expect(resourceNames(cds3)).not.toContain(LATER);
    });

    it("keeps the proxy's last ACKed version on a NACK, counts and logs it, and does not push again until something changes", async () => {
      const s = open(false);
      s.send({ node: adsNode("nacker-1", "default"), type_url: CLUSTER_TYPE });
      const cds = await s.next();
      s.send({ type_url: CLUSTER_TYPE, version_info: cds.version_info, response_nonce: cds.nonce });
      await s.quiet(200);
      const rejects = await metric("pilot_total_xds_rejects", { type: "cds" });
      await mesh.setKube(WITH_LATER);
      const cds2 = await s.next();
      s.send({ type_url: CLUSTER_TYPE, version_info: cds.version_info, response_nonce: cds2.nonce, error_detail: { code: 3, message: "cluster outbound|8080||later: rejected on purpose" } });
      await s.quiet(300);
      expect(await metric("pilot_total_xds_rejects", { type: "cds" })).toBe(rejects + 1);
      expect(mesh.logs.some((l) => l.includes("rejected by nacker-1.default") && l.includes("rejected on purpose"))).toBe(true);
      const sync = (await (await fetch(`http://127.0.0.1:${mesh.cp.monitoringPort}/debug/adsz`)).json()) as { connections: { proxy: string; types: Record<string, { status: string; versionAcked: string }> }[] };
      const conn = sync.connections.find((c) => c.proxy === "nacker-1.default")!;
      expect(conn.types.cds!.status).toBe("ERROR");
      expect(conn.types.cds!.versionAcked).toBe(cds.version_info);
    });

    it("ends a stream whose first request has no node, or whose request has no type, with INVALID_ARGUMENT", async () => {
      const noNode = open(false);
      noNode.send({ type_url: CLUSTER_TYPE });
      expect((await noNode.status).code).toBe(grpc.status.INVALID_ARGUMENT);
      const badId = open(false);
      badId.send({ node: { id: "not-an-istio-node" }, type_url: CLUSTER_TYPE });
      const status = await badId.status;
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.details).toContain("TYPE~IP~POD.NAMESPACE~DOMAIN");
      const noType = open(false);
      noType.send({ node: adsNode("app-2", "default") });
      expect((await noType.status).code).toBe(grpc.status.INVALID_ARGUMENT);
      // The server serves the next client as before.
      const ok = open(false);
      ok.send({ node: adsNode("app-3", "default"), type_url: LISTENER_TYPE });
      expect((await ok.next()).type_url).toBe(LISTENER_TYPE);
    });

    it("answers a gRPC client's named listener and its route config, and nothing for a name it does not know", async () => {
      const s = open(false);
      s.send({ node: adsNode("grpc-1", "default", "grpc"), type_url: LISTENER_TYPE, resource_names: ["echo:7070", "nowhere:1"] });
      const lds = await s.next();
      expect(resourceNames(lds)).toEqual(["echo:7070"]);
      s.send({ type_url: ROUTE_TYPE, resource_names: [ECHO] });
      const rds = await s.next();
      expect(resourceNames(rds)).toEqual([ECHO]);
    });
    it("warns, with the route's file:line, of what a gRPC client will not apply", async () => {
      await mesh.setIstio(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: edge
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    mirror: {host: echo}
    route: [{destination: {host: echo}}]
`);
      try {
        const s = open(false);
        s.send({ node: adsNode("grpc-warn-1", "default", "grpc"), type_url: LISTENER_TYPE, resource_names: ["echo:7070"] });
        await s.next();
        const warnings = mesh.logs.filter((l) => l.includes("grpc-warn-1.default") && l.includes("proxyless gRPC"));
        expect(warnings.some((l) => /config\.yaml:7:\d+/.test(l) && l.includes("corsPolicy is not applied"))).toBe(true);
        expect(warnings.some((l) => l.includes("mirror is not applied"))).toBe(true);
      } finally {
        await mesh.setIstio("");
      }
    });
  });

  describe("delta", () => {
    type DeltaResource = { name: string; version: string };
    const versions = (r: { resources?: unknown[] }): Record<string, string> =>
      Object.fromEntries(((r.resources ?? []) as DeltaResource[]).map((x) => [x.name, x.version]));

    it("subscribes by wildcard and by name, reports missing names removed, sends only what changed, and removes what went", async () => {
      const s = open(true);
      s.send({ node: adsNode("delta-1", "default"), type_url: CLUSTER_TYPE });
      const cds = await s.next();
      const held = versions(cds);
      expect(Object.keys(held)).toEqual(expect.arrayContaining([ECHO, "BlackHoleCluster"]));
      expect(cds.removed_resources ?? []).toEqual([]);
      s.send({ type_url: CLUSTER_TYPE, response_nonce: cds.nonce });

      s.send({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [ECHO, LATER] });
      const eds = await s.next();
      expect(Object.keys(versions(eds))).toEqual([ECHO]);
      expect(eds.removed_resources).toEqual([LATER]);
      s.send({ type_url: ENDPOINT_TYPE, response_nonce: eds.nonce });
      await s.quiet(300);

      await mesh.setKube(WITH_LATER);
      const cds2 = await s.next();
      expect(Object.keys(versions(cds2))).toEqual([LATER]); // only the new cluster
      s.send({ type_url: CLUSTER_TYPE, response_nonce: cds2.nonce });
      const eds2 = await s.next();
      expect(Object.keys(versions(eds2))).toEqual([LATER]);
      s.send({ type_url: ENDPOINT_TYPE, response_nonce: eds2.nonce });

      // Unsubscribed names are no longer pushed.
      s.send({ type_url: ENDPOINT_TYPE, resource_names_unsubscribe: [LATER] });
      await s.quiet(200); // an unsubscribe has no answer; give the server time to read it before the change
      await mesh.setKube(ECHO_ONLY);
      const cds3 = await s.next();
      expect(cds3.type_url).toBe(CLUSTER_TYPE);
      expect(cds3.removed_resources).toEqual([LATER]);
      expect(cds3.resources ?? []).toEqual([]);
      s.send({ type_url: CLUSTER_TYPE, response_nonce: cds3.nonce });
      await s.quiet(300);
    });

    it("pushes an endpoint-only change as EDS alone, with the new endpoint", async () => {
      const s = open(true);
      s.send({ node: adsNode("delta-3", "default"), type_url: CLUSTER_TYPE });
      const cds = await s.next();
      s.send({ type_url: CLUSTER_TYPE, response_nonce: cds.nonce });
      s.send({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [ECHO] });
      const eds = await s.next();
      s.send({ type_url: ENDPOINT_TYPE, response_nonce: eds.nonce });
      await s.quiet(200);
      await mesh.setKube(kubeService("echo", 7070, [pod("echo-1", 17071)]));
      const update = await s.next();
      expect(update.type_url).toBe(ENDPOINT_TYPE);
      const resource = (update.resources as { resource: AnyMessage }[])[0]!.resource;
      const cla = unpackAny(resource) as { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[] };
      expect(cla.endpoints[0]!.lb_endpoints.map((e) => e.endpoint.address.socket_address.port_value)).toEqual([17071]);
      s.send({ type_url: ENDPOINT_TYPE, response_nonce: update.nonce });
      await s.quiet(300); // no CDS, LDS or RDS
    });

    it("on reconnect, sends only the resources whose version differs from initial_resource_versions", async () => {
      const first = open(true);
      first.send({ node: adsNode("delta-2", "default"), type_url: CLUSTER_TYPE });
      const held = versions(await first.next());
      first.close();
      const stale = { ...held, [ECHO]: "an-old-version" };
      const again = open(true);
      again.send({ node: adsNode("delta-2", "default"), type_url: CLUSTER_TYPE, initial_resource_versions: stale });
      const cds = await again.next();
      expect(Object.keys(versions(cds))).toEqual([ECHO]);
      expect(versions(cds)[ECHO]).toBe(held[ECHO]);
    });
  });
});
