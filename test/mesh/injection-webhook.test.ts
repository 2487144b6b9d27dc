// The injection webhook of a running control plane, over real TLS as the API
// server calls it: AdmissionReview v1 in, JSONPatch out. A pod in a namespace
// labelled istio-injection=enabled gets the sidecar (the patch applied to it
// gives what `instio inject` gives); a pod in a namespace without the label is
// allowed unchanged; malformed requests get Istio's status codes; the
// injection metrics count each review.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import jsonpatch from "fast-json-patch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { staticTokens } from "../../host/control-plane/ca/ca-service.js";
import { startControlPlane, type ControlPlane } from "../../host/control-plane/control-plane.js";
import { defaultInjectOptions, type KubeObject } from "../../host/control-plane/injector/inject.js";
import { injectObject } from "../../host/control-plane/injector/kube-inject.js";
import { Logger } from "../../host/log.js";
import { parseExposition } from "../support/prometheus.js";

let dir: string;
let cp: ControlPlane;
let root: string;
const OPTIONS = { ...defaultInjectOptions(), image: "instio:webhook-test" };

const NAMESPACES = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
`;

function post(path: string, body: string, contentType = "application/json"): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: cp.webhookPort, path, method: "POST", ca: root, servername: "istiod.istio-system.svc", headers: { "content-type": contentType } }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const pod = (name: string, namespace: string): KubeObject => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace, labels: { app: name } }, spec: { containers: [{ name, image: `shop/${name}:1`, ports: [{ name: "http", containerPort: 8080 }] }] } });
const review = (object: KubeObject, uid: string): string => JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { uid, kind: { group: "", version: "v1", kind: "Pod" }, resource: { group: "", version: "v1", resource: "pods" }, namespace: (object.metadata as KubeObject).namespace, operation: "CREATE", object } });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "instio-webhook-"));
  writeFileSync(join(dir, "namespaces.yaml"), NAMESPACES);
  cp = await startControlPlane({
    config: undefined,
    kubeDir: dir,
    xdsAddress: "127.0.0.1",
    xdsPort: 0,
    monitoringAddress: "127.0.0.1",
    monitoringPort: 0,
    ca: { dir: join(dir, "ca"), address: "127.0.0.1", port: 0, authenticate: staticTokens([]) },
    injector: { address: "127.0.0.1", port: 0, options: OPTIONS },
    log: new Logger("info", () => {}),
  });
  root = readFileSync(join(dir, "ca", "root-cert.pem"), "utf8");
}, 30_000);

afterAll(async () => {
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the injection webhook (/inject on 15017)", () => {
  it("patches a pod in a namespace labelled istio-injection=enabled into the injected pod", async () => {
    const original = pod("cart", "shop");
    const r = await post("/inject", review(original, "uid-cart"));
    expect(r.status).toBe(200);
    const answer = JSON.parse(r.text) as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType: string; patch: string } };
    expect(answer.apiVersion).toBe("admission.k8s.io/v1");
    expect(answer.kind).toBe("AdmissionReview");
    expect(answer.response.uid).toBe("uid-cart");
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patchType).toBe("JSONPatch");
    const patch = JSON.parse(Buffer.from(answer.response.patch, "base64").toString("utf8")) as jsonpatch.Operation[];
    const patched = jsonpatch.applyPatch(structuredClone(original), patch).newDocument as KubeObject;
    expect(patched).toEqual(injectObject(original, OPTIONS).object);
    expect(((patched.spec as KubeObject).initContainers as KubeObject[]).map((c) => c.name)).toEqual(["instio-init", "instio-proxy"]);
  });

  it("allows a pod in a namespace without the label unchanged, and one that opted in by label", async () => {
    const plain = JSON.parse((await post("/inject", review(pod("old", "legacy"), "uid-old"))).text) as { response: { allowed: boolean; patch?: string } };
    expect(plain.response).toEqual({ uid: "uid-old", allowed: true });
    const optedIn = pod("new", "legacy");
    (optedIn.metadata as { labels: Record<string, string> }).labels["sidecar.istio.io/inject"] = "true";
    expect((JSON.parse((await post("/inject", review(optedIn, "uid-new"))).text) as { response: { patch?: string } }).response.patch).toBeDefined();
  });

  it("answers malformed requests as Istio's webhook does: 415, 400, 404, and a refusal for what is not a pod", async () => {
    expect((await post("/inject", review(pod("x", "shop"), "u"), "text/plain")).status).toBe(415);
    expect((await post("/inject", "{not json")).status).toBe(400);
    expect((await post("/other", "{}")).status).toBe(404);
    const notPod = JSON.parse((await post("/inject", JSON.stringify({ request: { uid: "u-cm", object: { kind: "ConfigMap" } } }))).text) as { response: { allowed: boolean; status: { message: string } } };
    expect(notPod.response.allowed).toBe(false);
    expect(notPod.response.status.message).toMatch(/not a Pod/);
  });

  it("counts each review in istiod's injection metrics", async () => {
    const m = parseExposition(await (await fetch(`http://127.0.0.1:${cp.monitoringPort}/metrics`)).text());
    expect(m.sum("sidecar_injection_success_total")).toBeGreaterThanOrEqual(2);
    expect(m.sum("sidecar_injection_skip_total")).toBeGreaterThanOrEqual(1);
    expect(m.sum("sidecar_injection_failure_total")).toBeGreaterThanOrEqual(2);
    expect(m.sum("sidecar_injection_requests_total")).toBeGreaterThanOrEqual(5);
  });
});
